"""What the consumer's statistics say of its partitions' offsets (librdkafka's ``stats_cb`` document)."""

from __future__ import annotations

import pytest
from confluent_kafka import TopicPartition

from fraudrules import codec
from fraudrules.pipeline.offsets import CaughtUp, ConsumerOffsets, PipelineStalled, StallWatch
from tests.fixtures import FakeWallClock

# The parts of a librdkafka statistics report that are read (the whole one has brokers, counters, ...).
REPORT = {
    "name": "rdkafka#consumer-1",
    "type": "consumer",
    "topics": {
        "payment": {
            "topic": "payment",
            "partitions": {
                "0": {"partition": 0, "lo_offset": 0, "hi_offset": 120, "committed_offset": 100, "app_offset": 110},
                "1": {"partition": 1, "lo_offset": 0, "hi_offset": 0, "committed_offset": -1001},
                "-1": {"partition": -1, "lo_offset": -1001, "hi_offset": -1001, "committed_offset": -1001},
            },
        },
        "order": {"topic": "order", "partitions": {"3": {"partition": 3, "hi_offset": 7}}},
    },
}


def test_each_reported_partition_has_its_low_high_and_committed_offsets() -> None:
    offsets = ConsumerOffsets()

    offsets(codec.dumps(REPORT).decode())

    assert offsets.partitions == {
        ("payment", 0): (0, 120, 100),
        ("payment", 1): (0, 0, -1001),  # empty, never committed
        ("order", 3): (-1001, 7, -1001),  # what is missing is not known
    }


def test_a_new_report_replaces_the_last_one() -> None:
    offsets = ConsumerOffsets()
    offsets(codec.dumps(REPORT).decode())

    offsets(codec.dumps({"topics": {}}).decode())  # a rebalance took every partition away

    assert offsets.partitions == {}


SIDES = {("sides", 0)}


def report(sides: tuple[int, int], changelog_left: int = 500, broker: str = "UP") -> str:
    """A statistics report: the sides topic's partition 0 at (consumed position, records left), a changelog
    partition with records left (paused, as Quix Streams keeps them), broker 1 in ``broker`` state."""
    position, left = sides
    return codec.dumps(
        {
            "brokers": {
                "127.0.0.1:9092/bootstrap": {"nodeid": -1, "state": "INIT"},
                "127.0.0.1:9092/1": {"nodeid": 1, "state": broker},
            },
            "topics": {
                "sides": {"partitions": {"0": {"app_offset": position, "consumer_lag": left}}},
                "changelog__app--sides": {"partitions": {"0": {"app_offset": -1001, "consumer_lag": changelog_left}}},
            },
        }
    ).decode()


def test_a_partition_with_records_to_read_whose_position_does_not_move_is_stalled() -> None:
    wall, offsets = FakeWallClock(), ConsumerOffsets()
    watch = StallWatch(offsets, stall_s=30, wall_clock=wall)

    for at, position in ((0, 100), (10, 250), (20, 250), (39, 250)):
        wall.now = at
        offsets(report((position, 900)))
        assert watch.stalled(recovering=False, assigned=SIDES) == []  # moving, then not moving for 29 s
    wall.now = 40
    offsets(report((250, 900)))
    assert watch.stalled(recovering=False, assigned=SIDES) == [("sides", 0)]  # 30 s at 250; the changelog never counts
    with pytest.raises(PipelineStalled, match=r"sides\[0\]: records wait to be read"):
        watch.check(recovering=False, assigned=SIDES)


def test_a_partition_no_longer_assigned_is_not_stalled() -> None:
    wall, offsets = FakeWallClock(), ConsumerOffsets()
    watch = StallWatch(offsets, stall_s=30, wall_clock=wall)
    offsets(report((250, 900)))
    watch.stalled(recovering=False, assigned=SIDES)
    wall.now = 60

    assert watch.stalled(recovering=False, assigned=set()) == []  # revoked: its statistics are frozen


def test_no_stall_without_records_to_read_while_a_broker_is_down_or_a_store_recovers() -> None:
    wall, offsets = FakeWallClock(), ConsumerOffsets()
    watch = StallWatch(offsets, stall_s=30, wall_clock=wall)
    offsets(report((250, 1)))  # only a transaction marker left: caught up
    assert watch.stalled(recovering=False, assigned=SIDES) == []
    wall.now = 100
    assert watch.stalled(recovering=False, assigned=SIDES) == []

    offsets(report((250, 900), broker="DOWN"))
    wall.now = 200
    assert watch.stalled(recovering=False, assigned=SIDES) == []
    offsets(report((250, 900)))
    wall.now = 210
    assert watch.stalled(recovering=True, assigned=SIDES) == []
    wall.now = 220
    assert (
        watch.stalled(recovering=False, assigned=SIDES) == []
    )  # counted from here: the outage and the recovery do not count
    wall.now = 250
    assert watch.stalled(recovering=False, assigned=SIDES) == [("sides", 0)]


class _AssignedConsumer:
    """A consumer that counts how often it is asked for its assignment."""

    def __init__(self, assignment: list[TopicPartition]) -> None:
        self.assignment_now = assignment
        self.asked = 0

    def assignment(self) -> list[TopicPartition]:
        self.asked += 1
        return list(self.assignment_now)


def test_the_assignment_is_asked_once_per_rebalance_and_never_lists_a_changelog() -> None:
    consumer = _AssignedConsumer([TopicPartition("payment", 0), TopicPartition("changelog__sides", 0)])
    caught_up = CaughtUp(consumer, ConsumerOffsets())

    assert [(tp.topic, tp.partition) for tp in caught_up.assigned()] == [("payment", 0)]
    caught_up.assigned()
    assert consumer.asked == 1

    consumer.assignment_now = [TopicPartition("payment", 0), TopicPartition("order", 1)]
    caught_up.rebalanced()
    assert [(tp.topic, tp.partition) for tp in caught_up.assigned()] == [("payment", 0), ("order", 1)]
    assert consumer.asked == 2
