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
    """Run until stopped; the exit status: 0 after a clean stop, 1 when it cannot start."""
    configure_logging(settings.log_format, settings.log_level)
    try:
        check_broker(settings.kafka)
        app = create_app(settings)
    except (BrokerUnavailable, PluginError) as exc:
        log.error("cannot start", error=str(exc))
        return 1
    app.run()
    return 0
