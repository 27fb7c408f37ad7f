"""``fraudrules run``: logging, a broker check, the plugins, then the pipeline until SIGINT/SIGTERM.

Bad configuration (an unreachable broker or a refused login at start-up, a broken plugin in strict mode)
ends at once with one clear error and exit status 1. A Kafka error after start-up (say the broker
restarting while the application creates its topics) restarts the pipeline in-process, from its last
checkpoint, up to ``restart_attempts`` times in a row with a growing pause; then it exits with status 1.
"""

from __future__ import annotations

import time

import structlog
from confluent_kafka import KafkaException
from quixstreams.exceptions import QuixException

from fraudrules.app import create_app
from fraudrules.connect import BrokerUnavailable, check_broker
from fraudrules.logs import configure_logging
from fraudrules.rules.registry import PluginError
from fraudrules.settings import ConfigError, Settings

log = structlog.get_logger(__name__)

#: Errors that a broker coming back can cure; anything else is a bug and is not retried.
TRANSIENT = (KafkaException, QuixException, BrokerUnavailable)


def run_pipeline(settings: Settings, restart_attempts: int = 5, pause_seconds: float = 2.0) -> int:
    """Run until stopped; the exit status: 0 after a clean stop, 1 when it cannot start or keeps failing."""
    configure_logging(settings.log_format, settings.log_level)
    try:
        check_broker(settings.kafka)
    except BrokerUnavailable as exc:
        log.error("cannot start", error=str(exc))
        return 1
    failures = 0
    while True:
        started = time.monotonic()
        try:
            create_app(settings).run()
            return 0
        except (PluginError, ConfigError) as exc:
            log.error("cannot start", error=str(exc))
            return 1
        except TRANSIENT as exc:
            failures = 1 if time.monotonic() - started > 60 else failures + 1
            if failures > restart_attempts:
                log.error("pipeline stopped by repeated Kafka errors", error=repr(exc), attempts=failures)
                return 1
            pause = pause_seconds * 2 ** (failures - 1)
            log.warning("Kafka error; restarting the pipeline from its last checkpoint", error=repr(exc), in_s=pause)
            time.sleep(pause)
        except Exception as exc:  # Quix has logged the details; end with one clear line, not a traceback
            log.error("pipeline stopped by an error; a restart resumes from the last checkpoint", error=repr(exc))
            return 1
