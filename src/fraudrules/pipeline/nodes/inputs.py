"""Several partitions: the readers of the input partitions, and what they tell the join partitions.

Each input partition tells every join partition how far it has been read, after its sides and on the same
path (the sides topic), as a Flink source broadcasts its watermark: a join partition may get no side at all
from an input partition for a while. Whether its reader has read everything there is comes from a look at
the consumer's offsets every :data:`~fraudrules.pipeline.nodes.timers.TIMER_S` (``progress.py`` says when
to tell; ``offsets.py`` how it is known without asking the broker).
"""

from __future__ import annotations

import time
from typing import Any

from quixstreams import Application, message_context

from fraudrules.pipeline.model import DeadLetter, Progress, Side, SideName
from fraudrules.pipeline.nodes.timers import TIMER_S
from fraudrules.pipeline.offsets import CaughtUp
from fraudrules.pipeline.progress import InputProgress
from fraudrules.pipeline.quix import Emission, EmittingNode, Store, every_loop


class Readers:
    """This instance as the reader of its input partitions (one node per input topic)."""

    def __init__(self, partitions: dict[str, int], join_partitions: int, caught_up: CaughtUp) -> None:
        self.reading = InputProgress(join_partitions)
        self._caught_up = caught_up
        self._partitions = partitions
        self._nodes: list[tuple[SideName, str, EmittingNode]] = []

    def node(self, kind: SideName, topic: str) -> EmittingNode:
        """The node after the input ``topic`` of ``kind``'s decoding: each record, then the progress it makes."""
        sources = [f"{kind}/{p}" for p in range(self._partitions[kind])]  # "payment/3", named once
        reading = self.reading

        def on_record(value: Side | DeadLetter, key: Any, timestamp: int, _: Any) -> list[Emission]:
            progress = reading.after_record(sources[message_context().partition], timestamp)
            return [(value, key, timestamp, []), *((p, key, timestamp, []) for p in progress)]

        node = EmittingNode(on_record)
        self._nodes.append((kind, topic, node))
        return node

    def drive(self, app: Application, store: Store) -> None:
        """Look every :data:`TIMER_S` whether each input partition read here was read to the end, and send its
        progress when ``InputProgress`` says; nothing while ``store`` recovers (no producing then)."""
        next_look = 0.0
        caught_up, reading, nodes = self._caught_up, self.reading, self._nodes

        def look() -> None:
            nonlocal next_look
            now = time.monotonic()
            if now < next_look or store.recovering():
                return
            next_look = now + TIMER_S
            assigned = caught_up.assigned()
            last_word = reading.forget(
                {f"{kind}/{tp.partition}" for kind, topic, _ in nodes for tp in assigned if tp.topic == topic}
            )
            if last_word and nodes:  # on any input's path: every progress record goes to the sides topic
                _, topic, node = nodes[0]
                node.emit(topic, 0, _stamped(last_word))
            for kind, topic, node in nodes:
                mine = [tp for tp in assigned if tp.topic == topic]
                if node.downstream is None or not mine:
                    continue
                for tp, done in zip(mine, caught_up.each(mine), strict=True):
                    progress = reading.looked(f"{kind}/{tp.partition}", done)
                    node.emit(topic, tp.partition, _stamped(progress))

        every_loop(app, look)


def _stamped(progress: list[Progress]) -> list[Emission]:
    """Progress records to emit from a timer, stamped with the wall clock."""
    now_ms = int(time.time() * 1000)
    return [(p, None, now_ms, []) for p in progress]
