from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from fraudrules.app import client_configs
from fraudrules.instance import instance_id
from fraudrules.settings import KafkaSettings, load_settings


def test_defaults_match_the_seed_topics_and_a_local_broker() -> None:
    settings = load_settings()

    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert (settings.topics.payment, settings.topics.order, settings.topics.sink) == ("payment", "order", "sink")
    assert settings.processing_guarantee == "at-least-once"


def test_environment_overrides_the_file_and_the_file_overrides_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "fraudrules.toml"
    config.write_text(
        'consumer_group = "from-file"\njoin_window_seconds = 5\n'
        '[kafka]\nbootstrap_servers = "file:9092"\n'
        '[rules.amount_spike]\nmode = "shadow"\nconfig = { z_threshold = 6 }\n'
    )
    monkeypatch.setenv("FRAUDRULES_KAFKA__BOOTSTRAP_SERVERS", "env:9092")
    monkeypatch.setenv("FRAUDRULES_PROCESSING_GUARANTEE", "exactly-once")

    settings = load_settings(config)

    assert settings.consumer_group == "from-file"
    assert settings.join_window_seconds == 5
    assert settings.kafka.bootstrap_servers == "env:9092"
    assert settings.processing_guarantee == "exactly-once"
    assert settings.rule("amount_spike").mode == "shadow"
    assert settings.rule("amount_spike").config == {"z_threshold": 6}


def test_sasl_settings_reach_the_client_config_and_the_password_stays_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUDRULES_KAFKA__SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("FRAUDRULES_KAFKA__SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("FRAUDRULES_KAFKA__SASL_USERNAME", "alice")
    monkeypatch.setenv("FRAUDRULES_KAFKA__SASL_PASSWORD", "s3cret-value")

    settings = load_settings()

    assert settings.kafka.client_config()["sasl.password"] == "s3cret-value"
    assert "s3cret-value" not in repr(settings)
    assert "s3cret-value" not in str(settings.model_dump())


def test_unknown_settings_and_bad_values_are_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUDRULES_PROCESSING_GUARANTEE", "maybe-once")

    with pytest.raises(ValidationError, match="processing_guarantee"):
        load_settings()


def test_a_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_settings(tmp_path / "nope.toml")


def test_each_kafka_client_gets_only_its_own_extras_and_outputs_are_uncompressed() -> None:
    settings = load_settings(
        kafka={
            "extra": {"client.id": "fr"},
            "consumer_extra": {"fetch.max.bytes": "1000000"},
            "producer_extra": {"transaction.timeout.ms": "10000"},
        }
    )

    consumer, producer = client_configs(settings, "fr-1")

    assert consumer["client.id"] == producer["client.id"] == "fr"
    assert consumer["fetch.max.bytes"] == "1000000"
    assert "transaction.timeout.ms" not in consumer
    assert producer["transaction.timeout.ms"] == "10000"
    assert "fetch.max.bytes" not in producer
    assert producer["compression.type"] == "none"  # kafka-python without extras reads sink and deadletter
    assert load_settings(output_compression="zstd").output_compression == "zstd"


def test_a_restarted_instance_keeps_its_name_and_two_running_ones_differ(tmp_path: Path) -> None:
    settings = load_settings(state_dir=tmp_path / "a", processing_guarantee="exactly-once")

    consumer, producer = client_configs(settings, instance_id(settings))

    # the same name on every call in this process (an in-process restart), for group and transactions alike
    assert consumer["group.instance.id"] == producer["transactional.id"] == instance_id(settings)
    assert consumer["session.timeout.ms"] == "10000"
    assert instance_id(settings.model_copy(update={"state_dir": tmp_path / "b"})) != instance_id(settings)
    assert instance_id(settings.model_copy(update={"kafka": KafkaSettings(instance_id="pod-3")})) == "pod-3"
    assert "transactional.id" not in client_configs(load_settings(), "x")[1]  # at-least-once: no transactions


def test_a_second_process_on_the_same_state_directory_gets_another_name(tmp_path: Path) -> None:
    settings = load_settings(state_dir=tmp_path)
    code = "import sys; from fraudrules.instance import instance_id; from fraudrules.settings import load_settings; "
    code += "print(instance_id(load_settings(state_dir=sys.argv[1])))"

    mine = instance_id(settings)  # holds the state directory's lock from here on
    other = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)

    assert other.stdout.splitlines()[-1].startswith(mine + "-")
    assert "another process uses this state directory" in other.stdout  # (structlog unconfigured: stdout)


def test_the_consumer_fetches_64_kb_a_partition_unless_told_otherwise() -> None:
    # a backlog at several partitions is read in finer turns across its input partitions (BENCHMARKS)
    assert client_configs(load_settings(), "x")[0]["max.partition.fetch.bytes"] == "65536"
    told = load_settings(kafka={"consumer_extra": {"max.partition.fetch.bytes": "1048576"}})
    assert client_configs(told, "x")[0]["max.partition.fetch.bytes"] == "1048576"
    assert "max.partition.fetch.bytes" not in client_configs(load_settings(), "x")[1]


def test_the_producer_partitions_by_murmur2_whatever_the_extras_say() -> None:
    # internal topics are routed by key as Kafka's Java partitioner does (pipeline/nodes/packets.py)
    settings = load_settings(kafka={"producer_extra": {"partitioner": "consistent_random"}})

    assert client_configs(settings, "fr-1")[1]["partitioner"] == "murmur2"


def test_checkpoints_are_shorter_under_exactly_once_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().commit_interval() == 1.0
    assert load_settings(processing_guarantee="exactly-once").commit_interval() == 0.5

    monkeypatch.setenv("FRAUDRULES_COMMIT_INTERVAL_SECONDS", "2")
    assert load_settings(processing_guarantee="exactly-once").commit_interval() == 2.0
    with pytest.raises(ValidationError):
        load_settings(commit_interval_seconds=0)


def test_an_exactly_once_producer_retries_its_first_try_after_10_ms_unless_told_otherwise() -> None:
    # a transaction's first partitions are refused while the one before is still being completed (app.py)
    exactly_once = load_settings(processing_guarantee="exactly-once")
    assert client_configs(exactly_once, "x")[1]["retry.backoff.ms"] == "10"
    assert "retry.backoff.ms" not in client_configs(load_settings(), "x")[1]  # at-least-once: librdkafka's
    told = load_settings(processing_guarantee="exactly-once", kafka={"producer_extra": {"retry.backoff.ms": "50"}})
    assert client_configs(told, "x")[1]["retry.backoff.ms"] == "50"
