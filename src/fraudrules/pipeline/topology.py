"""The one place that builds the streaming topology: a thin adapter from Quix Streams to ``steps.py``.

    payment ─decode─┐                                                        ┌─ dead letters ──────────────▶ deadletter
    order ───decode─┴─ by orderId ─ join ─┬─ dead letters ────────────────────┘
                                          └─ by merchantId ─ merchant rules ─┐
                                          └─ by provinceId ─ province rules ─┴─ by orderId ─ gather, score ─▶ sink

Each rule group keeps its state under its own key (one group per distinct ``Rule.key``), so verdicts do not
depend on the partition count. With one-partition inputs every "by ..." step re-keys in memory; with more,
through repartition topics and two topics of our own (``fraudrules-sides--<group>`` and
``fraudrules-partials--<group>``), partitioned like the input.

Everything Quix-specific lives here (message context, store transactions, state TTLs, headers); the steps
themselves are plain functions that the backtest calls too. Input headers are never copied onto outputs:
a verdict carries only the W3C ``traceparent`` of its payment (else its order), a dead letter none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from quixstreams import Application, message_context
from quixstreams.dataframe import StreamingDataFrame
from quixstreams.models import Topic, TopicConfig
from quixstreams.models.serializers import Deserializer
from quixstreams.models.serializers.json import JSONDeserializer, JSONSerializer
from quixstreams.state import State

from fraudrules import codec
from fraudrules.pipeline.deadletter import deadletter_key
from fraudrules.pipeline.decode import Decoded, RecordDecoder
from fraudrules.pipeline.join import JoinOutput
from fraudrules.pipeline.model import DeadLetter, Enriched, Partial, Side, SideName, Verdict, is_deadletter
from fraudrules.pipeline.observer import PipelineObserver
from fraudrules.pipeline.steps import Counters, Steps
from fraudrules.rules.engine import RuleSet
from fraudrules.settings import Settings
from fraudrules.state import KeyState

JSON_OUT = JSONSerializer(dumps=codec.dumps)
JSON_IN = JSONDeserializer(loads=codec.loads)

_RESULTS_PREFIX = "fraudrules.results:"
#: Route key of a dead letter re-keyed in memory with the sides (one-partition inputs).
_DEADLETTER_KEY = -1


class _QuixRecordDecoder(RecordDecoder, Deserializer):
    """RecordDecoder as a Quix Streams value deserializer (no extra call per record)."""


@dataclass
class Topology:
    steps: Steps

    @property
    def counters(self) -> Counters:
        return self.steps.counters


class _PartitionStates:
    """Partition state addressable under any key (the join needs orderIds and its deadline index)."""

    __slots__ = ("_timestamp", "_tx")

    def __init__(self, tx: Any, timestamp: int) -> None:
        self._tx = tx
        self._timestamp = timestamp

    def for_key(self, key: Any) -> KeyState:
        state: KeyState = self._tx.as_state(prefix=key, timestamp=self._timestamp)
        return state


def build_topology(
    app: Application, settings: Settings, ruleset: RuleSet, observer: PipelineObserver | None = None
) -> Topology:
    """Declare the topics and dataframes of the pipeline on ``app``; ``observer`` (metrics) is told of every
    record admitted, side joined and verdict written."""
    names = settings.topics
    deadletter = app.topic(names.deadletter, value_serializer=JSON_OUT, key_serializer="bytes")
    sink = app.topic(names.sink, value_serializer=JSON_OUT, key_serializer="str")

    def input_topic(kind: SideName, name: str) -> Topic:
        decoder = _QuixRecordDecoder(kind, settings.max_record_bytes, settings.max_nesting_depth)
        return app.topic(name, value_deserializer=decoder, key_deserializer="bytes")

    payment_topic, order_topic = input_topic("payment", names.payment), input_topic("order", names.order)
    partitions = {
        "payment": payment_topic.broker_config.num_partitions or 1,
        "order": order_topic.broker_config.num_partitions or 1,
    }
    steps = Steps(settings, ruleset, partitions)
    source = max(payment_topic.broker_config, order_topic.broker_config, key=lambda c: c.num_partitions or 0)
    in_memory = source.num_partitions == 1

    live = steps.evaluator

    def admitted(kind: SideName, topic: Topic) -> StreamingDataFrame:
        def admit(decoded: Decoded | None, key: bytes | None, timestamp: int, headers: Any) -> Side | DeadLetter:
            if live.pending is not None:  # a rule set from the control topic: in force from this record on
                live.apply_pending()
            ctx = message_context()
            place = {"topic": ctx.topic, "partition": ctx.partition, "offset": ctx.offset, "timestamp": timestamp}
            result = steps.admit(decoded, kind, key, headers, place)  # type: ignore[arg-type]
            if observer is not None:
                observer.admitted(ctx.topic, result)
            return result

        # Headers stay behind: internal topics and outputs never carry an input's (possibly huge) headers.
        return app.dataframe(topic).apply(admit, metadata=True).set_headers(_no_headers)

    def internal_topic(purpose: str) -> Topic:
        """A topic of this application's own, partitioned like its input, keyed by orderId."""
        return app.topic(
            f"fraudrules-{purpose}--{settings.consumer_group}",
            config=TopicConfig(num_partitions=source.num_partitions, replication_factor=source.replication_factor),
            key_serializer="str",
            value_serializer=JSON_OUT,
            value_deserializer=JSON_IN,
        )

    payments, orders = admitted("payment", payment_topic), admitted("order", order_topic)
    # Re-key both sides by orderId. One partition: in memory, dead letters along (no branch, no copy). More:
    # through a topic of our own, dead letters straight to theirs, and no `concat`, which would switch the
    # whole application to timestamp-aligned consumption across every topic of a partition number, including
    # the ones it writes itself (seen to stall).
    if in_memory:
        sides = payments.group_by(_route_key, name="orderId").concat(orders.group_by(_route_key, name="orderId"))
    else:
        sides_topic = internal_topic("sides")

        def side_or_deadletter(value: Any, *_: Any) -> Topic:
            return deadletter if is_deadletter(value) else sides_topic

        def side_key(value: Any) -> Any:
            return deadletter_key(value) if is_deadletter(value) else str(value["orderId"])

        for stream in (payments, orders):
            stream.to_topic(side_or_deadletter, key=side_key)
        sides = app.dataframe(sides_topic)

    def join_step(value: Side | DeadLetter, _: Any, timestamp: int, __: Any, ___: Any) -> list[JoinOutput]:
        if is_deadletter(value):
            return [value]
        partition = message_context().partition
        tx = sides.processing_context.checkpoint.get_store_transaction(stream_id=sides.stream_id, partition=partition)
        out = steps.join.process(value, timestamp, _PartitionStates(tx, timestamp), partition)
        if observer is not None:
            observer.joined(out)
        return out

    joined = sides.apply(join_step, stateful=True, metadata=True, expand=True)
    joined[joined.apply(is_deadletter)].to_topic(deadletter, key=deadletter_key)
    events = joined[joined.apply(_is_event)]

    evaluator = steps.evaluator
    partials = []
    for group_field in evaluator.group_fields:
        grouped = events.group_by(
            evaluator.group_key(group_field), name=group_field, value_serializer=JSON_OUT, value_deserializer=JSON_IN
        )
        partials.append(grouped.apply(_group_step(steps, group_field, remember=not in_memory), stateful=True))

    verdicts: StreamingDataFrame
    if not partials:
        verdicts = events.apply(lambda enriched: evaluator.verdict(enriched, []))
    elif len(partials) == 1:
        verdicts = partials[0].apply(lambda partial: evaluator.verdict(partial["enriched"], [partial["results"]]))
    else:
        if in_memory:
            merged = partials[0]
            for partial in partials[1:]:
                merged = merged.concat(partial)
            by_order_id = merged.group_by(_order_id, name="verdict")
        else:
            partials_topic = internal_topic("partials")
            for partial in partials:
                partial.to_topic(partials_topic, key=lambda value: str(value["orderId"]))
            by_order_id = app.dataframe(partials_topic)
        verdicts = by_order_id.apply(evaluator.gather, stateful=True, expand=True)
    if observer is not None:
        verdicts = verdicts.update(observer.verdict)
    verdicts.set_headers(_trace_headers).to_topic(sink, key=lambda verdict: str(verdict["orderId"]))
    return Topology(steps)


