"""Reaching Kafka: client settings from KafkaSettings, and a broker check that fails fast with a clear message."""

from __future__ import annotations

import time

import pytest
from pydantic import SecretStr

from fraudrules.connect import BrokerUnavailable, check_broker, client_config
from fraudrules.kafka_tools.localkafka import free_port
from fraudrules.settings import KafkaSettings


def test_client_config_carries_security_and_extras() -> None:
    kafka = KafkaSettings(
        bootstrap_servers="h:1",
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username="u",
        sasl_password=SecretStr("p"),
        extra={"client.id": "me"},
    )

    assert client_config(kafka, **{"group.id": "g"}) == {
        "bootstrap.servers": "h:1",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "u",
        "sasl.password": "p",
        "client.id": "me",
        "group.id": "g",
    }


def test_an_unreachable_broker_is_reported_within_the_timeout() -> None:
    kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}")
    began = time.monotonic()

    with pytest.raises(BrokerUnavailable, match=r"cannot reach Kafka at 127\.0\.0\.1:"):
        check_broker(kafka, timeout=1.0)
    assert time.monotonic() - began < 5
