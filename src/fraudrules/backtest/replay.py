"""Replay records through the pipeline's own steps (``fraudrules.pipeline.steps``), in one process.

The records are decoded first (dead letters leave at once), then the valid sides are merged in event-time
order — createTime, then payment before order, then the order they were read in — so the same input and
rule set always give the same verdicts. Event time also drives the join's clock (the live pipeline uses the
Kafka timestamp, which the generator and the seed set to createTime). The sides then go through the
live pipeline's own chain of join, reorder buffer and rules (``fraudrules.pipeline.chain``, the same code a
one-partition pipeline runs), with its state in dicts where live it is in RocksDB; the join's watermark is
reported after every side, so the rules see events in decision-time order as the live rule groups do at any
partition count. At the end of
the input every side still waiting for its partner gets its one-sided verdict, as the join window would have
given it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fraudrules.backtest.sources import InputRecord
from fraudrules.pipeline.chain import Chain, Output
from fraudrules.pipeline.join import event_time_ms
from fraudrules.pipeline.model import DeadLetter, Side, is_deadletter
from fraudrules.pipeline.steps import Steps
from fraudrules.rules.engine import RuleSet
from fraudrules.settings import Settings
from fraudrules.testing import MemoryState

#: Replay index of an output that belongs to every replay (the decoder's dead letters).
EVERY = -1
_RANK = {"payment": 0, "order": 1}


class _MemoryStates:
    """The join's partition state in dicts: one :class:`MemoryState` per key."""

    def __init__(self) -> None:
        self._states: dict[Any, MemoryState] = {}

    def for_key(self, key: Any) -> MemoryState:
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = MemoryState()
        return state


class Replay:
    """One rule configuration replaying records: ``decode`` every record, then ``run`` the merged sides."""

    def __init__(self, settings: Settings, ruleset: RuleSet, partitions: dict[str, int] | None = None) -> None:
        self.steps = Steps(settings, ruleset.without_time_limit(), partitions, idle=False)
        self._chain = Chain(self.steps)
        self._states = _MemoryStates()

    def process(self, side: Side, timestamp: int) -> list[Output]:
        """One side through the join and the reorder buffer; the rules and scoring for each event released."""
        return self._chain.process(side, timestamp, self._states)

    def finish(self) -> list[Output]:
        """End of input: the one-sided verdicts of every side still waiting, then every event still buffered."""
        return self._chain.finish(self._states)


def admitted(steps: Steps, records: Iterable[InputRecord]) -> tuple[list[tuple[int, Side]], list[DeadLetter]]:
    """Decode every record: the valid sides sorted in event-time order (with their clock time), the dead letters."""
    keyed: list[tuple[int, int, int, Side]] = []
    letters: list[DeadLetter] = []
    for position, record in enumerate(records):
        source = {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "timestamp": record.timestamp if record.timestamp is not None else 0,
        }
        decoded = steps.decode(record.kind, record.value, record.key, record.headers, source)  # type: ignore[arg-type]
        if is_deadletter(decoded):
            letters.append(decoded)
            continue
        event_ms = event_time_ms(decoded["record"]["createTime"])
        if record.timestamp is None:
            decoded["source"]["timestamp"] = event_ms
        keyed.append((event_ms, _RANK[record.kind], position, decoded))
    keyed.sort(key=lambda item: item[:3])
    return [(event_ms, side) for event_ms, _, _, side in keyed], letters


def replay(
    replays: list[Replay], records: Iterable[InputRecord], progress: Callable[[int], None] | None = None
) -> Iterator[tuple[int, Output]]:
    """Feed the same records to every replay in lockstep; yields (replay index, verdict or dead letter).

    Dead letters of the decoder come first, once, under index ``EVERY`` (decoding does not depend on the rules;
    the other replays reuse the first one's sides).
    """
    sides, letters = admitted(replays[0].steps, records)
    for letter in letters:
        yield EVERY, letter
    for done, (event_ms, side) in enumerate(sides, start=1):
        for index, replay_ in enumerate(replays):
            for output in replay_.process(side, event_ms):
                yield index, output
        if progress is not None and done % 1000 == 0:
            progress(1000)
    for index, replay_ in enumerate(replays):
        for output in replay_.finish():
            yield index, output
