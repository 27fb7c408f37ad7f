"""``fraudrules run``: logging, a broker check, the plugins, then the pipeline until SIGINT/SIGTERM."""

from __future__ import annotations

import structlog

from fraudrules.app import create_app
from fraudrules.connect import BrokerUnavailable, check_broker
from fraudrules.logs import configure_logging
from fraudrules.rules.registry import PluginError
from fraudrules.settings import Settings

log = structlog.get_logger(__name__)


def run_pipeline(settings: Settings) -> int:
    """Run until stopped; the exit status: 0 after a clean stop, 1 when it cannot start or fails."""
    configure_logging(settings.log_format, settings.log_level)
    try:
        check_broker(settings.kafka)
        app = create_app(settings)
    except (BrokerUnavailable, PluginError) as exc:
        log.error("cannot start", error=str(exc))
        return 1
    try:
        app.run()
    except Exception as exc:  # Quix has logged the details; end with one clear line, not a traceback
        log.error("pipeline stopped by an error; restart resumes from the last checkpoint", error=repr(exc))
        return 1
    return 0
