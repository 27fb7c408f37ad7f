"""The one place that declares the streaming topology: its topics, its dataframes and which node runs where.

At several partitions (the README's diagram):

    payment ─admit─┬─ progress ─┐
    order ───admit─┴─ progress ─┴─▶ sides (by orderId) ─ join ─┬─ dead letters ─────────────────────▶ deadletter
                                                               └─▶ by merchantId ─ reorder, rules
                                                                   ─▶ by provinceId ─ reorder, rules, score ─▶ sink

Each rule group keeps its state under its own key (one group per distinct ``Rule.key``), so verdicts do not
depend on the partition count. Every "by ..." step re-keys through a topic of the app's own, partitioned like
the input: the sides (``fraudrules-sides--<group>``), then one per rule group
(``fraudrules-by-<field>--<group>``), chained, the last making the verdicts. Time travels with them: each input
partition's progress to every join partition (``nodes/inputs.py``), each join partition's watermark to every
partition of the first group (``nodes/join.py``), each group partition's to every partition of the next
(``nodes/groups.py``), after the records they cover, on the same paths.

At one partition every key is in that partition, so nothing is re-keyed: the join, the reorder buffer, every
rule group and the verdict run as one node over one store (``nodes/chain.py``):

    payment ─admit─┬─ join ─ reorder ─ rules ─ verdict ─▶ sink
    order ───admit─┘  (dead letters of either step ─▶ deadletter)

What runs in each node is in ``nodes/``; Quix Streams' private parts in ``quix.py``. Input headers are never
copied onto outputs: a verdict carries only the W3C ``traceparent`` of its payment (else its order), a dead
letter none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from quixstreams import Application
from quixstreams.dataframe import StreamingDataFrame
from quixstreams.models import Topic, TopicConfig
from quixstreams.models.serializers.json import JSONDeserializer, JSONSerializer

from fraudrules import codec
from fraudrules.pipeline.chain import Output
from fraudrules.pipeline.deadletter import deadletter_key
from fraudrules.pipeline.evaluate import MISSING_KEY
from fraudrules.pipeline.join import JoinOutput
from fraudrules.pipeline.model import DeadLetter, Enriched, Heartbeat, SideName, Verdict, is_deadletter
from fraudrules.pipeline.nodes.admit import AdmitNode, QuixRecordDecoder
from fraudrules.pipeline.nodes.chain import ChainNode
from fraudrules.pipeline.nodes.groups import GroupNode
from fraudrules.pipeline.nodes.inputs import Readers
from fraudrules.pipeline.nodes.join import JoinNode
from fraudrules.pipeline.nodes.packets import Packets, unpacked
from fraudrules.pipeline.nodes.timers import drive_timers, watch_stalls
from fraudrules.pipeline.observer import PipelineObserver
from fraudrules.pipeline.offsets import CaughtUp, ConsumerOffsets
from fraudrules.pipeline.quix import EmittingNode, Store, align_inputs, app_consumer, on_rebalance
from fraudrules.pipeline.steps import Counters, Steps
from fraudrules.rules.engine import RuleSet
from fraudrules.settings import Settings

JSON_OUT = JSONSerializer(dumps=codec.dumps)
JSON_IN = JSONDeserializer(loads=codec.loads)


@dataclass
class Topology:
    steps: Steps

    @property
    def counters(self) -> Counters:
        return self.steps.counters


def build_topology(
    app: Application,
    settings: Settings,
    ruleset: RuleSet,
    offsets: ConsumerOffsets,
    observer: PipelineObserver | None = None,
) -> Topology:
    """Declare the topics and dataframes of the pipeline on ``app``; ``offsets`` gets the statistics of its
    consumer (``quix.consumer_statistics``); ``observer`` (metrics) is told of every record admitted, side
    joined and verdict written."""
    names = settings.topics
    deadletter = app.topic(names.deadletter, value_serializer=JSON_OUT, key_serializer="bytes")
    sink = app.topic(names.sink, value_serializer=JSON_OUT, key_serializer="str")

    def input_topic(kind: SideName, name: str) -> Topic:
        decoder = QuixRecordDecoder(kind, settings.max_record_bytes, settings.max_nesting_depth)
        return app.topic(name, value_deserializer=decoder, key_deserializer="bytes")

    payment_topic, order_topic = input_topic("payment", names.payment), input_topic("order", names.order)
    partitions: dict[str, int] = {
        "payment": payment_topic.broker_config.num_partitions or 1,
        "order": order_topic.broker_config.num_partitions or 1,
    }
    steps = Steps(settings, ruleset, partitions)
    source = max(payment_topic.broker_config, order_topic.broker_config, key=lambda c: c.num_partitions or 0)
    partition_count = source.num_partitions or 1
    caught_up = CaughtUp(app_consumer(app), offsets, from_start=settings.auto_offset_reset == "earliest")
    on_rebalance(app, caught_up.rebalanced)

    def admitted(kind: SideName, topic: Topic) -> StreamingDataFrame:
        # Headers stay behind: internal topics and outputs never carry an input's (possibly huge) headers.
        step = AdmitNode(steps, kind, observer).on_record
        return app.dataframe(topic).apply(step, metadata=True).set_headers(_no_headers)

    def internal_topic(purpose: str, key_serializer: Literal["str", "json"] = "str") -> Topic:
        """A topic of this application's own, partitioned like its input (keyed by orderId unless told)."""
        return app.topic(
            f"fraudrules-{purpose}--{settings.consumer_group}",
            config=TopicConfig(num_partitions=source.num_partitions, replication_factor=source.replication_factor),
            key_serializer=key_serializer,
            key_deserializer=key_serializer,
            value_serializer="bytes",  # packets (``nodes/packets.py``), already JSON
            value_deserializer=JSON_IN,
        )

    payments, orders = admitted("payment", payment_topic), admitted("order", order_topic)
    # The inputs in timestamp order across every partition of them this instance holds (``aligned.py``); what
    # waits in that buffer is unread for the readers.
    aligned = align_inputs(app, [payment_topic.name, order_topic.name], caught_up.assigned)
    caught_up.held = aligned.holds
    if partition_count == 1:
        # Every key is in the one partition: nothing to re-key, the whole chain runs in one node and one store.
        inputs = payments.concat(orders)
        store = Store(inputs)
        chain = ChainNode(steps, store, observer)
        chain_node = EmittingNode(chain.on_record)
        chain_node.attach(inputs)
        drive_timers(app, chain_node, store, [t.name for t in inputs.topics], caught_up, chain.on_timer)
        watch_stalls(app, store, offsets, caught_up)
        inputs.set_headers(_trace_headers).to_topic(
            _or_deadletter(deadletter, sink), key=_or_deadletter_key(_order_key)
        )
        return Topology(steps)

    # What goes to the app's own topics travels in packets, one per partition (``nodes/packets.py``).
    packets = Packets(aligned.empty)

    # Re-key both sides by orderId through a topic of our own, dead letters straight to theirs.
    sides_topic = internal_topic("sides")
    readers = Readers(partitions, partition_count, caught_up)
    to_sides = packets.packer(sides_topic.name, partition_count, _order_key, str.encode)
    for kind, topic, stream in (("payment", payment_topic, payments), ("order", order_topic, orders)):
        readers.node(kind, topic.name).attach(stream)  # type: ignore[arg-type]
        to_sides.node().attach(stream)
        stream.to_topic(_packet_or_deadletter(deadletter, sides_topic))
    sides = app.dataframe(sides_topic)
    join_store = Store(sides)
    readers.drive(app, join_store)
    join = JoinNode(steps, join_store, sides_topic.name, partition_count, caught_up, observer)
    join_node = EmittingNode(unpacked(join.on_record))
    join_node.attach(sides)
    drive_timers(app, join_node, join_store, [sides_topic.name], caught_up, join.on_timer)
    watch_stalls(app, join_store, offsets, caught_up)

    # The rule groups, chained: each reads a topic of its own keyed by its field (written by the join or by the
    # group before it), the last makes the verdicts. A topic per group rather than `group_by`, which Quix
    # Streams does not allow on a `group_by` result. The join's dead letters and its events leave through one
    # `to_topic` that picks the topic: two filtered branches would have Quix Streams copy every output.
    evaluator = steps.evaluator
    fields = evaluator.group_fields
    if not fields:  # no stateful rules: no order to keep, no heartbeats
        sides[sides.apply(is_deadletter)].to_topic(deadletter, key=deadletter_key)
        verdicts = sides[sides.apply(_is_event)].apply(lambda enriched: evaluator.verdict(enriched, []))
    else:
        upstream = sides
        for n, field in enumerate(fields):
            topic = internal_topic(f"by-{field}", key_serializer="json")
            # keys as Quix Streams' JSON serializer writes them (the same orjson options)
            packets.packer(topic.name, partition_count, _field_key(field), codec.dumps_strict).node().attach(upstream)
            upstream.to_topic(_packet_or_deadletter(deadletter, topic))
            grouped = app.dataframe(topic)
            store = Store(grouped)
            last = n == len(fields) - 1
            group = GroupNode(
                steps, field, store, partition_count, first=n == 0, last=last, topic=topic.name, caught_up=caught_up
            )
            node = EmittingNode(unpacked(group.on_record))
            node.attach(grouped)
            if not last:
                drive_timers(app, node, store, [topic.name], caught_up, group.on_timer)
            upstream = grouped
        verdicts = upstream
    packets.drive(app, join_store)  # after every timer: what they send in a loop leaves in it
    if observer is not None:
        verdicts = verdicts.update(observer.verdict)
    verdicts.set_headers(_trace_headers).to_topic(sink, key=_order_key)
    return Topology(steps)


