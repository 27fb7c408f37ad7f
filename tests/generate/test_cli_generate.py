from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from fraudrules import codec
from fraudrules.cli import cli
from tests.conftest import Broker
from tests.kafka_helpers import read_topic, settings_env, settings_for


def test_output_dir_writes_the_three_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "generate",
            "--count",
            "500",
            "--seed",
            "1",
            "--scenario",
            "orphan_payment=0.1",
            "--output-dir",
            str(tmp_path),
        ],
    )

    assert result.exit_code == 0, result.output
    payments = (tmp_path / "payment.jsonl").read_bytes().splitlines()
    orders = (tmp_path / "order.jsonl").read_bytes().splitlines()
    labels = [codec.loads(line) for line in (tmp_path / "labels.jsonl").read_bytes().splitlines()]
    assert len(payments) == 500
    assert len(orders) == 500 - len(labels)
    assert {label["scenario"] for label in labels} == {"orphan_payment"}
    validate = CliRunner().invoke(cli, ["validate", "--topic", "payment", str(tmp_path / "payment.jsonl")])
    assert validate.exit_code == 0


def test_unreachable_broker_is_a_clear_error_and_exit_1() -> None:
    result = CliRunner().invoke(cli, ["generate", "--count", "3", "--bootstrap-servers", "127.0.0.1:9"])

    assert result.exit_code == 1
    assert "cannot reach Kafka at 127.0.0.1:9" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args", [["--rate", "fast"], ["--scenario", "nonsense=0.1"], ["--scenario", "amount_spike"], ["--count", "0"]]
)
def test_bad_options_exit_2(args: list[str], tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["generate", "--output-dir", str(tmp_path), *args])

    assert result.exit_code == 2


@pytest.mark.kafka
def test_generate_to_kafka_prints_the_seed_lines_and_writes_labels(
    kafka: Broker, unique: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(kafka.bootstrap, unique, tmp_path)
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)

    result = CliRunner().invoke(
        cli, ["generate", "--count", "300", "--rate", "max", "--seed", "3", "--scenario", "orphan_payment=0.05"]
    )

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Connected to Kafka"
    assert (
        lines[1]
        == f"Producing 300 records to payment topic {settings.topics.payment} and order topic {settings.topics.order}"
    )
    payments = read_topic(kafka.bootstrap, settings.topics.payment, until=lambda m: len(m) >= 300)
    labels = read_topic(kafka.bootstrap, settings.topics.labels, until=lambda m: len(m) >= 1, settle=1)
    assert len(payments) == 300
    assert labels
    assert all(codec.loads(m.value())["scenario"] == "orphan_payment" for m in labels)
    assert all(m.key() == str(codec.loads(m.value())["orderId"]).encode() for m in labels)


@pytest.mark.parametrize(("profile", "labelled"), [("seed", False), ("realistic", True)])
def test_profile_option_picks_the_traffic(tmp_path: Path, profile: str, labelled: bool) -> None:
    result = CliRunner().invoke(
        cli, ["generate", "--profile", profile, "--count", "3000", "--seed", "3", "--output-dir", str(tmp_path)]
    )

    assert result.exit_code == 0, result.output
    labels = (tmp_path / "labels.jsonl").read_text().splitlines()
    assert bool(labels) is labelled
    orders = [codec.loads(line) for line in (tmp_path / "order.jsonl").read_bytes().splitlines()]
    assert len(orders) >= 2900
