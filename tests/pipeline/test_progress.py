"""What input partitions and join partitions tell the partitions downstream about time (``progress.py``)."""

from __future__ import annotations

from typing import Any

from fraudrules.pipeline.model import heartbeat_ms, heartbeat_reports, progress_reports
from fraudrules.pipeline.progress import REPORT_S, DownstreamWatermarks, Heartbeats, InputProgress
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


def test_a_reader_reports_to_every_join_partition_after_a_record_when_its_time_rose_a_step() -> None:
    wall = FakeWallClock()
    reading = InputProgress(join_partitions=3, every_ms=50, interval_s=0.05, wall_clock=wall, live=None)

    first = reading.after_record("payment/1", T0)
    assert first == [{"progress": [["payment/1", T0, False]], "to": to} for to in range(3)]
    wall.now = 1.0
    assert reading.after_record("payment/1", T0 + 30) == []  # not a step of stream time yet
    assert [p["progress"] for p in reading.after_record("payment/1", T0 + 60)] == [[["payment/1", T0 + 60, False]]] * 3


def test_one_record_per_join_partition_carries_every_input_partition_the_reader_reads() -> None:
    wall = FakeWallClock()
    reading = InputProgress(join_partitions=2, every_ms=50, interval_s=0.05, wall_clock=wall, live=None)
    reading.after_record("payment/0", T0)
    wall.now = 1.0

    # order/0's first record makes a report due: it carries payment/0's word too, in one record per join partition
    both = reading.after_record("order/0", T0 + 10)
    assert both == [{"progress": [["order/0", T0 + 10, False], ["payment/0", T0, False]], "to": to} for to in (0, 1)]
    # which counts as payment/0's: its next waits a step of its stream time and the interval from there
    assert reading.after_record("payment/0", T0 + 20) == []
    wall.now = 1.06
    assert reading.after_record("payment/0", T0 + 60)[0]["progress"] == [
        ["order/0", T0 + 10, False],
        ["payment/0", T0 + 60, False],
    ]


def test_progress_reports_read_the_one_input_shape_of_earlier_builds() -> None:
    legacy: Any = {"progress": T0, "input": "order/2", "to": 1, "caughtUp": True}
    assert progress_reports(legacy) == [["order/2", T0, True]]
    assert progress_reports({"progress": [["order/2", T0, False]], "to": 1}) == [["order/2", T0, False]]


def test_a_caught_up_reader_says_so_at_once_and_repeats_it_while_nothing_arrives() -> None:
    wall = FakeWallClock()
    reading = InputProgress(join_partitions=2, wall_clock=wall)
    reading.after_record("order/0", T0)

    assert reading.looked("order/0", caught_up=False) == []  # behind: its records' progress says so
    wall.now = 0.1
    now_done = reading.looked("order/0", caught_up=True)
    assert now_done == [{"progress": [["order/0", T0, True]], "to": to} for to in (0, 1)]
    wall.now = 0.1 + REPORT_S / 2
    assert reading.looked("order/0", caught_up=True) == []
    wall.now = 0.1 + REPORT_S
    assert len(reading.looked("order/0", caught_up=True)) == 2  # repeated: a join partition believes it a while

    wall.now = 5.0
    assert reading.after_record("order/0", T0 + 5_000)[0]["progress"][0][2] is True  # the last look's word travels


def test_an_input_partition_nothing_was_read_from_reports_minus_one_and_a_lost_one_is_forgotten() -> None:
    wall = FakeWallClock()
    reading = InputProgress(join_partitions=1, wall_clock=wall)
    assert reading.looked("payment/2", caught_up=True) == [{"progress": [["payment/2", -1, True]], "to": 0}]
    reading.after_record("payment/3", T0)
    assert reading.forget({"payment/2"}) == []  # a rebalance took payment/3 elsewhere; T0 was said
    assert reading.looked("payment/3", caught_up=True)[0]["progress"] == [
        ["payment/2", -1, True],
        ["payment/3", -1, True],
    ]


def test_a_reader_losing_an_input_read_further_than_it_said_gives_its_last_word() -> None:
    # A backlog read to its end within one interval, then a rebalance: the new reader has nothing left to read
    # and could never say how far the partition went.
    wall = FakeWallClock()
    reading = InputProgress(join_partitions=2, every_ms=50, interval_s=0.05, wall_clock=wall, live=None)
    reading.after_record("payment/3", T0)
    reading.after_record("order/3", T0)
    for at in (T0 + 100_000, T0 + 200_000):  # read within the interval: not said
        assert reading.after_record("payment/3", at) == []

    last_word = reading.forget({"order/3"})
    assert last_word == [{"progress": [["payment/3", T0 + 200_000, False]], "to": to} for to in range(2)]
    assert reading.forget({"order/3"}) == []  # said once
    assert [source for source, _, _ in reading.looked("order/3", caught_up=True)[0]["progress"]] == ["order/3"]