def _or_deadletter(deadletter: Topic, topic: Topic) -> Callable[..., Topic]:
    """``to_topic``'s choice: a dead letter to ``deadletter``, anything else to ``topic``."""
    return lambda value, *_: deadletter if is_deadletter(value) else topic


def _packet_or_deadletter(deadletter: Topic, topic: Topic) -> Callable[..., Topic]:
    """``to_topic``'s choice after a packer: a packet to ``topic``, a dead letter to ``deadletter``."""
    return lambda value, *_: topic if isinstance(value, bytes) else deadletter


def _field_key(field: str) -> Callable[[Enriched], Any]:
    """A rule group's key of an event: its ``field``."""
    return lambda value: value["event"].get(field, MISSING_KEY)


def _or_deadletter_key(key: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A dead letter's key, or ``key`` of anything else."""
    return lambda value: deadletter_key(value) if is_deadletter(value) else key(value)


def _order_key(value: Output) -> str:
    return str(value["orderId"])


def _no_headers(*_: Any) -> list[tuple[str, bytes]]:
    return []


def _trace_headers(output: Verdict | DeadLetter, *_: Any) -> list[tuple[str, bytes]]:
    """A verdict's ``traceparent`` header; none on a dead letter."""
    traceparent = None if is_deadletter(output) else output.get("traceparent")
    return [] if not traceparent else [("traceparent", str(traceparent).encode())]


def _is_event(value: JoinOutput | Heartbeat) -> bool:
    return not is_deadletter(value)
