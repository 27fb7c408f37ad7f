from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from fraudrules.settings import load_settings


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
