"""Shared fixtures: one real Kafka broker per test session, and unique topic names per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from fraudrules.kafka_tools.localkafka import LocalKafka, free_ports


@dataclass(frozen=True)
class Broker:
    """Where the test broker listens; ``sasl_bootstrap`` is None for an external broker."""

    bootstrap: str
    sasl_bootstrap: str | None = None
    local: LocalKafka | None = None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the broker is a ``kafka`` test, marked or not: ``-m "not kafka"`` never needs one."""
    for item in items:
        if "kafka" in getattr(item, "fixturenames", ()) and item.get_closest_marker("kafka") is None:
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """The broker in FRAUDRULES_TEST_BROKER, or a local one on free ports for this session."""
    external = os.environ.get("FRAUDRULES_TEST_BROKER")
    if external:
        yield Broker(bootstrap=external)
        return
    port, sasl_port = free_ports(2)
    broker = LocalKafka(tmp_path_factory.mktemp("kafka"), port=port, sasl_port=sasl_port, heap="768m").start()
    try:
        yield Broker(bootstrap=broker.bootstrap, sasl_bootstrap=broker.sasl_bootstrap, local=broker)
    finally:
        broker.stop()


@pytest.fixture
def unique() -> str:
    """A suffix that keeps this test's topics and consumer groups apart from every other test's."""
    return uuid.uuid4().hex[:10]
