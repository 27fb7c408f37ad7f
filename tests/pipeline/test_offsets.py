"""What the consumer's statistics say of its partitions' offsets (librdkafka's ``stats_cb`` document)."""

from __future__ import annotations

from fraudrules import codec
from fraudrules.pipeline.offsets import ConsumerOffsets

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
