"""Every step after decoding chained over one partition's state: join ─▶ reorder ─▶ rules ─▶ verdict.

With one-partition inputs every key (orderId, merchantId, provinceId) lives in the same partition, so there
is nothing to re-key: a side goes through the join, the reorder buffer, every rule group and the scoring in
one call, with all of its state in one store (as Flink chains operators that need no shuffle). The offline
backtest runs the very same chain over dicts, so the two cannot drift.

The state of one partition holds, under distinct prefixes: the join's entries (by orderId) and its deadline
index (``join.INDEX_PREFIX``), the reorder buffer's keys (``reorder.REORDER_PREFIX``) and each rule group's
state per key (:func:`rule_prefix`). Everything an input record changes is written in one transaction, so
after a crash the state and the input offsets agree, and a record read again is recognised by the join (a
replay). The events waiting in the reorder buffer are held in memory only: the join keeps every decided
order's entry until its event has left the buffer, and a restart rebuilds them from there.

The join's watermark (:meth:`OrderJoin.watermark_ms`) reaches the reorder buffer directly, at most once per
``report_interval_s`` of wall time (0 in the backtest: after every side): how often only changes when an
event is released, never in which order.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from fraudrules.pipeline.join import JOIN_ENTRY, JoinOutput, decided_event
from fraudrules.pipeline.model import DeadLetter, Enriched, Side, Verdict, is_deadletter
from fraudrules.pipeline.progress import Heartbeats
from fraudrules.pipeline.steps import Steps
from fraudrules.state import KeyState, PartitionStates

Output = Verdict | DeadLetter


def _recall(states: PartitionStates, order_id: int, verdict_id: str, decision_ms: int) -> Enriched | None:
    """A decided order's event, rebuilt from the join's entry (the reorder buffer's after a restart); an
    earlier order under a reused orderId from the entry of the one after it."""
    return decided_event(states.for_key(order_id).get(JOIN_ENTRY), verdict_id, decision_ms)


def rule_prefix(field: str, key: Any) -> str:
    """The state prefix of rule group ``field``'s key ``key``: never an orderId (an int) nor a bytes prefix.
    An int key (the seed's merchantId and provinceId) is written as ``json.dumps`` writes it, in an eighth of
    the time (two calls per order)."""
    return f"fraudrules:rules:{field}:{key if type(key) is int else json.dumps(key)}"


class Chain:
    """The pipeline of one partition after its inputs are decoded: its own join and reorder buffer (one chain per
    partition and incarnation of its state, as they are), ``steps``' evaluator."""

    def __init__(
        self,
        steps: Steps,
        report_interval_s: float = 0.0,
        wall_clock: Callable[[], float] = time.monotonic,
        on_joined: Callable[[list[JoinOutput]], None] | None = None,
    ) -> None:
        """``on_joined``: told what came out of the join for each side or tick (metrics), when anything did."""
        self.steps = steps
        self._on_joined = on_joined
        self.join = steps.order_join()
        # The join keeps every decided order until its event left the buffer, so the buffer holds the waiting
        # events in memory and rebuilds them from the join's entries after a restart.
        self.reorder = steps.reorder(upstream=1, recall=_recall)
        self.join.holds = self.reorder.holds
        self._reports = Heartbeats(1, report_interval_s, wall_clock)

    def process(self, side: Side, timestamp: int, states: PartitionStates) -> list[Output]:
        """One side seen at Kafka ``timestamp`` (ms): the dead letters it causes and the verdicts it releases."""
        self.reorder.restore(states)
        return self._outputs(self.join.process(side, timestamp, states), states)

    def tick(
        self, states: PartitionStates, settled: Callable[[], bool], behind: Callable[[], bool] = lambda: False
    ) -> list[Output]:
        """Between records (live, a timer): what a quiet stream makes due (``OrderJoin.tick``)."""
        self.reorder.restore(states)
        joined: list[JoinOutput] = list(self.join.tick(states, settled, behind))
        return self._outputs(joined, states)

    def finish(self, states: PartitionStates) -> list[Output]:
        """End of a finite input (the backtest): every waiting side's one-sided verdict, then every event held."""
        self.reorder.restore(states)
        outputs = self._outputs(self.join.flush(states), states, report=False)
        return outputs + self._evaluated(self.reorder.flush(states), states)

    def _outputs(self, joined: list[JoinOutput], states: PartitionStates, report: bool = True) -> list[Output]:
        if joined and self._on_joined is not None:
            self._on_joined(joined)
        outputs: list[Output] = []
        released: list[Enriched] = []
        reorder = self.reorder
        for item in joined:
            if is_deadletter(item):
                outputs.append(item)
            else:
                released.extend(reorder.add(item, states))
        reports = self._reports
        if report and not reports.resting(0):
            watermark = self.join.watermark_ms()
            if reports.due(0, watermark):
                assert watermark is not None
                released.extend(reorder.report(0, watermark, states))
        if released:
            outputs.extend(self._evaluated(released, states))
        return outputs

    def _evaluated(self, events: list[Enriched], states: PartitionStates) -> list[Output]:
        evaluate = self.steps.evaluator.evaluate

        def state_of(field: str, key: Any) -> KeyState:
            return states.for_key(rule_prefix(field, key))

        return [evaluate(event, state_of) for event in events]
