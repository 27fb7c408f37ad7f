"""The watermark and idleness rule (``pipeline/watermark.py``), on its own: pure logic, a wall clock passed in."""

from __future__ import annotations

from fraudrules.pipeline.watermark import STALL_S, IdleInputs


def test_the_watermark_is_the_lowest_of_the_inputs_that_are_not_idle() -> None:
    inputs: IdleInputs[str] = IdleInputs(idle_s=30.0)
    marks = [("a", 5_000), ("b", 2_000), ("c", 9_000)]
    assert inputs.lowest(marks, now=0.0) == 2_000  # "b" holds it back from now on

    for now in (10.0, 20.0, 29.0):  # "a" and "c" move, "b" stays still
        inputs.moved("a", now)
        inputs.moved("c", now)
        assert inputs.lowest(marks, now) == 2_000
    assert not inputs.idle("b", 29.0)
    assert inputs.lowest(marks, 30.0) == 5_000  # "b" held it back, still, for 30 s
    assert inputs.idle("b", 30.0)


def test_an_input_is_idle_only_once_it_has_held_the_watermark_back_for_idle_s() -> None:
    inputs: IdleInputs[str] = IdleInputs(idle_s=30.0)
    inputs.moved("b", 0.0)  # "b" moves to 9,000 and falls still, ahead of "a"
    assert inputs.lowest([("a", 5_000), ("b", 9_000)], now=0.0) == 5_000
    inputs.moved("a", 20.0)
    assert inputs.lowest([("a", 6_000), ("b", 9_000)], now=20.0) == 6_000  # "b" still, but never asked
    inputs.moved("a", 50.0)
    assert inputs.lowest([("a", 12_000), ("b", 9_000)], now=50.0) == 9_000  # "a" passes it: "b" holds it from now
    assert inputs.lowest([("a", 12_000), ("b", 9_000)], now=79.0) == 9_000
    assert inputs.lowest([("a", 12_000), ("b", 9_000)], now=80.0) == 12_000

    inputs.moved("b", 81.0)  # it moves again: its clock starts afresh when it next holds the watermark back
    assert inputs.lowest([("a", 12_000), ("b", 10_000)], now=81.0) == 10_000
    assert not inputs.idle("b", 110.0)


def test_an_input_never_heard_of_holds_the_watermark_until_it_is_idle() -> None:
    inputs: IdleInputs[str] = IdleInputs(idle_s=30.0)
    marks: list[tuple[str, int | None]] = [("a", 5_000), ("b", None)]
    assert inputs.lowest(marks, now=0.0) is None  # its clock starts now
    assert inputs.lowest(marks, now=29.0) is None
    assert inputs.lowest(marks, now=30.0) == 5_000


def test_when_every_input_is_idle_the_caller_says_what_the_watermark_is() -> None:
    inputs: IdleInputs[str] = IdleInputs(idle_s=1.0)
    marks = [("a", 5_000), ("b", 7_000)]
    assert inputs.lowest(marks, now=0.0) == 5_000  # "a" holds it back from now on
    assert inputs.lowest(marks, now=1.0) == 7_000  # "a" idle: "b" holds it back from now on
    assert inputs.lowest(marks, now=2.0) is None
    assert inputs.lowest(marks, now=2.0, when_all_idle=7_000) == 7_000


def test_with_no_idle_time_nothing_is_ever_idle() -> None:
    inputs: IdleInputs[str] = IdleInputs(idle_s=None)
    assert inputs.lowest([("a", 5_000), ("b", 1_000)], now=0.0) == 1_000
    assert not inputs.idle("b", now=1e9)
    assert inputs.lowest([("a", 5_000), ("b", 1_000)], now=1e9) == 1_000


def test_where_readers_confirm_only_an_input_read_to_the_end_can_be_idle() -> None:
    inputs: IdleInputs[str] = IdleInputs(idle_s=30.0, confirmed=True)
    inputs.confirm("b", caught_up=False, now=0.0)  # its reader is behind on a backlog
    marks = [("a", 5_000), ("b", 2_000)]
    assert inputs.lowest(marks, now=0.0) == 2_000
    assert inputs.lowest(marks, now=1_000.0) == 2_000  # however long

    inputs.confirm("b", caught_up=True, now=1_000.0)
    assert inputs.lowest(marks, now=1_000.0) == 5_000  # held it back for 1,000 s, and read to the end


