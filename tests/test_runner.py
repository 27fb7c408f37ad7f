"""fraudrules run's restart policy, without Kafka: transient Kafka errors restart, anything else ends."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from rocksdict import DbClosedError

from fraudrules import runner
from fraudrules.pipeline.offsets import PipelineStalled
from fraudrules.settings import Settings


class FlakyApp:
    """Fails with ``errors`` one after the other, then runs cleanly."""

    def __init__(self, errors: list[Exception]) -> None:
        self.errors = errors
        self.runs = 0

    def create(self, settings: Settings, **_: Any) -> FlakyApp:
        return self

    def run(self) -> None:
        self.runs += 1
        if self.errors:
            raise self.errors.pop(0)


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(runner, "check_broker", lambda kafka: [])
    # runner imports time without re-exporting it (a src matter): patch the module object runner uses
    monkeypatch.setattr(runner.time, "sleep", lambda seconds: None)  # type: ignore[attr-defined]

    def install(errors: list[Exception]) -> FlakyApp:
        app = FlakyApp(errors)
        monkeypatch.setattr(runner, "create_app", app.create)
        return app

    return install


def kafka_error() -> KafkaException:
    return KafkaException(KafkaError(KafkaError._TRANSPORT, "broker went away"))


def test_kafka_errors_restart_the_pipeline_until_it_runs(flaky: Any) -> None:
    app = flaky([kafka_error(), kafka_error()])

    assert runner.run_pipeline(Settings(), restart_attempts=5) == 0
    assert app.runs == 3


def test_a_changelog_record_met_by_quix_streams_input_buffer_restarts_from_the_checkpoint(flaky: Any) -> None:
    app = flaky([KeyError("changelog__fraudrules--order--payment--default")])

    assert runner.run_pipeline(Settings(), restart_attempts=5) == 0
    assert app.runs == 2


def test_a_lost_partitions_closed_store_read_through_the_open_checkpoint_restarts_from_the_last_one(
    flaky: Any,
) -> None:
    app = flaky([DbClosedError("DB instance already closed")])

    assert runner.run_pipeline(Settings(), restart_attempts=5) == 0
    assert app.runs == 2


def test_a_consumer_that_stopped_delivering_restarts_from_the_checkpoint(flaky: Any) -> None:
    app = flaky([PipelineStalled("sides[0]: records wait to be read")])

    assert runner.run_pipeline(Settings(), restart_attempts=5) == 0
    assert app.runs == 2


def test_any_other_key_error_is_a_bug_and_is_not_retried(flaky: Any) -> None:
    app = flaky([KeyError("merchantId")])

    assert runner.run_pipeline(Settings()) == 1
    assert app.runs == 1


def test_too_many_kafka_errors_in_a_row_end_with_status_1(flaky: Any, capsys: pytest.CaptureFixture[str]) -> None:
    app = flaky([kafka_error() for _ in range(10)])

    assert runner.run_pipeline(Settings(), restart_attempts=3) == 1
    assert app.runs == 4
    assert "repeated Kafka errors" in capsys.readouterr().err


def test_a_bug_is_not_retried_and_ends_with_one_clear_line(flaky: Any, capsys: pytest.CaptureFixture[str]) -> None:
    app = flaky([ZeroDivisionError("division by zero")])

    assert runner.run_pipeline(Settings()) == 1
    assert app.runs == 1
    err = capsys.readouterr().err
    assert "ZeroDivisionError" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "error",
    [
        KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "message too large")),
        KafkaException(KafkaError(KafkaError.INVALID_RECORD, "invalid record")),
    ],
)
def test_an_error_about_a_record_is_not_retried_as_if_it_were_the_brokers(
    flaky: Any, capsys: pytest.CaptureFixture[str], error: Exception
) -> None:
    app = flaky([error])

    assert runner.run_pipeline(Settings()) == 1
    assert app.runs == 1
    assert "not the broker" in capsys.readouterr().err
