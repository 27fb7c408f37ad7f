"""The reorder buffer in front of the rule groups: events reach the rules in decision-time order, whatever the
order they arrive in and however many join partitions feed them."""

from __future__ import annotations

import random
from typing import Any

from fraudrules.pipeline.decode import side_record
from fraudrules.pipeline.join import enriched_event
from fraudrules.pipeline.model import Enriched, Source
from fraudrules.pipeline.reorder import Reorder, order_key
from tests.fixtures import DictPartitionStates, FakeWallClock, order, payment

T0 = 1_700_000_000_000


def event(order_id: int, decision_ms: int) -> Enriched:
    source: Source = {"topic": "payment", "partition": 0, "offset": order_id, "timestamp": decision_ms}
    pay = side_record(payment(order_id), "payment", source)
    od = side_record(order(order_id), "order", {**source, "topic": "order"})
    return enriched_event(pay, od, "joined", decision_ms)


def ids(events: list[Any]) -> list[int]:
    return [e["orderId"] for e in events]


def test_events_wait_for_the_watermark_minus_the_bound_and_come_out_in_decision_time_order() -> None:
    reorder, states = Reorder(upstream=1, bound_ms=100, idle_ms=None), DictPartitionStates()

    for order_id, at in [(3, T0 + 300), (1, T0 + 100), (2, T0 + 200), (4, T0 + 900)]:
        assert reorder.add(event(order_id, at), states) == []

    assert reorder.report(0, T0 + 150, states) == []  # releases below T0 + 50: nothing yet
    assert ids(reorder.report(0, T0 + 350, states)) == [1, 2]  # below T0 + 250
    assert ids(reorder.report(0, T0 + 450, states)) == [3]
    assert ids(reorder.flush(states)) == [4]


def test_an_event_at_the_watermark_waits_for_company_it_may_still_get() -> None:
    reorder, states = Reorder(upstream=1, bound_ms=0, idle_ms=None), DictPartitionStates()
    reorder.add(event(5, T0), states)

    assert reorder.report(0, T0, states) == []
    assert ids(reorder.report(0, T0 + 1, states)) == [5]


def test_release_order_is_decision_time_then_order_id() -> None:
    reorder, states = Reorder(upstream=1, bound_ms=0, idle_ms=None), DictPartitionStates()
    for order_id, at in [(9, T0 + 5), (7, T0 + 5), (8, T0 + 1)]:
        reorder.add(event(order_id, at), states)

    assert ids(reorder.report(0, T0 + 6, states)) == [8, 7, 9]


def test_nothing_is_released_until_every_join_partition_has_reported_and_the_lowest_decides() -> None:
    reorder, states = Reorder(upstream=2, bound_ms=0, idle_ms=None), DictPartitionStates()
    reorder.add(event(1, T0), states)
    reorder.add(event(2, T0 + 5_000), states)

    assert reorder.report(0, T0 + 10_000, states) == []
    assert ids(reorder.report(1, T0 + 1, states)) == [1]
    assert ids(reorder.report(1, T0 + 20_000, states)) == [2]


def test_any_arrival_order_from_any_number_of_join_partitions_gives_the_same_release_order() -> None:
    rng = random.Random(7)
    # Four join partitions, each emitting its events in its own decision-time order with heartbeats after them.
    streams: list[list[tuple[str, Any]]] = []
    for upstream in range(4):
        times = sorted(rng.randrange(0, 60_000) for _ in range(200))
        stream: list[tuple[str, Any]] = []
        for n, at in enumerate(times):
            stream.append(("event", event(upstream * 1_000 + n, T0 + at)))
            stream.append(("beat", (upstream, T0 + at)))
        stream.append(("beat", (upstream, T0 + 61_000)))
        streams.append(stream)
    expected = sorted((e for s in streams for kind, e in s if kind == "event"), key=order_key)

    for run in range(20):  # interleave the four streams at random, each kept in its own order
        reorder, states = Reorder(upstream=4, bound_ms=0, idle_ms=None), DictPartitionStates()
        cursors, released = [0] * 4, []
        while any(c < len(s) for c, s in zip(cursors, streams, strict=True)):
            upstream = rng.choice([u for u in range(4) if cursors[u] < len(streams[u])])
            kind, item = streams[upstream][cursors[upstream]]
            cursors[upstream] += 1
            if kind == "event":
                released += reorder.add(item, states)
            else:
                released += reorder.report(item[0], item[1], states)
        assert ids(released) == ids(expected), run
        assert reorder.late == 0


