"""structlog configuration, done once by the CLI / application entry point.

Libraries and plugins only call ``structlog.get_logger()``. Console output on a TTY, JSON lines otherwise;
standard-library logging (Quix Streams, confluent-kafka) goes through the same processors and renderer.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

import structlog

LogFormat = Literal["auto", "json", "console"]

#: Keys whose values never reach a log line.
SECRET_KEYS = frozenset({"password", "sasl_password", "sasl.password", "ssl_key_password", "ssl.key.password"})


def _redact(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key in SECRET_KEYS.intersection(event_dict):
        event_dict[key] = "***"
    return event_dict


def configure_logging(fmt: LogFormat = "auto", level: str = "INFO") -> None:
    """Configure structlog and route standard-library logging through the same renderer."""
    json_output = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_output
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Quix Streams installs its own handler on its logger; let it propagate to ours instead.
    quix = logging.getLogger("quixstreams")
    quix.handlers[:] = []
    quix.propagate = True
