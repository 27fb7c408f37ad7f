from __future__ import annotations

import logging

import pytest
import structlog

from fraudrules import codec
from fraudrules.logs import configure_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> object:
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def test_json_logs_carry_bound_context_and_standard_library_records(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "INFO")

    with structlog.contextvars.bound_contextvars(topic="payment", partition=0, offset=7):
        structlog.get_logger("fraudrules.test").info("record refused", reason="not_json")
    logging.getLogger("quixstreams").warning("rebalancing")

    first, second = (codec.loads(line) for line in capsys.readouterr().err.splitlines())
    assert first["event"] == "record refused"
    assert (first["topic"], first["partition"], first["offset"], first["reason"]) == ("payment", 0, 7, "not_json")
    assert first["level"] == "info"
    assert (second["event"], second["logger"], second["level"]) == ("rebalancing", "quixstreams", "warning")


def test_passwords_never_reach_a_log_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "INFO")

    structlog.get_logger().info("connecting", sasl_password="hunter2", password="hunter2")

    err = capsys.readouterr().err
    assert "hunter2" not in err
    assert codec.loads(err)["sasl_password"] == "***"


def test_level_filters_debug(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "WARNING")

    structlog.get_logger().info("chatty")
    structlog.get_logger().warning("important")

    assert [codec.loads(line)["event"] for line in capsys.readouterr().err.splitlines()] == ["important"]
