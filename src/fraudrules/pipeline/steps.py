"""The pipeline's steps as plain functions over typed values, bound to one configuration.

    decode ─▶ admit (Side | DeadLetter) ─▶ join (Enriched | DeadLetter) ─▶ reorder ─▶ evaluate (per rule group)
    ─▶ verdict

The live topology (``topology.py``, the only module that knows Quix Streams) and the offline backtest
(``fraudrules.backtest``) call exactly these, so they cannot drift: the live pipeline holds state in
Kafka-backed RocksDB, the backtest in dicts, and both give the same verdicts for the same records in the
same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fraudrules.pipeline.deadletter import deadletter_record
from fraudrules.pipeline.decode import NULL_VALUE, Decoded, RecordDecoder, side_record, traceparent_of
from fraudrules.pipeline.evaluate import Evaluator
from fraudrules.pipeline.join import JoinTotals, OrderJoin
from fraudrules.pipeline.model import DeadLetter, Side, SideName, Source
from fraudrules.pipeline.progress import QUIET_MARGIN_MS
from fraudrules.pipeline.reorder import Recall, Reorder
from fraudrules.rules.engine import RuleSet
from fraudrules.settings import Settings


@dataclass
class Counters:
    """Per-process counts of input records: valid = records in - dead-lettered at the decoder."""

    records_in: int = 0
    deadlettered: int = 0


class Steps:
    """Decoders, the join and the evaluator for one settings object and rule set."""

    def __init__(
        self,
        settings: Settings,
        ruleset: RuleSet,
        partitions: dict[str, int] | None = None,
        idle: bool = True,
    ) -> None:
        """``partitions``: partitions of the payment and order inputs; ``idle``: whether the join leaves idle
        input partitions out of its watermark (wall time: live only, never in a backtest)."""
        self.settings = settings
        self.decoders: dict[SideName, RecordDecoder] = {
            kind: RecordDecoder(kind, settings.max_record_bytes, settings.max_nesting_depth)
            for kind in ("payment", "order")
        }
        self._partitions = partitions
        #: What the join partitions of this instance count together (``OrderJoin``: one per partition).
        self.join_totals = JoinTotals()
        self.evaluator = Evaluator(ruleset, settings.scoring)
        self.counters = Counters()
        self._idle = idle

    def order_join(self, readers_report: bool = False) -> OrderJoin:
        """The join of one partition (a new one for each partition and each assignment of it), counting into
        ``join_totals`` (``readers_report``: see ``OrderJoin``)."""
        settings = self.settings
        return OrderJoin(
            window_ms=int(settings.join_window_seconds * 1000),
            retention_ms=int(settings.dedup_retention_seconds * 1000),
            partitions=self._partitions,
            idle_ms=int(settings.join_idle_seconds * 1000) if self._idle else None,
            max_raw_bytes=settings.deadletter_max_raw_bytes,
            quiet_margin_ms=settings.reorder_bound_ms + QUIET_MARGIN_MS,
            readers_report=readers_report,
            quiet_ms=int(settings.join_quiet_seconds * 1000),
            totals=self.join_totals,
        )

    def reorder(
        self, upstream: int, recall: Recall | None = None, readers_report: bool = False, bound_ms: int | None = None
    ) -> Reorder:
        """The reorder buffer of one partition of a rule group (a new one for each partition and each assignment
        of it), fed by ``upstream`` partitions (``recall``, ``readers_report``: see
        ``Reorder``; ``bound_ms``: the settings' ``reorder_bound_ms`` unless given)."""
        idle_ms = int(self.settings.join_idle_seconds * 1000) if self._idle else None
        bound = self.settings.reorder_bound_ms if bound_ms is None else bound_ms
        return Reorder(upstream, bound, idle_ms=idle_ms, recall=recall, readers_report=readers_report)

    def decode(
        self, kind: SideName, value: bytes | None, key: bytes | None, headers: Any, source: Source
    ) -> Side | DeadLetter:
        """Bytes to a side or a dead letter (the backtest's first step; live, the deserializer decodes)."""
        return self.admit(self.decoders[kind](value), kind, key, headers, source)

    def admit(
        self, decoded: Decoded | None, kind: SideName, key: bytes | None, headers: Any, source: Source
    ) -> Side | DeadLetter:
        """A decoded record becomes a side re-keyed by orderId, or a dead letter saying why it cannot."""
        self.counters.records_in += 1
        if decoded is not None and decoded.record is not None:
            return side_record(decoded.record, kind, source, traceparent_of(headers))
        self.counters.deadlettered += 1
        return deadletter_record(
            NULL_VALUE if decoded is None else decoded,
            key=key,
            max_raw_bytes=self.settings.deadletter_max_raw_bytes,
            max_key_bytes=self.settings.deadletter_max_key_bytes,
            **source,
        )
