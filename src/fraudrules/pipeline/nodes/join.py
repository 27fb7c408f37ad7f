"""Several partitions: the join node on the sides topic, and its watermark to the rule groups.

Record path: a side (or an input partition's progress) goes through the partition's ``OrderJoin``; what it
completes goes on, then the partition's watermark as heartbeats to every rule-group partition when it rose
enough to tell (``progress.DownstreamWatermarks``: one record per rule-group partition, with the watermarks of
every join partition this instance holds), after the events on the same path, as Flink sends a watermark after
the records it covers. Timer path: ``OrderJoin.tick`` lets the join expire one-sided orders and raise its
watermark on a quiet stream, with the heartbeats that follow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from quixstreams import message_context

from fraudrules.pipeline.join import KEPT_PREFIXES, JoinOutput, kept_cached
from fraudrules.pipeline.model import (
    DeadLetter,
    Heartbeat,
    Progress,
    Side,
    heartbeat_ms,
    is_deadletter,
    is_progress,
    progress_reports,
)
from fraudrules.pipeline.observer import PipelineObserver
from fraudrules.pipeline.offsets import CaughtUp
from fraudrules.pipeline.progress import DownstreamWatermarks
from fraudrules.pipeline.quix import Emission, Store, StoreCaches
from fraudrules.pipeline.steps import Steps


class JoinNode:
    """The join of every partition of the sides topic this instance holds."""

    def __init__(
        self,
        steps: Steps,
        store: Store,
        sides_topic: str,
        group_partitions: int,
        caught_up: CaughtUp,
        observer: PipelineObserver | None,
    ) -> None:
        self._grouped = bool(steps.evaluator.group_fields)  # no stateful rules: nothing waits for a watermark
        # one join per partition held; the inputs' progress says whether their readers have read it all
        self._caches = StoreCaches(store, lambda: steps.order_join(readers_report=True), kept_cached, KEPT_PREFIXES)
        self._observer = observer
        self._watermarks_to = DownstreamWatermarks(
            group_partitions,
            store.partitions,
            self._watermark_ms,
            lambda partition: caught_up.behind([sides_topic], partition),
        )

    def _watermark_ms(self, partition: int) -> int | None:
        join = self._caches.step(partition)
        return None if join is None else join.watermark_ms()

    def on_record(self, value: Side | DeadLetter | Progress, key: Any, timestamp: int, _: Any) -> list[Emission]:
        if is_deadletter(value):
            return [(value, key, timestamp, [])]
        partition = message_context().partition
        states, join = self._caches.states(partition)
        if is_progress(value):
            out = []
            for source, timestamp, caught_up in progress_reports(value):
                out += join.progress(source, timestamp, states, caught_up)
            key = None
        else:
            out = join.process(value, timestamp, states)
        if self._observer is not None and out:
            self._observer.joined(out)
        return _emissions(out, self._watermarks(partition), key, timestamp)

    def on_timer(self, partition: int, settled: Callable[[], bool], behind: Callable[[], bool]) -> list[Emission]:
        states, join = self._caches.states(partition)
        out = join.tick(states, settled, behind)
        if self._observer is not None and out:
            self._observer.joined(out)
        # no record in hand: each event at its decision time
        events: list[Emission] = [(event, None, event["decisionTimeMs"], []) for event in out]
        return events + [(beat, None, heartbeat_ms(beat), []) for beat in self._watermarks(partition, behind)]

    def _watermarks(self, partition: int, behind: Callable[[], bool] | None = None) -> list[Heartbeat]:
        """The watermarks of this instance's join partitions, to every rule-group partition, when ``partition``'s
        rose enough to tell, and whether each one's own input was read to the end (``behind``: the partition's,
        if the timer already asked)."""
        if not self._grouped:
            return []
        return self._watermarks_to.due(partition, behind)


def _emissions(out: list[JoinOutput], watermarks: list[Heartbeat], key: Any, timestamp: int) -> list[Emission]:
    """The join's outputs for a record, then its heartbeats (after: a watermark covers the events sent before)."""
    emitted: list[Emission] = [(value, key, timestamp, []) for value in out]
    return emitted + [(beat, key, heartbeat_ms(beat), []) for beat in watermarks]
