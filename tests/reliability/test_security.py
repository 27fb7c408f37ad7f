"""SASL/PLAIN: the app connects through its settings, never shows the password, and fails fast on a wrong one."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from fraudrules.kafka_tools.localkafka import LocalKafka, free_port
from fraudrules.settings import KafkaSettings, Settings
from tests.conftest import Broker
from tests.fixtures import order, payment
from tests.kafka_helpers import create_topics, produce, read_topic, running, settings_env, settings_for, values

pytestmark = pytest.mark.kafka

# The SASL users of the local broker (fraudrules.kafka_tools.localkafka).
USER, PASSWORD = "fraudrules", "fraudrules-secret"
WRONG = "not-the-password-7f3a"


@pytest.fixture(scope="module")
def sasl_kafka(kafka: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """The session broker if it has a SASL listener, or (an external broker) a local broker of this module's
    own: its plain listener for the tests' own clients, its SASL listener for the app."""
    if kafka.sasl_bootstrap:
        yield kafka
        return
    broker = LocalKafka(tmp_path_factory.mktemp("sasl"), port=free_port(), sasl_port=free_port()).start()
    try:
        yield Broker(bootstrap=broker.bootstrap, sasl_bootstrap=broker.sasl_bootstrap, local=None)
    finally:
        broker.stop()


def sasl_settings(kafka: Broker, unique: str, tmp_path: Path, password: str) -> Settings:
    plain = settings_for(kafka.bootstrap, unique, tmp_path)
    assert kafka.sasl_bootstrap
    secured = KafkaSettings(
        bootstrap_servers=kafka.sasl_bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username=USER,
        sasl_password=SecretStr(password),
    )
    return plain.model_copy(update={"kafka": secured})


def test_the_pipeline_runs_over_sasl_and_never_logs_the_password(
    sasl_kafka: Broker, unique: str, tmp_path: Path
) -> None:
    kafka = sasl_kafka
    settings = sasl_settings(kafka, unique, tmp_path, PASSWORD)
    topics = settings.topics
    create_topics(kafka.bootstrap, [topics.payment, topics.order])

    with running(settings, tmp_path / "app.log") as pipeline:
        produce(kafka.bootstrap, topics.payment, [payment(1)])
        produce(kafka.bootstrap, topics.order, [order(1)])
        sink = read_topic(kafka.bootstrap, topics.sink, until=lambda m: len(m) >= 1, timeout=90, check=pipeline.check)

    assert [v["orderId"] for v in values(sink)] == [1]
    assert PASSWORD not in (tmp_path / "app.log").read_text()


@pytest.mark.parametrize("command", [["run"], ["generate", "--count", "10"]])
def test_a_wrong_password_fails_fast_with_a_clear_error_and_no_secret(
    sasl_kafka: Broker, unique: str, tmp_path: Path, command: list[str]
) -> None:
    kafka = sasl_kafka
    settings = sasl_settings(kafka, unique, tmp_path, WRONG)
    env = {**os.environ, **settings_env(settings), "FRAUDRULES_LOG_FORMAT": "json"}

    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "fraudrules", *command], env=env, capture_output=True, text=True, timeout=60
    )
    took = time.monotonic() - started

    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert took < 20
    assert "Authentication failed" in output or "authentication" in output.lower(), output
    assert "Traceback" not in output
    assert WRONG not in output
