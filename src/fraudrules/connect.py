"""Reaching Kafka: client configs from the settings, and a quick check that fails with a clear message."""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from fraudrules.settings import KafkaSettings


class BrokerUnavailable(Exception):
    """Kafka could not be reached or refused us; the message says why (never with secrets)."""


def client_config(kafka: KafkaSettings, **extra: Any) -> dict[str, Any]:
    """librdkafka settings for a confluent-kafka client."""
    return {"bootstrap.servers": kafka.bootstrap_servers, **kafka.client_config(), **extra}


def check_broker(kafka: KafkaSettings, timeout: float = 10.0) -> list[str]:
    """The broker's topic names; raises :class:`BrokerUnavailable` on failure within ``timeout`` seconds."""
    errors: list[KafkaError] = []
    config = client_config(kafka, error_cb=errors.append, logger=logging.getLogger("fraudrules.kafka"))
    admin = AdminClient(config)
    deadline = time.monotonic() + timeout
    while True:
        try:
            metadata = admin.list_topics(timeout=1.0)
            return sorted(metadata.topics)
        except KafkaException as exc:
            last: Any = exc.args[0] if exc.args else exc
        admin.poll(0)  # serves error_cb: an authentication failure arrives there, not in the exception
        fatal = [e for e in errors if e.code() == KafkaError._AUTHENTICATION or e.fatal()]
        if fatal:
            raise BrokerUnavailable(f"Kafka at {kafka.bootstrap_servers} refused us: {fatal[0].str()}")
        if time.monotonic() >= deadline:
            seen = errors[-1].str() if errors else str(last)
            raise BrokerUnavailable(f"cannot reach Kafka at {kafka.bootstrap_servers} within {timeout:.0f}s: {seen}")
