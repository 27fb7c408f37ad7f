"""Several partitions: the rule groups, chained, each on its repartition topic (events keyed by its field).

    join ─▶ [by merchantId] ─ reorder, rules ─▶ [by provinceId] ─ reorder, rules, stateless rules, score ─▶ sink

Record path: an event waits in the group's reorder buffer (``reorder.py``) and reaches the rules in
decision-time order; a heartbeat (an upstream partition's watermark) releases what no earlier event can
precede any more. Timer path: a watermark that was not due when the last record came goes out when it is.
A released event goes on to the next group with this group's results in it, and the group
partition's own watermark follows it to every partition of the next group (with those of the other partitions
of the group this instance holds, in one record per partition of the next): everything below what it released
is out, so that is its promise (exact: its events leave in decision-time order, so the next group needs no
reorder bound). The last group makes the verdict.

With internal topics between the join and the rules, a restart under at-least-once can deliver an order to a
rule group twice; the group then answers with the results it gave the first time (and whether it was late),
so the repeat decides the same and the rules' state takes each order in once. The results are kept per
verdictId for ``dedup_retention_seconds`` of event time, as the join keeps decided orders: a repeat arrives
within seconds of wall time, but a backlog crosses hours of event time in that. Under exactly-once nothing is
delivered twice (what an aborted transaction wrote is never read, its state changes are rolled back), so
nothing is remembered: two state writes per order fewer.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
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
from fraudrules.pipeline.nodes.routing import json_key, key_for_partition
from fraudrules.pipeline.offsets import CaughtUp
from fraudrules.pipeline.progress import Promises
from fraudrules.pipeline.quix import Emission, PartitionStates, Store, StoreCaches
from fraudrules.pipeline.reorder import REORDER_PREFIX, kept_cached
from fraudrules.pipeline.steps import Steps
from fraudrules.state import WriteBackStates

_RESULTS_PREFIX = "fraudrules.results:"
#: An event between two groups: the enriched event with the results of the groups it went through.
Staged = Enriched


def group_route(field: str, partitions: int) -> Callable[[Staged | Heartbeat], Any]:
    """The rule group's key: the event's ``field``, or for a heartbeat a key that lands on its partition."""
    to = [key_for_partition(p, partitions, json_key) for p in range(partitions)]

    def route(value: Staged | Heartbeat) -> Any:
        if is_heartbeat(value):
            return to[value["to"]]
        return value["event"].get(field, MISSING_KEY)

    return route


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
        # heartbeats say whether their partition is behind; the next groups' input is in order (bound 0)
        self._reorder = steps.reorder(partitions, readers_report=True, bound_ms=None if first else 0)
        self._memory = timedelta(seconds=steps.settings.dedup_retention_seconds)
        self._store = store
        # The reorder buffer and the rules go through a write-back cache (the buffer's stays cached across
        # checkpoints); the remembered results, which carry a TTL counted from their record's timestamp,
        # straight to the transaction (``direct``).
        self._caches = StoreCaches(store, kept_cached)
        self._ttl_enabled: set[int] = set()
        self._remember = steps.settings.processing_guarantee != "exactly-once"
        self._last = last
        self._promises_to = Promises(
            partitions,
            store.partitions,
            lambda partition: self._reorder.released_ms(self._caches.states(partition)[0]),
            lambda partition: caught_up.behind([topic], partition),
        )

    def on_record(self, value: Staged | Heartbeat, key: Any, timestamp: int, _: Any) -> list[Emission]:
        """The verdicts (last group), or the events and heartbeats for the next group."""
        partition = message_context().partition
        tx = self._store.transaction(partition)
        direct = PartitionStates(tx, timestamp)
        if self._remember and partition not in self._ttl_enabled:
            # A store's first write with a TTL gives every record already in it an expiry (Quix Streams'
            # "legacy" backfill): the reorder buffer's and the rules' records must not get one, so the store
            # sees a TTL write before any other (the cache writes at the checkpoint, after this).
            direct.for_key(REORDER_PREFIX).set("ttl", True, ttl=self._memory)  # type: ignore[call-arg]
            self._ttl_enabled.add(partition)
        # the store partition's incarnation: the reorder buffer's index in memory is rebuilt on a new one
        states, epoch = self._caches.states(partition, tx)
        reorder = self._reorder
        if is_heartbeat(value):
            released: list[Staged] = []
            for upstream, mark, caught_up in heartbeat_reports(value):
                released += reorder.report(partition, upstream, mark, states, epoch, caught_up)
            out = [self._evaluate(event, states, direct) for event in released]
        else:
            # Only an event below what was released can have reached the rules before (the results and the
            # release are committed together): the lookup, a store read that misses, is skipped for the others.
            done = reorder.released_ms(states) if self._remember else None
            given = None
            if done is not None and value["decisionTimeMs"] < done:
                given = self._remembered(value, direct)
            if given is not None:
                out = [given]
            else:
                out = [self._evaluate(event, states, direct) for event in reorder.add(value, states, partition, epoch)]
        if self._last:
            return [(self._verdict(event), key, timestamp, []) for event in out]
        emitted: list[Emission] = [(event, key, timestamp, []) for event in out]
        return emitted + [(beat, None, heartbeat_ms(beat), []) for beat in self._promises_to.due(partition)]

    def on_timer(self, partition: int, settled: Callable[[], bool], behind: Callable[[], bool]) -> list[Emission]:
        if self._last:
            return []
        return [(beat, None, heartbeat_ms(beat), []) for beat in self._promises_to.due(partition, behind)]

    def _evaluate(self, event: Staged, states: WriteBackStates, direct: PartitionStates) -> Staged:
        key = event["event"].get(self._field, MISSING_KEY)
        results = self._evaluator.partial(self._field, event, states.for_key(key))["results"]
        if self._remember:
            given = {"results": results, "late": bool(event.get("late"))}
            direct.for_key(key).set(_RESULTS_PREFIX + event["verdictId"], given, ttl=self._memory)  # type: ignore[call-arg]
        return _with_results(event, self._field, results, False)

    def _remembered(self, event: Staged, states: PartitionStates) -> Staged | None:
        state = states.for_key(event["event"].get(self._field, MISSING_KEY))
        given = state.get(_RESULTS_PREFIX + event["verdictId"])
        if given is None:
            return None
        return _with_results(event, self._field, given["results"], given["late"])

    def _verdict(self, event: Staged) -> Verdict:
        results: dict[str, RuleResults] = event.pop("results")  # type: ignore[typeddict-item]
        return self._evaluator.verdict(event, [results[field] for field in self._evaluator.group_fields])


def _with_results(event: Staged, field: str, results: RuleResults, late: bool) -> Staged:
    """``event`` with ``field``'s group ``results`` added (and marked late if it was, here)."""
    staged: Staged = {**event, "results": {**event.get("results", {}), field: results}}  # type: ignore[typeddict-unknown-key]
    if late:
        staged["late"] = True
    return staged
