"""docker-compose.yml cannot run here (no Docker engine): check it against the code instead."""

from __future__ import annotations

import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from fraudrules.cli import cli
from fraudrules.kafka_tools.localkafka import POM, LocalKafka
from fraudrules.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_services_match_the_seed_demo_plus_the_app(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"kafka", "init-kafka", "data-generator", "fraudrules"}
    assert compose["services"]["data-generator"]["depends_on"]["init-kafka"]["condition"] == (
        "service_completed_successfully"
    )


def test_kafka_image_is_the_official_one_at_the_version_the_tests_run(compose: dict[str, Any]) -> None:
    pom = ET.parse(POM).getroot()
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    version = pom.find("m:properties/m:kafka.version", ns).text  # type: ignore[union-attr]

    for service in ("kafka", "init-kafka"):
        assert compose["services"][service]["image"] == f"apache/kafka:{version}"


def test_broker_settings_match_the_local_test_broker(compose: dict[str, Any]) -> None:
    env = compose["services"]["kafka"]["environment"]
    from_compose = {
        key.removeprefix("KAFKA_").lower().replace("_", "."): str(value)
        for key, value in env.items()
        if key.startswith("KAFKA_")
    }
    local = dict(
        line.split("=", 1)
        for line in LocalKafka(Path("/tmp/x"), port=1, controller_port=2)._server_properties().splitlines()
    )

    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
        "min.insync.replicas",
        "group.initial.rebalance.delay.ms",
        "message.max.bytes",
        "num.partitions",
        "default.replication.factor",
        "process.roles",
    ):
        assert from_compose[key] == local[key], key


def test_init_kafka_creates_every_topic_the_app_uses_with_the_seed_layout(compose: dict[str, Any]) -> None:
    script = compose["services"]["init-kafka"]["command"][0]
    [topic_list] = re.findall(r"for topic in ([\w ]+); do", script)
    topics = Settings().topics

    assert topic_list.split() == [topics.payment, topics.order, topics.sink, topics.deadletter, topics.labels]
    assert "--partitions 1 --replication-factor 1" in script
    assert "Successfully created the following topics:" in script


def test_services_reach_kafka_on_its_advertised_internal_listener(compose: dict[str, Any]) -> None:
    advertised = compose["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    internal = re.search(r"INTERNAL://([\w.-]+:\d+)", advertised)
    assert internal is not None

    for service in ("data-generator", "fraudrules"):
        assert compose["services"][service]["environment"]["FRAUDRULES_KAFKA__BOOTSTRAP_SERVERS"] == internal.group(1)
    assert f"--bootstrap-server {internal.group(1)}" in compose["services"]["init-kafka"]["command"][0]


@pytest.mark.parametrize("service", ["data-generator", "fraudrules"])
def test_service_commands_are_valid_fraudrules_invocations(compose: dict[str, Any], service: str) -> None:
    name, *rest = compose["services"][service]["command"]
    ctx = click.Context(cli, info_name="fraudrules")
    command = cli.get_command(ctx, name)
    assert command is not None

    sub = command.make_context(name, rest, parent=ctx)  # raises on an unknown option or bad value

    assert isinstance(sub, click.Context)


def test_the_generator_service_is_the_seed_demo_traffic(compose: dict[str, Any]) -> None:
    command = shlex.join(compose["services"]["data-generator"]["command"])

    assert command == "generate --profile seed --count 20000 --rate 2"


def test_dockerfile_runs_the_cli_and_keeps_state_in_the_volume(compose: dict[str, Any]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    volume = compose["services"]["fraudrules"]["volumes"][0]

    assert 'ENTRYPOINT ["fraudrules"]' in dockerfile
    assert "ENV FRAUDRULES_STATE_DIR=/var/lib/fraudrules" in dockerfile
    assert volume.endswith(":/var/lib/fraudrules")
    for path in ("pyproject.toml", "README.md", "src", "plugins"):
        assert re.search(rf"COPY .*\b{re.escape(path)}\b", dockerfile), path
