"""Several partitions: the rule groups, chained, each on its repartition topic (events keyed by its field).

    join ─▶ [by merchantId] ─ reorder, rules ─▶ [by provinceId] ─ reorder, rules, stateless rules, score ─▶ sink

Record path: an event waits in the group's reorder buffer (``reorder.py``) and reaches the rules in
decision-time order; a heartbeat (an upstream partition's watermark) releases what no earlier event can
precede any more. Timer path: a watermark that was not due when the last record came goes out when it is.
A released event goes on to the next group with this group's results in it, and the group
partition's own watermark follows it to every partition of the next group (with those of the other partitions
of the group this instance holds, in one record per partition of the next): everything below what it released
is out, so that is its watermark (exact: its events leave in decision-time order, so the next group needs no
reorder bound). The last group makes the verdict.

With internal topics between the join and the rules, a restart under at-least-once can deliver an order to a
rule group twice; the group then answers with the results it gave the first time (and whether it was late),
so the repeat decides the same and the rules' state takes each order in once (``results.py``: kept in one
batch per checkpoint). Under exactly-once nothing is delivered twice (what an aborted transaction wrote is never
read, its state changes are rolled back), so nothing is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from quixstreams import message_context

from fraudrules.pipeline.evaluate import MISSING_KEY
from fraudrules.pipeline.model import (
    Enriched,
    Heartbeat,
    RuleResults,
    Verdict,
    heartbeat_ms,
    heartbeat_reports,
    is_heartbeat,
)
from fraudrules.pipeline.offsets import CaughtUp
from fraudrules.pipeline.progress import DownstreamWatermarks
from fraudrules.pipeline.quix import Emission, PartitionStates, Store, StoreCaches
from fraudrules.pipeline.reorder import KEPT_PREFIXES, Reorder, kept_cached
from fraudrules.pipeline.results import KeptResults
from fraudrules.pipeline.steps import Steps

#: An event between two groups: the enriched event with the results of the groups it went through.
Staged = Enriched


class GroupNode:
    """The rule group keyed by ``field``, for every partition of its repartition topic this instance holds.

    ``first``: fed by the join (whose events may be out of order within ``reorder_bound_ms``), else by the
    group before it. ``last``: it makes the verdicts; otherwise it sends each event on, then its watermark to
    the ``partitions`` partitions of the next group (``topic``: its own input, read to the end or not)."""

    def __init__(
        self,
        steps: Steps,
        field: str,
        store: Store,
        partitions: int,
        *,
        first: bool,
        last: bool,
        topic: str,
        caught_up: CaughtUp,
    ) -> None:
        self._field = field
        self._evaluator = steps.evaluator
        # The results given, under at-least-once, are batched and written at the same checkpoint as the rules'
        # state they go with.
        retention_ms = int(steps.settings.dedup_retention_seconds * 1000)
        keep_results = steps.settings.processing_guarantee != "exactly-once"

        def open_partition() -> _Partition:
            # heartbeats say whether their partition is behind; the next groups' input is in order (bound 0)
            reorder = steps.reorder(partitions, readers_report=True, bound_ms=None if first else 0)
            return _Partition(reorder, KeptResults(retention_ms) if keep_results else None)

        self._store = store
        # The reorder buffer and the rules go through a write-back cache (the buffer's stays cached across
        # checkpoints), with a reorder buffer per partition held.
        self._caches = StoreCaches(store, open_partition, kept_cached, KEPT_PREFIXES)
        if keep_results:
            store.before_commit(self._flush_kept)
        self._last = last
        self._watermarks_to = DownstreamWatermarks(
            partitions,
            store.partitions,
            self._released_ms,
            lambda partition: caught_up.behind([topic], partition),
        )

    def _released_ms(self, partition: int) -> int | None:
        states, group = self._caches.states(partition)
        return group.reorder.released_ms(states)

    def on_record(self, value: Staged | Heartbeat, key: Any, timestamp: int, _: Any) -> list[Emission]:
        """The verdicts (last group), or the events and heartbeats for the next group."""
        partition = message_context().partition
        tx = self._store.transaction(partition)
        states, group = self._caches.states(partition, tx)
        reorder = group.reorder
        kept = group.kept
        if is_heartbeat(value):
            released: list[Staged] = []
            for upstream, mark, caught_up in heartbeat_reports(value):
                released += reorder.report(upstream, mark, states, caught_up)
        else:
            # Only an event below what was released can have reached the rules before (the results and the
            # release are committed together): the lookup is skipped for the others.
            if kept is not None and value["decisionTimeMs"] < (reorder.released_ms(states) or 0):
                given = kept.given(PartitionStates(tx, 0), value)
                if given is not None:
                    return self._emit(
                        [_with_results(value, self._field, given[0], given[1])], key, timestamp, partition
                    )
            released = reorder.add(value, states)
        field, partial = self._field, self._evaluator.partial
        out: list[Staged] = []
        if kept is not None and released:
            direct, horizon = PartitionStates(tx, 0), reorder.released_ms(states)
        for event in released:
            results = partial(field, event, states.for_key(event["event"].get(field, MISSING_KEY)))["results"]
            if kept is not None:
                kept.keep(direct, event, results, bool(event.get("late")), horizon)
            out.append(_with_results(event, field, results, False))
        return self._emit(out, key, timestamp, partition)

    def _emit(self, out: list[Staged], key: Any, timestamp: int, partition: int) -> list[Emission]:
        if self._last:
            return [(self._verdict(event), key, timestamp, []) for event in out]
        emitted: list[Emission] = [(event, key, timestamp, []) for event in out]
        return emitted + [(beat, None, heartbeat_ms(beat), []) for beat in self._watermarks_to.due(partition)]

    def on_timer(self, partition: int, settled: Callable[[], bool], behind: Callable[[], bool]) -> list[Emission]:
        if self._last:
            return []
        return [(beat, None, heartbeat_ms(beat), []) for beat in self._watermarks_to.due(partition, behind)]

    def _flush_kept(self) -> None:
        """The results given since the last checkpoint into it, in batches per partition (before it commits)."""
        store = self._store
        for partition, group in self._caches.held().items():
            if group.kept is None:
                continue

            def transaction(partition: int = partition) -> PartitionStates:
                return PartitionStates(store.transaction(partition), 0)

            group.kept.flush(transaction)

    def _verdict(self, event: Staged) -> Verdict:
        results: dict[str, RuleResults] = event.pop("results")  # type: ignore[typeddict-item]
        return self._evaluator.verdict(event, [results[field] for field in self._evaluator.group_fields])


class _Partition:
    """A rule group's objects for one partition it holds: its reorder buffer and the results it gave."""

    __slots__ = ("kept", "reorder")

    def __init__(self, reorder: Reorder, kept: KeptResults | None) -> None:
        self.reorder = reorder
        self.kept = kept


def _with_results(event: Staged, field: str, results: RuleResults, late: bool) -> Staged:
    """``event`` with ``field``'s group ``results`` added (and marked late if it was, here)."""
    staged: Staged = {**event, "results": {**event.get("results", {}), field: results}}  # type: ignore[typeddict-unknown-key]
    if late:
        staged["late"] = True
    return staged