def test_an_event_older_than_what_was_released_is_evaluated_at_once_and_marked_late() -> None:
    reorder, states = Reorder(upstream=1, bound_ms=0, idle_ms=None), DictPartitionStates()
    reorder.add(event(1, T0 + 100), states)
    reorder.report(0, T0 + 200, states)

    [late] = reorder.add(event(2, T0 + 50), states)

    assert (late["orderId"], late.get("late")) == (2, True)
    assert reorder.late == 1


def test_an_event_delivered_twice_is_released_once() -> None:
    reorder, states = Reorder(upstream=1, bound_ms=0, idle_ms=None), DictPartitionStates()
    reorder.add(event(1, T0), states)
    reorder.add(event(1, T0), states)  # a replay after a restart

    assert ids(reorder.report(0, T0 + 1, states)) == [1]
    assert reorder.flush(states) == []


def test_a_waiting_event_is_kept_in_its_buckets_value_one_write_per_bucket() -> None:
    reorder, states = Reorder(upstream=1, bound_ms=0, idle_ms=None), DictPartitionStates()
    for order_id in (1, 2, 3):
        reorder.add(event(order_id, T0 + order_id), states)

    stored = states.by_key[b"fraudrules:reorder"]
    bucket = T0 // 100
    assert set(stored) == {"meta", bucket}  # no key per event
    assert [entry[:3] for entry in stored[bucket]] == [[T0 + n, n, event(n, T0 + n)["verdictId"]] for n in (1, 2, 3)]
    assert ids(reorder.report(0, T0 + 100, states)) == [1, 2, 3]
    assert set(stored) == {"meta"}


