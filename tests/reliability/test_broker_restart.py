"""The broker goes away while the app runs and comes back: the app carries on by itself, nothing is lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fraudrules.kafka_tools.localkafka import LocalKafka, free_port
from tests.kafka_helpers import (
    create_topics,
    read_verdicts,
    running,
    settings_for,
    wait_for_group,
)
from tests.reliability.support import produce_generated, recent_generator, verdict_counts

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

COUNT = 4000
RATE = 200  # orders/s: 20 s of live traffic
DOWN_SECONDS = 15


@pytest.fixture
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A broker of this test's own: the session's must stay up for the others."""
    broker = LocalKafka(tmp_path_factory.mktemp("restart"), port=free_port(), heap="512m").start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_the_app_recovers_when_the_broker_returns(
    own_broker: LocalKafka, unique: str, tmp_path: Path, how: str
) -> None:
    broker = own_broker
    settings = settings_for(broker.bootstrap, unique, tmp_path, join_window_seconds=30)
    topics = settings.topics
    create_topics(broker.bootstrap, [topics.payment, topics.order])

    def outage() -> None:
        time.sleep(6)
        getattr(broker, how)()
        time.sleep(DOWN_SECONDS)
        broker.restart()

    with running(settings, tmp_path / "app.log") as pipeline:
        # the outage comes once the app runs (its topics created, partitions assigned)
        assert wait_for_group(settings.kafka, settings.consumer_group, timeout=60, alive=pipeline.alive)
        thread = threading.Thread(target=outage)
        thread.start()
        # The producer waits out the outage too (librdkafka retries until message.timeout.ms). It looks the
        # partitions' leader up every second: once, a producer left with "leader -1" from the broker's shutdown
        # never looked again (librdkafka #4976 is of that kind) and the test, not the app, failed after 120 s.
        metadata = {"topic.metadata.refresh.interval.ms": 1000}
        generator = recent_generator(COUNT, seed=41)
        produce_generated(broker.bootstrap, topics, generator, partitions=1, rate=RATE, producer_config=metadata)
        thread.join()
        assert pipeline.process.poll() is None, "the app exited during the outage"
        sink = read_verdicts(broker.bootstrap, topics.sink, COUNT, pipeline, settle=2)

    counts = verdict_counts(sink)
    assert len(counts) == COUNT
