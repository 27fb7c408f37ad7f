"""The timer path: a periodic task of the app's run loop that lets a node act while no record arrives.

Quix Streams calls a step only for a record, so the join could not expire one-sided orders, nor raise the
watermark it sends the rule groups, on a quiet stream. A node's ``on_timer`` is called for every partition of its store
this instance holds, every :data:`TIMER_S` of wall time (never while a store recovers), and what it returns
goes downstream through the node (the mechanism Quix Streams' own lookup-join buffer uses).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import structlog
from quixstreams import Application

from fraudrules.pipeline.offsets import CaughtUp, ConsumerOffsets, StallWatch
from fraudrules.pipeline.quix import Emission, EmittingNode, Store, every_loop, on_rebalance

#: How often (wall time) a node's timer path runs.
TIMER_S = 0.1
#: A run loop that came back to its periodic tasks this much later (wall time) than the time before is logged:
#: nothing the app consumed meanwhile was processed (a checkpoint, a slow rule, a machine out of CPU).
PAUSE_S = 0.25

log = structlog.get_logger(__name__)

#: ``on_timer(partition, settled, behind)``: ``settled()`` whether this instance has read every record of
#: every partition it consumes, ``behind()`` whether records of the partition's own input wait unread; each
#: asked at most once per run.
OnTimer = Callable[[int, Callable[[], bool], Callable[[], bool]], list[Emission]]


def drive_timers(
    app: Application, node: EmittingNode, store: Store, topics: list[str], caught_up: CaughtUp, on_timer: OnTimer
) -> None:
    """Call ``on_timer`` for each partition of ``store`` every :data:`TIMER_S`, emitting through ``node`` as if
    from ``topics[0]`` (the node's input: the sides topic, or both input topics)."""
    next_run = 0.0

    def run() -> None:
        nonlocal next_run
        now = time.monotonic()
        if node.downstream is None or now < next_run or store.recovering():
            return
        next_run = now + TIMER_S
        settled = Once(caught_up)
        for partition in sorted(store.partitions()):
            behind = Once(partial(caught_up.behind, topics, partition))
            node.emit(topics[0], partition, on_timer(partition, settled, behind))

    every_loop(app, run)


def watch_stalls(app: Application, store: Store, offsets: ConsumerOffsets, caught_up: CaughtUp) -> None:
    """Once a second, raise ``PipelineStalled`` if the consumer has stopped delivering records it has to read
    (``offsets.StallWatch``): ``fraudrules run`` then restarts from the last checkpoint. And log a run loop that
    paused for longer than :data:`PAUSE_S`."""
    watch = StallWatch(offsets)
    pauses = Pauses()
    # A rebalance, and the state recovery after it (when the run loop calls no periodic task), is not a pause.
    on_rebalance(app, pauses.forget)
    next_look = 0.0

    def look() -> None:
        nonlocal next_look
        now = time.monotonic()
        pauses.loop(now)
        if now < next_look:
            return
        next_look = now + 1.0
        watch.check(store.recovering(), {(tp.topic, tp.partition) for tp in caught_up.assigned()})

    every_loop(app, look)


class Pauses:
    """Logs a run loop that comes back to its periodic tasks more than :data:`PAUSE_S` after the time before."""

    def __init__(self) -> None:
        self._last: float | None = None

    def forget(self) -> None:
        """The loop stops for a reason of its own (a rebalance, then state recovery): the next one starts afresh."""
        self._last = None

    def loop(self, now: float) -> None:
        if self._last is not None and now - self._last > PAUSE_S:
            log.warning("run loop paused", ms=round((now - self._last) * 1000))
        self._last = now


class Once:
    """A question asked at most once per run of the timers."""

    def __init__(self, ask: Callable[[], bool]) -> None:
        self._ask = ask
        self._answer: bool | None = None

    def __call__(self) -> bool:
        if self._answer is None:
            self._answer = self._ask()
        return self._answer