def test_an_event_waiting_under_a_key_of_its_own_as_an_earlier_release_kept_it_is_released() -> None:
    reorder, states = Reorder(upstream=1, bound_ms=0, idle_ms=None), DictPartitionStates()
    reorder.add(event(2, T0 + 2), states)
    old = event(1, T0 + 1)
    stored = states.by_key[b"fraudrules:reorder"]
    stored[T0 // 100].insert(0, [T0 + 1, 1, old["verdictId"]])
    stored["e:" + old["verdictId"]] = old

    assert ids(reorder.report(0, T0 + 100, states)) == [1, 2]
    assert set(stored) == {"meta"}


def test_flush_releases_everything_still_waiting_in_order_and_leaves_only_the_marks() -> None:
    reorder, states = Reorder(upstream=1, bound_ms=1_000, idle_ms=None), DictPartitionStates()
    for order_id, at in [(2, T0 + 70_000), (1, T0 + 10)]:
        reorder.add(event(order_id, at), states)

    assert ids(reorder.flush(states)) == [1, 2]
    assert states.live_keys() == {b"fraudrules:reorder"}
    assert set(states.by_key[b"fraudrules:reorder"]) == {"meta"}


def test_a_join_partition_silent_longer_than_idle_ms_stops_holding_the_rules_back() -> None:
    wall = FakeWallClock()
    reorder, states = Reorder(upstream=2, bound_ms=0, idle_ms=30_000, wall_clock=wall), DictPartitionStates()
    reorder.add(event(1, T0), states)
    reorder.report(1, T0 - 5_000, states)  # partition 1 reports once, then falls silent

    for second in range(30):  # partition 0 goes on reporting
        wall.now = float(second)
        assert reorder.report(0, T0 + 1_000 + second, states) == []
    wall.now = 30.0
    assert ids(reorder.report(0, T0 + 2_000, states)) == [1]


def test_a_group_partition_not_read_for_a_while_does_not_find_the_join_partitions_idle() -> None:
    wall = FakeWallClock()
    reorder, states = Reorder(upstream=2, bound_ms=0, idle_ms=30_000, wall_clock=wall), DictPartitionStates()
    reorder.add(event(1, T0), states)
    reorder.report(1, T0 - 5_000, states)
    reorder.report(0, T0 + 1_000, states)

    wall.now = 40.0  # nothing read here for 40 s (a backlog elsewhere); partition 1's reports queue behind this one
    assert reorder.report(0, T0 + 2_000, states) == []
    assert ids(reorder.report(1, T0 + 3_000, states)) == [1]  # released by both promises, not by idleness


def test_with_readers_reporting_a_join_partition_behind_on_its_input_holds_the_rules_back_however_long() -> None:
    wall = FakeWallClock()
    reorder = Reorder(upstream=2, bound_ms=0, idle_ms=30_000, wall_clock=wall, readers_report=True)
    states = DictPartitionStates()
    reorder.add(event(1, T0), states)
    reorder.report(1, T0 - 5_000, states, caught_up=False)  # its instance reads a backlog of its own

    for second in range(120):
        wall.now = float(second)
        assert reorder.report(0, T0 + 1_000 + second, states) == []
        if second % 10 == 0:
            reorder.report(1, T0 - 5_000 + second, states, caught_up=False)
    assert ids(reorder.report(1, T0 + 2_000, states, caught_up=False)) == [1]
    assert reorder.late == 0


def test_with_readers_reporting_a_caught_up_join_partition_holding_the_rest_back_is_left_out() -> None:
    wall = FakeWallClock()
    reorder = Reorder(upstream=2, bound_ms=0, idle_ms=30_000, wall_clock=wall, readers_report=True)
    states = DictPartitionStates()
    reorder.add(event(1, T0), states)
    reorder.report(1, T0 - 5_000, states, caught_up=True)  # it has read everything, then fell silent

    for second in range(30):
        wall.now = float(second)
        assert reorder.report(0, T0 + 1_000 + second, states) == []
    wall.now = 30.0
    assert ids(reorder.report(0, T0 + 2_000, states)) == [1]


def test_with_readers_reporting_a_join_partition_never_heard_of_is_waited_for() -> None:
    wall = FakeWallClock()
    reorder = Reorder(upstream=2, bound_ms=0, idle_ms=30_000, wall_clock=wall, readers_report=True)
    states = DictPartitionStates()
    reorder.add(event(1, T0), states)
    for second in range(100):
        wall.now = float(second)
        assert reorder.report(0, T0 + 1_000 + second, states) == []
    assert ids(reorder.report(1, T0 + 2_000, states)) == [1]


def test_after_a_quiet_time_a_join_partition_that_comes_back_later_than_the_others_is_not_idle() -> None:
    wall = FakeWallClock()
    reorder, states = Reorder(upstream=2, bound_ms=0, idle_ms=30_000, wall_clock=wall), DictPartitionStates()
    reorder.report(0, T0, states)
    reorder.report(1, T0, states)

    wall.now = 100.0  # a quiet stream: nobody reports for 100 s (a failover moves partition 1 meanwhile)
    reorder.add(event(1, T0 + 700), states)
    assert reorder.report(0, T0 + 1_000, states) == []  # partition 1 holds the others back from now on
    wall.now = 110.0
    assert reorder.add(event(2, T0 + 600), states) == []  # not late: partition 1 was never left out
    assert ids(reorder.report(1, T0 + 1_000, states)) == [2, 1]
    assert reorder.late == 0


def test_a_new_incarnation_of_the_partition_rebuilds_the_index_from_state() -> None:
    states = DictPartitionStates()
    before = Reorder(upstream=1, bound_ms=0, idle_ms=None)
    before.add(event(1, T0 + 300), states)
    before.add(event(2, T0 + 100), states)

    after = Reorder(upstream=1, bound_ms=0, idle_ms=None)  # a restart: nothing in memory, all in state
    assert ids(after.report(0, T0 + 1_000, states)) == [2, 1]
    assert set(states.by_key[b"fraudrules:reorder"]) == {"meta"}


def test_a_join_partition_still_but_ahead_is_idle_only_once_it_has_held_the_others_back_for_idle_ms() -> None:
    # The one rule (watermark.py): the idle clock starts when the partition holds the watermark back. One that was
    # ahead when it fell still (a partition moving to another instance, say) is not idle the moment the others
    # pass it, whatever its last word said.
    wall = FakeWallClock()
    reorder = Reorder(upstream=2, bound_ms=0, idle_ms=30_000, wall_clock=wall, readers_report=True)
    states = DictPartitionStates()
    reorder.add(event(1, T0 + 2_500), states)
    reorder.report(1, T0 + 2_000, states, caught_up=True)  # partition 1 is ahead, then falls still
    for second in range(30):
        wall.now = float(second)
        assert reorder.report(0, T0 + second * 50, states) == []
    for second in range(30, 60):  # partition 0 passes it: partition 1 holds the others back from second 30 on
        wall.now = float(second)
        assert reorder.report(0, T0 + 5_000 + second, states) == []
    wall.now = 60.0
    assert ids(reorder.report(0, T0 + 5_060, states)) == [1]  # released past partition 1's 2,000