def _group_step(steps: Steps, field: str, remember: bool) -> Any:
    """One rule group's step. ``remember``: with internal topics between the join and the rules, a restart
    under at-least-once can deliver an order to a rule group twice; the group then answers with the results
    it gave the first time, so the repeat decides the same and the rules' state takes each order in once.
    The results are kept per verdictId for ``dedup_retention_seconds`` of event time, as the join keeps decided
    orders: a repeat arrives within seconds of wall time, but a backlog crosses hours of event time in that."""
    partial = steps.evaluator.partial
    if not remember:
        return lambda enriched, state: partial(field, enriched, state)
    memory = timedelta(seconds=steps.settings.dedup_retention_seconds)

    def evaluate_once(enriched: Enriched, state: State[Any, Any]) -> Partial:
        memory_key = _RESULTS_PREFIX + enriched["verdictId"]
        given = state.get(memory_key)
        if given is not None:
            return {
                "orderId": enriched["orderId"],
                "verdictId": enriched["verdictId"],
                "group": field,
                "results": given,
                "enriched": enriched,
            }
        result = partial(field, enriched, state)
        state.set(memory_key, result["results"], ttl=memory)
        return result

    return evaluate_once


def _no_headers(*_: Any) -> list[tuple[str, bytes]]:
    return []


def _trace_headers(verdict: Verdict, *_: Any) -> list[tuple[str, bytes]]:
    traceparent = verdict.get("traceparent")
    return [] if not traceparent else [("traceparent", str(traceparent).encode())]


def _is_event(value: JoinOutput) -> bool:
    return not is_deadletter(value)


def _route_key(value: Side | DeadLetter) -> int:
    return _DEADLETTER_KEY if is_deadletter(value) else value["orderId"]


def _order_id(value: Partial) -> int:
    return value["orderId"]
