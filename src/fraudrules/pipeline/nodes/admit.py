"""Every partition count: each input record decoded, validated and admitted as a side or a dead letter."""

from __future__ import annotations

from typing import Any

from quixstreams import message_context
from quixstreams.models.serializers import Deserializer

from fraudrules.pipeline.decode import Decoded, RecordDecoder
from fraudrules.pipeline.model import DeadLetter, Side, SideName
from fraudrules.pipeline.observer import PipelineObserver
from fraudrules.pipeline.steps import Steps


class QuixRecordDecoder(RecordDecoder, Deserializer):
    """RecordDecoder as a Quix Streams value deserializer (no extra call per record)."""


class AdmitNode:
    """The records of one input topic (``kind``), decoded by :class:`QuixRecordDecoder`: a side, or a dead
    letter saying why not. A rule set offered by the control topic comes into force here, between records."""

    def __init__(self, steps: Steps, kind: SideName, observer: PipelineObserver | None) -> None:
        self._steps = steps
        self._kind = kind
        self._observer = observer

    def on_record(self, decoded: Decoded | None, key: bytes | None, timestamp: int, headers: Any) -> Side | DeadLetter:
        live = self._steps.evaluator
        if live.pending is not None:  # a rule set from the control topic: in force from this record on
            live.apply_pending()
        ctx = message_context()
        place = {"topic": ctx.topic, "partition": ctx.partition, "offset": ctx.offset, "timestamp": timestamp}
        result = self._steps.admit(decoded, self._kind, key, headers, place)  # type: ignore[arg-type]
        if self._observer is not None:
            self._observer.admitted(ctx.topic, result)
        return result
