"""One partition: the join, the reorder buffer, the rules and the verdict in one node over one store
(``chain.py``, which the backtest runs too), dead letters and verdicts straight to their topics: no re-keying
topic, no branch copy.

Record path: a side through the whole chain. Timer path: ``Chain.tick`` lets the join expire one-sided orders
and the reorder buffer release on a quiet stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from quixstreams import message_context

from fraudrules.pipeline import join, reorder
from fraudrules.pipeline.chain import Chain, Output
from fraudrules.pipeline.model import DeadLetter, Side, is_deadletter
from fraudrules.pipeline.observer import PipelineObserver
from fraudrules.pipeline.progress import MEMORY_INTERVAL_S
from fraudrules.pipeline.quix import Emission, Store, StoreCaches
from fraudrules.pipeline.steps import Steps


class ChainNode:
    """The whole chain of the one partition (or of each, should several one-partition apps share a store)."""

    def __init__(self, steps: Steps, store: Store, observer: PipelineObserver | None) -> None:
        on_joined = None if observer is None else observer.joined
        self._caches = StoreCaches(
            store,
            lambda: Chain(steps, report_interval_s=MEMORY_INTERVAL_S, on_joined=on_joined),
            _kept_cached,
            join.KEPT_PREFIXES | reorder.KEPT_PREFIXES,
        )
        self._observer = observer

    def on_record(self, value: Side | DeadLetter, key: Any, timestamp: int, _: Any) -> list[Emission]:
        if is_deadletter(value):
            return [(value, key, timestamp, [])]
        partition = message_context().partition
        states, chain = self._caches.states(partition)
        outputs = self._observed(chain.process(value, timestamp, states))
        return [(output, key, timestamp, []) for output in outputs]

    def on_timer(self, partition: int, settled: Callable[[], bool], behind: Callable[[], bool]) -> list[Emission]:
        states, chain = self._caches.states(partition)
        outputs = self._observed(chain.tick(states, settled, behind))
        # no record in hand: each verdict at its order's latest input timestamp
        return [(output, None, _input_timestamp(output), []) for output in outputs]

    def _observed(self, outputs: list[Output]) -> list[Output]:
        if self._observer is not None:
            for output in outputs:
                if not is_deadletter(output):
                    self._observer.verdict(output)
        return outputs


def _input_timestamp(output: Output) -> int:
    """A dead letter's input timestamp, or the latest input timestamp of a verdict's order."""
    if is_deadletter(output):
        return output["source"]["timestamp"]
    provenance = output["provenance"]
    return max(source["timestamp"] for source in (provenance["payment"], provenance["order"]) if source is not None)


def _kept_cached(prefix: Any, key: Any, written: bool) -> bool:
    """The join's and the reorder buffer's hot values stay cached across checkpoints."""
    return join.kept_cached(prefix, key, written) or reorder.kept_cached(prefix)