def test_a_confirmation_holds_only_as_long_as_it_is_told_to() -> None:
    inputs: IdleInputs[str] = IdleInputs(idle_s=30.0, confirmed=True, confirmation_s=5.0)
    assert not inputs.idle("b", now=0.0)  # holding the watermark back from now on
    inputs.confirm("b", caught_up=True, now=0.0)
    assert not inputs.idle("b", now=30.0)  # its reader's word is 30 s old: it may be gone
    inputs.confirm("b", caught_up=True, now=28.0)
    assert inputs.idle("b", now=30.0)

    forever: IdleInputs[str] = IdleInputs(idle_s=30.0, confirmed=True)
    assert not forever.idle("b", now=0.0)
    forever.confirm("b", caught_up=True, now=0.0)
    assert forever.idle("b", now=1_000.0)


def test_after_a_stall_no_input_is_idle_for_the_time_nothing_could_be_read() -> None:
    inputs: IdleInputs[str] = IdleInputs(idle_s=30.0)
    inputs.heard(0.0)
    assert not inputs.idle("b", 0.0)  # "b" holds the watermark back from second 0

    inputs.heard(100.0)  # nothing reached the partition for 100 s: not read, or the whole stream paused
    assert not inputs.idle("b", 100.0)
    assert not inputs.idle("b", 129.0)
    assert inputs.idle("b", 130.0)


def test_a_partition_heard_from_often_keeps_its_inputs_clocks() -> None:
    inputs: IdleInputs[str] = IdleInputs(idle_s=30.0)
    assert not inputs.idle("b", 0.0)
    for second in range(31):
        inputs.heard(float(second))
        inputs.moved("a", float(second))
    assert STALL_S < 30.0
    assert inputs.idle("b", 30.0)


def test_all_idle_since_says_since_when_the_last_input_has_been_still() -> None:
    inputs: IdleInputs[str] = IdleInputs(idle_s=30.0)
    inputs.moved("a", 1.0)
    inputs.moved("b", 3.0)
    assert inputs.all_idle_since(["a", "b"], now=4.0, still_s=2.0) is None  # "b" moved 1 s ago
    assert inputs.all_idle_since(["a", "b"], now=5.0, still_s=2.0) == 3.0

    confirming: IdleInputs[str] = IdleInputs(idle_s=30.0, confirmed=True, confirmation_s=5.0)
    confirming.moved("a", 1.0)
    assert confirming.all_idle_since(["a"], now=5.0, still_s=2.0) is None  # its reader never said it was done
    confirming.confirm("a", caught_up=True, now=4.0)
    assert confirming.all_idle_since(["a"], now=5.0, still_s=2.0) == 1.0


def test_inputs_level_at_the_bottom_hold_the_watermark_back_together_and_go_idle_together() -> None:
    inputs: IdleInputs[str] = IdleInputs(idle_s=30.0)
    never: list[tuple[str, int | None]] = [("a", 5_000), ("b", None), ("c", None), ("d", None)]
    assert inputs.lowest(never, now=0.0) is None
    assert inputs.lowest(never, now=30.0) == 5_000  # all three at once, not one idle time after another

    tied = [("a", 9_000), ("b", 2_000), ("c", 2_000)]  # the join's expiry path: -1 for a partition never read
    level: IdleInputs[str] = IdleInputs(idle_s=30.0)
    assert level.lowest(tied, now=0.0) == 2_000
    assert level.lowest(tied, now=30.0) == 9_000


def test_an_input_that_stops_holding_the_watermark_back_stops_its_clock() -> None:
    inputs: IdleInputs[str] = IdleInputs(idle_s=30.0)
    assert inputs.lowest([("a", 5_000), ("b", 2_000)], now=0.0) == 2_000  # "b" holds it back from 0
    inputs.moved("c", 10.0)
    assert inputs.lowest([("a", 5_000), ("b", 2_000), ("c", 1_000)], now=10.0) == 1_000  # "c" below: "b" is not
    inputs.moved("c", 20.0)
    assert inputs.lowest([("a", 5_000), ("b", 2_000), ("c", 6_000)], now=20.0) == 2_000  # "b" again, from 20
    assert inputs.lowest([("a", 5_000), ("b", 2_000), ("c", 6_000)], now=49.0) == 2_000  # not idle at 30 s from 0
    assert inputs.lowest([("a", 5_000), ("b", 2_000), ("c", 6_000)], now=50.0) == 5_000
