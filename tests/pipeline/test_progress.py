"""What input partitions and join partitions tell the partitions downstream about time (``progress.py``)."""

from __future__ import annotations

from fraudrules.pipeline.progress import REPORT_S, Heartbeats, InputProgress
from tests.fixtures import FakeWallClock

T0 = 1_700_000_000_000


def test_heartbeats_go_out_when_the_watermark_rose_by_a_step() -> None:
    beats = Heartbeats(every_ms=50)

    assert [beats.due(0, t) for t in (None, 100, 120, 149, 150, 151, 90)] == [
        False,
        True,
        False,
        False,
        True,
        False,
        False,
    ]
    assert beats.due(1, 120)  # per join partition


def test_an_input_partition_reports_to_every_join_partition_after_a_record_when_its_time_rose_a_step() -> None:
    wall = FakeWallClock()
    reading = InputProgress(join_partitions=3, every_ms=50, interval_s=0.05, wall_clock=wall)

    first = reading.after_record("payment/1", T0)
    assert first == [{"progress": T0, "input": "payment/1", "to": to, "caughtUp": False} for to in range(3)]
    wall.now = 1.0
    assert reading.after_record("payment/1", T0 + 30) == []  # not a step of stream time yet
    assert [p["progress"] for p in reading.after_record("payment/1", T0 + 60)] == [T0 + 60] * 3
    assert [p["input"] for p in reading.after_record("order/1", T0)] == ["order/1"] * 3  # each on its own


def test_a_caught_up_reader_says_so_at_once_and_repeats_it_while_nothing_arrives() -> None:
    wall = FakeWallClock()
    reading = InputProgress(join_partitions=2, wall_clock=wall)
    reading.after_record("order/0", T0)

    assert reading.looked("order/0", caught_up=False) == []  # behind: its records' progress says so
    wall.now = 0.1
    now_done = reading.looked("order/0", caught_up=True)
    assert [(p["progress"], p["caughtUp"], p["to"]) for p in now_done] == [(T0, True, 0), (T0, True, 1)]
    wall.now = 0.1 + REPORT_S / 2
    assert reading.looked("order/0", caught_up=True) == []
    wall.now = 0.1 + REPORT_S
    assert len(reading.looked("order/0", caught_up=True)) == 2  # repeated: a join partition believes it a while

    wall.now = 5.0
    assert reading.after_record("order/0", T0 + 5_000)[0]["caughtUp"] is True  # the last look's word travels


def test_an_input_partition_nothing_was_read_from_reports_minus_one_and_a_lost_one_is_forgotten() -> None:
    wall = FakeWallClock()
    reading = InputProgress(join_partitions=1, wall_clock=wall)
    assert reading.looked("payment/2", caught_up=True) == [
        {"progress": -1, "input": "payment/2", "to": 0, "caughtUp": True}
    ]
    reading.after_record("payment/3", T0)
    reading.forget({"payment/2"})  # a rebalance took payment/3 elsewhere
    assert reading.looked("payment/3", caught_up=True)[0]["progress"] == -1
