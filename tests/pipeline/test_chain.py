"""The chain a one-partition pipeline (and the backtest) runs: join, reorder buffer, rules and verdict over one
partition's state."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from fraudrules.app import load_ruleset
from fraudrules.pipeline.chain import Chain, rule_prefix
from fraudrules.pipeline.join import INDEX_PREFIX
from fraudrules.pipeline.model import Verdict, is_deadletter
from fraudrules.pipeline.reorder import REORDER_PREFIX
from fraudrules.pipeline.steps import Steps
from fraudrules.settings import Settings
from tests.fixtures import DictPartitionStates, FakeWallClock
from tests.pipeline.join.test_operator import side

T0 = 1_700_000_000_000


def chain(report_interval_s: float = 0.0, wall: FakeWallClock | None = None, **settings: Any) -> Chain:
    config = Settings(**settings)
    steps = Steps(config, load_ruleset(config), idle=False)
    return Chain(steps, report_interval_s, wall or FakeWallClock())


def test_an_order_gets_its_verdict_once_both_inputs_have_moved_past_it_and_the_bound() -> None:
    c, states = chain(reorder_bound_ms=100), DictPartitionStates()

    assert c.process(side("payment", 1, timestamp=T0), T0, states) == []
    assert c.process(side("order", 1, timestamp=T0 + 10), T0 + 10, states) == []  # joined, waits in the buffer
    assert c.process(side("payment", 2, timestamp=T0 + 60), T0 + 60, states) == []
    assert c.process(side("order", 3, timestamp=T0 + 200), T0 + 200, states) == []  # payments still at T0 + 60
    [verdict] = cast(list[Verdict], c.process(side("payment", 4, timestamp=T0 + 200), T0 + 200, states))

    assert verdict["orderId"] == 1
    assert verdict["join"]["status"] == "joined"
    assert "late" not in verdict


def test_everything_lives_in_the_one_partition_state_under_prefixes_that_cannot_collide() -> None:
    c, states = chain(reorder_bound_ms=0), DictPartitionStates()
    merchant: object = 1  # the same value as an orderId
    c.process(side("payment", 1, timestamp=T0), T0, states)
    c.process(side("order", 1, timestamp=T0, merchantId=merchant), T0, states)
    c.process(side("payment", 2, timestamp=T0 + 5), T0 + 5, states)
    c.process(side("order", 2, timestamp=T0 + 5, merchantId=merchant), T0 + 5, states)

    keys = states.live_keys()
    assert {1, 2, INDEX_PREFIX, REORDER_PREFIX} <= keys  # join entries by orderId, the index, the buffer
    assert rule_prefix("merchantId", merchant) in keys
    assert rule_prefix("merchantId", merchant) != merchant


def test_dead_letters_leave_at_once_and_finish_gives_the_one_sided_verdicts() -> None:
    c, states = chain(), DictPartitionStates()
    c.process(side("payment", 1, offset=10, timestamp=T0), T0, states)
    [duplicate] = c.process(side("payment", 1, offset=11, timestamp=T0 + 1), T0 + 1, states)
    assert is_deadletter(duplicate)
    assert duplicate["reason"] == "duplicate"

    [verdict] = c.finish(states)
    assert not is_deadletter(verdict)
    assert (verdict["orderId"], verdict["join"]["status"]) == (1, "payment_only")


def test_the_join_promise_reaches_the_buffer_at_most_once_per_interval_of_wall_time() -> None:
    wall = FakeWallClock()
    c, states = chain(report_interval_s=0.01, wall=wall, reorder_bound_ms=0), DictPartitionStates()
    c.process(side("payment", 1, timestamp=T0), T0, states)
    assert c.process(side("order", 1, timestamp=T0 + 1), T0 + 1, states) == []  # reported at T0 + 0
    c.process(side("payment", 2, timestamp=T0 + 2), T0 + 2, states)
    assert c.process(side("order", 2, timestamp=T0 + 3), T0 + 3, states) == []  # within 10 ms: no report

    wall.now = 0.02
    released = c.process(side("payment", 3, timestamp=T0 + 4), T0 + 4, states)
    assert [v["orderId"] for v in released] == [1]  # the orders input is at T0 + 3: order 2 may have company

    assert c.process(side("order", 3, timestamp=T0 + 5), T0 + 5, states) == []  # within 10 ms again
    wall.now = 0.04
    assert [v["orderId"] for v in c.process(side("payment", 4, timestamp=T0 + 6), T0 + 6, states)] == [2]


def pairs(count: int, start: int = T0, step_ms: int = 40) -> list[tuple[Any, int]]:
    """Both sides of ``count`` orders, one order every ``step_ms``, the payment first."""
    sides = []
    for n in range(count):
        at = start + n * step_ms
        sides += [(side("payment", n + 1, timestamp=at), at), (side("order", n + 1, timestamp=at + 1), at + 1)]
    return sides


def decided(verdicts: list[Any]) -> list[tuple[Any, ...]]:
    return [(v["orderId"], v["verdictId"], v["decision"], v["score"], v["join"]["status"]) for v in verdicts]


def test_waiting_events_are_not_stored_and_a_restart_rebuilds_them_from_the_join() -> None:
    import copy

    # the bound (2 s) far longer than the join's memory of decided orders (0.2 s): the join must keep them
    settings: dict[str, Any] = {"reorder_bound_ms": 2_000, "join_window_seconds": 0.2, "dedup_retention_seconds": 0.2}
    sides = pairs(150)
    whole, states = chain(**settings), DictPartitionStates()
    expected = [v for s, at in sides for v in whole.process(s, at, states)]
    expected += whole.finish(states)

    first, before = chain(**settings), DictPartitionStates()
    got = [v for s, at in sides[:151] for v in first.process(s, at, before)]
    reorder_state = before.by_key[REORDER_PREFIX]
    assert not [key for key in reorder_state if str(key).startswith("e:")]  # only keys wait in the state
    waiting = sum(len(entries) for key, entries in reorder_state.items() if isinstance(key, int))
    assert waiting > 40  # events wait (the bound is 50 orders long), longer than their join retention

    after = DictPartitionStates()
    after.by_key = copy.deepcopy(before.by_key)  # what a restart recovers; the memory of ``first`` is gone
    second = chain(**settings)
    got += [v for s, at in sides[151:] for v in second.process(s, at, after)]
    got += second.finish(after)

    assert decided(got) == decided(expected)
    assert len(expected) == 150
    assert second.reorder.lost == 0


def test_an_order_under_a_reused_order_id_and_the_one_before_it_are_rebuilt_after_a_restart() -> None:
    import copy

    # both orders under orderId 1 wait in the buffer (bound 2 s) across a restart, longer than their retention
    settings: dict[str, Any] = {"reorder_bound_ms": 2_000, "join_window_seconds": 0.2, "dedup_retention_seconds": 0.2}
    reused: dict[str, Any] = {"payAmount": 5.0, "createTime": "2024-01-01 00:00:00"}
    again = [
        (side("payment", 1, 99, T0 + 500, **reused), T0 + 500),
        (side("order", 1, 100, T0 + 501, merchantId=7), T0 + 501),
    ]
    sides = pairs(10) + again + pairs(100, start=T0 + 520)[20:]  # orders 21-100 after the reused one
    whole, states = chain(**settings), DictPartitionStates()
    expected: list[Any] = [v for s, at in sides for v in whole.process(s, at, states)]
    expected += whole.finish(states)

    first, before = chain(**settings), DictPartitionStates()
    cut = len(pairs(10)) + len(again) + 10
    got: list[Any] = [v for s, at in sides[:cut] for v in first.process(s, at, before)]
    assert not [v for v in got if v["orderId"] == 1]  # both still wait
    after = DictPartitionStates()
    after.by_key = copy.deepcopy(before.by_key)
    second = chain(**settings)
    got += [v for s, at in sides[cut:] for v in second.process(s, at, after)]
    got += second.finish(after)

    assert decided(got) == decided(expected)
    assert second.reorder.lost == 0
    [one, two] = [v for v in got if v["orderId"] == 1]
    assert (one["verdictId"], two["verdictId"]) == ("payment/0/1", "payment/0/99")
    assert "reusedOrderId" not in one
    assert two["reusedOrderId"] == next(v for v in expected if v["verdictId"] == "payment/0/99")["reusedOrderId"]
    assert two["reusedOrderId"]["differingFields"] == ["createTime", "merchantId", "payAmount"]
    assert "reused_order_id" in {hit["rule"] for hit in two["hits"]}


@pytest.mark.parametrize("key", [0, 7, -3, 10**20, True, 1.5, "7", "Zürich", None, [1, "a"]])
def test_a_rule_group_keeps_the_state_prefix_it_always_had(key: object) -> None:
    # stored state stays where it was: every key's prefix is as json.dumps writes it
    assert rule_prefix("merchantId", key) == "fraudrules:rules:merchantId:" + json.dumps(key)
