"""``fraudrules run``: logging, a broker check, the plugins, then the pipeline until SIGINT/SIGTERM.

Bad configuration (an unreachable broker or a refused login at start-up, a broken plugin in strict mode)
ends at once with one clear error and exit status 1. A Kafka error after start-up (say the broker
restarting while the application creates its topics) restarts the pipeline in-process, from its last
checkpoint, up to ``restart_attempts`` times in a row with a growing pause; then it exits with status 1.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException
from quixstreams.exceptions import QuixException
from quixstreams.models.serializers.exceptions import SerializationError

from fraudrules.app import create_app
from fraudrules.connect import BrokerUnavailable, check_broker
from fraudrules.logs import configure_logging
from fraudrules.pipeline import quix
from fraudrules.pipeline.offsets import PipelineStalled
from fraudrules.rules.registry import PluginError
from fraudrules.settings import ConfigError, Settings

log = structlog.get_logger(__name__)

#: Errors that a broker coming back can cure; anything else is a bug and is not retried.
TRANSIENT = (KafkaException, QuixException, BrokerUnavailable, PipelineStalled)
#: Kafka errors about the record itself, not the broker: retrying the same record fails the same way.
RECORD_ERRORS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_MSG_SIZE,
    }
)


def is_transient(exc: BaseException) -> bool:
    """Whether a restart can cure ``exc``: a Kafka or Quix error, unless it is about a record (too large,
    invalid) or serialising one. The decoder's limits should keep those from happening at all."""
    if isinstance(exc, SerializationError):
        return False
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    if isinstance(error, KafkaError) and error.code() in RECORD_ERRORS:
        return False
    return isinstance(exc, TRANSIENT) or quix.is_state_race(exc)


def check_rules(settings: Settings) -> None:
    """Build the settings' rule set once before anything else, so that a wrong rule name or an expression that
    does not compile stops the start with its message (:class:`ConfigError`) and not after connecting."""
    from fraudrules.rules.engine import RuleSet
    from fraudrules.rules.registry import discover_configured

    RuleSet.build(discover_configured(settings.plugins).rules(strict=settings.plugins.strict), settings)


def run_pipeline(settings: Settings, restart_attempts: int = 5, pause_seconds: float = 2.0) -> int:
    """Run until stopped; the exit status: 0 after a clean stop, 1 when it cannot start or keeps failing."""
    configure_logging(settings.log_format, settings.log_level)
    check_rules(settings)
    try:
        check_broker(settings.kafka)
    except BrokerUnavailable as exc:
        log.error("cannot start", error=str(exc))
        return 1
    metrics = None
    if settings.metrics_port is not None:
        from fraudrules.operations.metrics import Metrics

        metrics = Metrics()
        try:
            port = metrics.serve(settings.metrics_port, settings.metrics_address)
        except OSError as exc:
            log.error("cannot start", error=f"metrics port {settings.metrics_port}: {exc.strerror or exc}")
            return 1
        log.info("metrics served", url=f"http://{settings.metrics_address}:{port}/metrics")
    try:
        return _run(settings, metrics, restart_attempts, pause_seconds)
    finally:
        if metrics is not None:
            metrics.close()


def _run(settings: Settings, metrics: Any, restart_attempts: int, pause_seconds: float) -> int:
    failures = 0
    while True:
        started = time.monotonic()
        try:
            create_app(settings, metrics=metrics).run()
            return 0
        except (PluginError, ConfigError) as exc:
            log.error("cannot start", error=str(exc))
            return 1
        except Exception as exc:
            if not is_transient(exc):
                if isinstance(exc, TRANSIENT):
                    log.error("pipeline stopped by an error about a record, not the broker", error=repr(exc))
                else:  # Quix has logged the details; end with one clear line, not a traceback
                    log.error(
                        "pipeline stopped by an error; a restart resumes from the last checkpoint", error=repr(exc)
                    )
                return 1
            failures = 1 if time.monotonic() - started > 60 else failures + 1
            if failures > restart_attempts:
                log.error("pipeline stopped by repeated Kafka errors", error=repr(exc), attempts=failures)
                return 1
            pause = pause_seconds * 2 ** (failures - 1)
            log.warning("Kafka error; restarting the pipeline from its last checkpoint", error=repr(exc), in_s=pause)
            time.sleep(pause)
