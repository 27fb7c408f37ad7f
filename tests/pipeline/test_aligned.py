"""The consumer's buffer at several partitions: the inputs in timestamp order across their partitions, the app's
own topics as they come."""

from __future__ import annotations

from typing import Any

from confluent_kafka import TopicPartition

from fraudrules.pipeline.aligned import NEAR_END, AlignedInputs

INPUTS = ["payment", "order"]


class Message:
    """What the buffer reads of a fetched ``confluent_kafka.Message``."""

    def __init__(self, topic: str, partition: int, offset: int, timestamp: int) -> None:
        self._where = (topic, partition, offset, timestamp)

    def topic(self) -> str:
        return self._where[0]

    def partition(self) -> int:
        return self._where[1]

    def offset(self) -> int:
        return self._where[2]

    def timestamp(self) -> tuple[int, int]:
        return (1, self._where[3])

    def __repr__(self) -> str:
        topic, partition, offset, _ = self._where
        return f"{topic}/{partition}@{offset}"


def batch(topic: str, partition: int, timestamps: list[int], first: int = 0) -> list[Any]:
    return [Message(topic, partition, first + i, at) for i, at in enumerate(timestamps)]


def drain(buffer: AlignedInputs) -> list[Any]:
    out = []
    while (message := buffer.pop()) is not None:
        out.append(message)
    return out


def assigned(*places: tuple[str, int], max_size: int = 10_000) -> AlignedInputs:
    buffer = AlignedInputs(INPUTS, max_size)
    buffer.assign_partitions([TopicPartition(topic, partition) for topic, partition in places])
    return buffer


def test_inputs_come_out_oldest_first_across_partitions_fetched_one_after_the_other() -> None:
    buffer = assigned(("payment", 0), ("payment", 1), ("order", 0))
    # what librdkafka hands over: a whole batch of one partition, then the next
    fetched = batch("payment", 0, [10, 40, 70]) + batch("payment", 1, [20, 50]) + batch("order", 0, [30, 60])
    buffer.feed(fetched, {("payment", 0): 3, ("payment", 1): 2, ("order", 0): 2})

    assert [m.timestamp()[1] for m in drain(buffer)] == [10, 20, 30, 40, 50, 60, 70]


def test_the_apps_own_records_pass_first_as_they_came() -> None:
    buffer = assigned(("payment", 0), ("fraudrules-sides", 0))
    buffer.feed(
        batch("payment", 0, [5]) + batch("fraudrules-sides", 0, [90, 20]) + batch("fraudrules-by-x", 1, [1]),
        {("payment", 0): 1},
    )

    assert [(m.topic(), m.timestamp()[1]) for m in drain(buffer)] == [
        ("fraudrules-sides", 90),
        ("fraudrules-sides", 20),
        ("fraudrules-by-x", 1),
        ("payment", 5),
    ]


def test_an_input_partition_with_records_left_to_fetch_is_waited_for_one_read_to_its_end_is_not() -> None:
    buffer = assigned(("payment", 0), ("order", 0), ("order", 1))
    buffer.feed(batch("payment", 0, [10, 20]), {("payment", 0): 2, ("order", 0): 500, ("order", 1): 0}, {})

    assert buffer.pop() is None  # order/0 has 500 records the consumer has not fetched yet (order/1 is empty)
    buffer.feed(batch("order", 0, [15]), {("order", 0): 500})
    assert [m.timestamp()[1] for m in drain(buffer)] == [10, 15]  # then order/0 is empty and far from its end again

    buffer.feed([], {("order", 0): 500}, {("order", 0): 499})  # read to its end: its position is past offset 498
    assert [m.timestamp()[1] for m in drain(buffer)] == [20]


def test_a_partition_near_its_end_is_not_waited_for_as_live_partitions_are() -> None:
    buffer = assigned(("payment", 0), ("order", 0))
    near = NEAR_END - 1  # records of order/0 produced since its last fetch: what arrives during a round trip
    buffer.feed(batch("payment", 0, [10]), {("payment", 0): 1, ("order", 0): near}, {})

    assert [m.timestamp()[1] for m in drain(buffer)] == [10]
    buffer.feed(batch("payment", 0, [20], first=1), {("payment", 0): 2, ("order", 0): near + 2}, {})
    assert buffer.pop() is None  # now it is behind by more: a backlog, waited for


def test_an_input_partition_whose_end_is_not_known_yet_is_waited_for() -> None:
    buffer = assigned(("payment", 0), ("order", 0))
    buffer.feed(batch("payment", 0, [10]), {("payment", 0): 1})

    assert buffer.pop() is None
    buffer.feed([], {("order", 0): 0})
    assert [m.timestamp()[1] for m in drain(buffer)] == [10]


def test_a_full_partition_is_read_on_while_another_is_waited_for_and_nothing_is_paused() -> None:
    buffer = assigned(("payment", 0), ("order", 0), max_size=3)
    buffer.feed(batch("payment", 0, [1, 2, 3, 4]), {("payment", 0): 1_000, ("order", 0): 1_000})

    assert [m.timestamp()[1] for m in drain(buffer)] == [1, 2]  # down to below full, then order/0 is waited for
    assert buffer.pause_full() == []
    assert buffer.resume_empty() == []


def test_a_partition_holds_what_it_fetched_until_it_is_processed() -> None:
    buffer = assigned(("payment", 0))
    buffer.feed(batch("payment", 0, [1]) + batch("fraudrules-sides", 2, [5, 6]), {("payment", 0): 1})

    assert buffer.holds("payment", 0)
    assert buffer.holds("fraudrules-sides", 2)
    drain(buffer)
    assert not buffer.holds("payment", 0)
    assert not buffer.holds("fraudrules-sides", 2)
    assert not buffer.holds("order", 0)


def test_what_was_fetched_of_a_revoked_or_cleared_partition_is_dropped() -> None:
    buffer = assigned(("payment", 0), ("payment", 1))
    highs = {("payment", 0): 2, ("payment", 1): 2}
    buffer.feed(batch("payment", 0, [1, 2]) + batch("payment", 1, [3, 4]) + batch("fraudrules-sides", 1, [9]), highs)

    buffer.revoke_partitions([TopicPartition("payment", 1), TopicPartition("fraudrules-sides", 1)])
    buffer.clear("payment", 0)
    assert drain(buffer) == []
    buffer.feed(batch("payment", 0, [7], first=1), highs)
    assert [m.timestamp()[1] for m in drain(buffer)] == [7]