def test_a_live_watermark_goes_out_at_the_finer_step_and_a_backlogs_at_the_coarser_one() -> None:
    wall = FakeWallClock()
    clock_ms = [float(T0)]
    beats = Heartbeats(50, 0.05, wall, live=(20, 0.02), epoch_ms=lambda: clock_ms[0])

    assert beats.due("live", T0)
    wall.now = 0.025
    assert beats.due("live", T0 + 25)  # within LIVE_LAG_MS of the clock: 20 ms of stream and wall time suffice
    assert not beats.due("live", T0 + 60)  # but not twice within 20 ms of wall time

    behind = T0 - 3_600_000  # an hour behind the clock: a backlog
    wall.now = 1.0
    assert beats.due("backlog", behind)
    wall.now = 1.025
    assert not beats.due("backlog", behind + 25)
    assert not beats.due("backlog", behind + 60)  # a step of stream time, not yet 50 ms of wall time
    wall.now = 1.05
    assert beats.due("backlog", behind + 60)
    assert beats.resting("backlog")


def test_one_heartbeat_per_downstream_partition_carries_every_partition_the_instance_holds() -> None:
    wall = FakeWallClock()
    marks: dict[int, int | None] = {0: T0, 1: T0 + 5, 2: None}  # partition 2 has promised nothing yet
    behind = {0: False, 1: True, 2: False}
    promises = DownstreamWatermarks(2, lambda: [2, 1, 0], marks.get, behind.__getitem__, wall_clock=wall)

    assert promises.due(1) == [{"heartbeat": [[1, T0 + 5, False], [0, T0, True]], "to": to} for to in (0, 1)]
    # partition 0's watermark went out with it: its own waits a step of stream time and the interval from there
    marks[0] = T0 + 60
    wall.now = 0.01
    assert promises.due(0) == []
    # due at 0.06, but partition 1 is behind it: the record waits for it, at most the interval
    wall.now = 0.06
    assert promises.due(0, behind=lambda: True) == []
    wall.now = 0.12
    assert promises.due(0, behind=lambda: True)[0]["heartbeat"] == [[0, T0 + 60, False], [1, T0 + 5, False]]


def test_a_heartbeat_goes_out_when_the_last_of_the_instances_partitions_has_caught_up() -> None:
    wall = FakeWallClock()
    marks: dict[int, int | None] = {0: T0, 1: T0, 2: T0}
    promises = DownstreamWatermarks(1, lambda: [0, 1, 2], marks.get, lambda _: False, wall_clock=wall)
    assert [partition for partition, _, _ in promises.due(0)[0]["heartbeat"]] == [0, 1, 2]

    # the heartbeats of the stage before reach each partition in turn: one record, once all three have moved
    wall.now = 0.1
    marks[0] = T0 + 100
    assert promises.due(0) == []
    marks[1] = T0 + 100
    assert promises.due(1) == []
    marks[2] = T0 + 100
    assert promises.due(2) == [{"heartbeat": [[2, T0 + 100, True], [0, T0 + 100, True], [1, T0 + 100, True]], "to": 0}]
    assert promises.due(2) == []  # sent: nothing more until the next step

    # one that stays behind holds the others back by the interval at most (a timer asks too)
    wall.now = 0.2
    marks[0] = T0 + 200
    assert promises.due(0) == []
    wall.now = 0.23
    assert promises.due(1) == []
    wall.now = 0.26
    beat = promises.due(1)
    assert beat[0]["heartbeat"] == [[1, T0 + 100, True], [0, T0 + 200, True], [2, T0 + 100, True]]


def test_a_partition_never_reported_goes_out_at_once_even_below_the_others() -> None:
    wall = FakeWallClock()
    marks: dict[int, int | None] = {0: T0 + 500, 1: None}  # partition 1 just assigned, nothing known yet
    promises = DownstreamWatermarks(1, lambda: [0, 1], marks.get, lambda _: False, wall_clock=wall)
    assert promises.due(0)[0]["heartbeat"] == [[0, T0 + 500, True]]
    wall.now = 0.01
    marks[1] = T0  # its state says less than the others: downstream must hear it, not wait for a step
    assert promises.due(1)[0]["heartbeat"] == [[1, T0, True], [0, T0 + 500, True]]


def test_heartbeat_reports_read_the_one_partition_shape_of_earlier_builds() -> None:
    legacy: Any = {"heartbeat": T0, "upstream": 3, "to": 0}
    assert heartbeat_reports(legacy) == [[3, T0, True]]  # absent caughtUp: yes, as then
    assert heartbeat_ms(legacy) == T0
    assert heartbeat_ms({"heartbeat": [[1, T0 + 5, False], [0, T0, True]], "to": 0}) == T0 + 5
