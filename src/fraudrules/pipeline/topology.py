"""The one place that builds the streaming topology.

    payment ─decode─┬─ invalid ─────────────────────────────────────────────────────────▶ deadletter
                    └─ valid ─ by orderId ─┐
    order ───decode─┬─ invalid ─────────────────────────────────────────────────────────▶ deadletter
                    └─ valid ─ by orderId ─┴─ join ─┬─ by merchantId ─ merchant rules ─┐
                                                    └─ by provinceId ─ province rules ─┴─ by orderId ─┐
                                        gather partials, stateless rules, score ─▶ sink ◀──────────────┘

Each rule group keeps its state under its own key (one group per distinct ``Rule.key``), so verdicts do not
depend on the partition count. With one-partition inputs every "by ..." step re-keys in memory; with more,
through repartition topics and two topics of our own (``fraudrules-sides--<group>`` and
``fraudrules-partials--<group>``), partitioned like the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from quixstreams import Application, message_context
from quixstreams.dataframe import StreamingDataFrame
from quixstreams.models import Topic, TopicConfig
from quixstreams.models.serializers import Deserializer
from quixstreams.models.serializers.json import JSONDeserializer, JSONSerializer

from fraudrules import codec
from fraudrules.pipeline.deadletter import deadletter_record
from fraudrules.pipeline.decode import NULL_VALUE, Decoded, RecordDecoder
from fraudrules.pipeline.evaluate import Evaluator
from fraudrules.pipeline.join import OrderJoin, side_record
from fraudrules.rules.engine import RuleSet
from fraudrules.settings import Settings

JSON_OUT = JSONSerializer(dumps=codec.dumps)
JSON_IN = JSONDeserializer(loads=codec.loads)


class _QuixRecordDecoder(RecordDecoder, Deserializer):
    """RecordDecoder as a Quix Streams value deserializer (no extra call per record)."""


@dataclass
class Counters:
    """Per-process counts of input records: valid = records in - dead-lettered."""

    records_in: int = 0
    deadlettered: int = 0


@dataclass
class Topology:
    join: OrderJoin
    evaluator: Evaluator
    counters: Counters


class _PartitionStates:
    """Partition state addressable under any key (the join needs orderIds and its deadline index)."""

    __slots__ = ("_timestamp", "_tx")

    def __init__(self, tx: Any, timestamp: int) -> None:
        self._tx = tx
        self._timestamp = timestamp

    def for_key(self, key: Any) -> Any:
        return self._tx.as_state(prefix=key, timestamp=self._timestamp)


def build_topology(app: Application, settings: Settings, ruleset: RuleSet) -> Topology:
    """Declare the topics and dataframes of the pipeline on ``app``."""
    names = settings.topics
    counters = Counters()
    evaluator = Evaluator(ruleset, settings.scoring)
    deadletter = app.topic(names.deadletter, value_serializer=JSON_OUT, key_serializer="bytes")
    sink = app.topic(names.sink, value_serializer=JSON_OUT, key_serializer="str")

    def valid_sides(kind: Literal["payment", "order"], topic_name: str) -> tuple[StreamingDataFrame, Topic]:
        """Decode and validate one input topic: invalid records to the dead-letter topic, the rest as sides."""
        topic = app.topic(
            topic_name, value_deserializer=_QuixRecordDecoder(kind, settings.max_record_bytes), key_deserializer="bytes"
        )
        sdf = app.dataframe(topic)
        max_raw = settings.deadletter_max_raw_bytes

        def is_invalid(decoded: Decoded | None) -> bool:
            counters.records_in += 1
            if decoded is None or decoded.record is None:
                counters.deadlettered += 1
                return True
            return False

        def to_deadletter(decoded: Decoded | None, key: bytes | None, timestamp: int, _: Any) -> dict[str, Any]:
            ctx = message_context()
            return deadletter_record(
                NULL_VALUE if decoded is None else decoded,
                topic=ctx.topic,
                partition=ctx.partition,
                offset=ctx.offset,
                timestamp=timestamp,
                key=key,
                max_raw_bytes=max_raw,
            )

        def to_side(decoded: Decoded, _: Any, timestamp: int, __: Any) -> dict[str, Any]:
            ctx = message_context()
            return side_record(decoded.record, kind, ctx.topic, ctx.partition, ctx.offset, timestamp)  # type: ignore[arg-type]

        sdf.filter(is_invalid).apply(to_deadletter, metadata=True).to_topic(deadletter)
        valid = sdf.filter(lambda decoded: decoded is not None and decoded.record is not None)
        return valid.apply(to_side, metadata=True), topic

    payments, payment_topic = valid_sides("payment", names.payment)
    orders, order_topic = valid_sides("order", names.order)
    source = max(payment_topic.broker_config, order_topic.broker_config, key=lambda c: c.num_partitions or 0)
    in_memory = source.num_partitions == 1
    join = OrderJoin(
        window_ms=int(settings.join_window_seconds * 1000),
        retention_ms=int(settings.dedup_retention_seconds * 1000),
        partitions={
            "payment": payment_topic.broker_config.num_partitions or 1,
            "order": order_topic.broker_config.num_partitions or 1,
        },
        idle_ms=int(settings.join_idle_seconds * 1000),
    )

    def internal_topic(purpose: str) -> Topic:
        """A topic of this application's own, partitioned like its input, keyed by orderId."""
        return app.topic(
            f"fraudrules-{purpose}--{settings.consumer_group}",
            config=TopicConfig(num_partitions=source.num_partitions, replication_factor=source.replication_factor),
            key_serializer="str",
            value_serializer=JSON_OUT,
            value_deserializer=JSON_IN,
        )

    def to_orderid_topic(streams: list[StreamingDataFrame], purpose: str) -> StreamingDataFrame:
        topic = internal_topic(purpose)
        for stream in streams:
            stream.to_topic(topic, key=lambda value: str(value["orderId"]))
        return app.dataframe(topic)

    # Re-key both sides by orderId. One partition: in memory. More: through a topic of our own and no
    # `concat`, which would switch the whole application to timestamp-aligned consumption across every
    # topic of a partition number, including the ones it writes itself (seen to stall).
    if in_memory:
        sides = payments.group_by(_order_id, name="orderId").concat(orders.group_by(_order_id, name="orderId"))
    else:
        sides = to_orderid_topic([payments, orders], "sides")

    def join_step(side: dict[str, Any], _: Any, timestamp: int, __: Any, ___: Any) -> list[dict[str, Any]]:
        partition = message_context().partition
        tx = sides.processing_context.checkpoint.get_store_transaction(stream_id=sides.stream_id, partition=partition)
        return join.process(side, timestamp, _PartitionStates(tx, timestamp), partition)

    joined = sides.apply(join_step, stateful=True, metadata=True, expand=True)

    partials = []
    for group_field in evaluator.group_fields:

        def evaluate_group(enriched: dict[str, Any], state: Any, group_field: str = group_field) -> dict[str, Any]:
            return evaluator.partial(group_field, enriched, state)

        grouped = joined.group_by(
            evaluator.group_key(group_field), name=group_field, value_serializer=JSON_OUT, value_deserializer=JSON_IN
        )
        partials.append(grouped.apply(evaluate_group, stateful=True))

    if not partials:
        verdicts = joined.apply(lambda enriched: evaluator.verdict(enriched, []))
    elif len(partials) == 1:
        verdicts = partials[0].apply(lambda partial: evaluator.verdict(partial["enriched"], partial["results"]))
    else:
        if in_memory:
            merged = partials[0]
            for partial in partials[1:]:
                merged = merged.concat(partial)
            by_order_id = merged.group_by(_order_id, name="verdict")
        else:
            by_order_id = to_orderid_topic(partials, "partials")
        verdicts = by_order_id.apply(evaluator.gather, stateful=True, expand=True)
    verdicts.to_topic(sink, key=lambda verdict: str(verdict["orderId"]))
    return Topology(join, evaluator, counters)


def _order_id(value: dict[str, Any]) -> int:
    order_id: int = value["orderId"]
    return order_id
