"""The one place that builds the streaming topology: a thin adapter from Quix Streams to ``steps.py``.

    payment ─decode─┐                                                          ┌─ dead letters ────────────▶ deadletter
    order ───decode─┴─ by orderId ─ join ─┬─ dead letters ──────────────────────┘
                                          └─ by merchantId ─ reorder, rules ─┐
                                          └─ by provinceId ─ reorder, rules ─┴─ by orderId ─ gather, score ─▶ sink

Each rule group keeps its state under its own key (one group per distinct ``Rule.key``), so verdicts do not
depend on the partition count. With several input partitions every "by ..." step re-keys through a repartition
topic, and two topics of our own carry the sides (``fraudrules-sides--<group>``) and the groups' partial
results (``fraudrules-partials--<group>``), partitioned like the input. With one partition every key is in
that partition, so nothing is re-keyed: the join, the reorder buffer, every rule group and the verdict run
as one chained step over one store (``chain.py``, which the backtest runs too):

    payment ─decode─┬─ join ─ reorder ─ rules ─ verdict ─▶ sink
    order ───decode─┘  (dead letters of either step ─▶ deadletter)

Stateful rules see each key's events in decision-time order (``reorder.py``): every join partition sends
its watermark after its events, as heartbeats to every rule-group partition, and a periodic task of the
application's run loop lets the join move on while no record arrives (``OrderJoin.tick``).

Everything Quix-specific lives here (message context, store transactions, state TTLs, headers); the steps
themselves are plain functions that the backtest calls too. Input headers are never copied onto outputs:
a verdict carries only the W3C ``traceparent`` of its payment (else its order), a dead letter none.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from quixstreams import Application, message_context
from quixstreams.dataframe import StreamingDataFrame
from quixstreams.models import Topic, TopicConfig
from quixstreams.models.serializers import Deserializer
from quixstreams.models.serializers.json import JSONDeserializer, JSONSerializer

from fraudrules import codec
from fraudrules.pipeline.chain import Chain, Output
from fraudrules.pipeline.deadletter import deadletter_key
from fraudrules.pipeline.decode import Decoded, RecordDecoder
from fraudrules.pipeline.evaluate import MISSING_KEY
from fraudrules.pipeline.join import JoinOutput
from fraudrules.pipeline.model import (
    DeadLetter,
    Enriched,
    Heartbeat,
    Partial,
    Progress,
    Side,
    SideName,
    Verdict,
    is_deadletter,
    is_heartbeat,
    is_progress,
)
from fraudrules.pipeline.observer import PipelineObserver
from fraudrules.pipeline.offsets import CaughtUp, ConsumerOffsets
from fraudrules.pipeline.progress import (
    HEARTBEAT_INTERVAL_S,
    HEARTBEAT_MS,
    MEMORY_INTERVAL_S,
    Heartbeats,
    InputProgress,
)
from fraudrules.pipeline.quix import (
    Emission,
    EmittingNode,
    PartitionStates,
    Store,
    StoreCaches,
    app_consumer,
    every_loop,
)
from fraudrules.pipeline.reorder import REORDER_PREFIX
from fraudrules.pipeline.steps import Counters, Steps
from fraudrules.rules.engine import RuleSet
from fraudrules.settings import Settings
from fraudrules.state import WriteBackStates

JSON_OUT = JSONSerializer(dumps=codec.dumps)
JSON_IN = JSONDeserializer(loads=codec.loads)

_RESULTS_PREFIX = "fraudrules.results:"
#: Route keys of the join's heartbeats to the rule groups: ``<prefix>-<n>``, n chosen per target partition.
_HEARTBEAT_KEY = "~heartbeat"
#: How often (wall time) the run loop's periodic task lets the join look at idle inputs.
_TICK_S = 0.1


class _QuixRecordDecoder(RecordDecoder, Deserializer):
    """RecordDecoder as a Quix Streams value deserializer (no extra call per record)."""


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
    """Declare the topics and dataframes of the pipeline on ``app``; ``offsets`` is the ``stats_cb`` of its
    consumer (:func:`consumer_statistics`); ``observer`` (metrics) is told of every record admitted, side
    joined and verdict written."""
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
    partition_count = source.num_partitions or 1

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
    if partition_count == 1:
        # Every key is in the one partition: nothing to re-key, the whole chain runs in one step and one store.
        caught_up = CaughtUp(app_consumer(app), offsets, from_start=settings.auto_offset_reset == "earliest")
        _chained(app, steps, payments.concat(orders), deadletter, sink, observer, caught_up)
        return Topology(steps)

    # Re-key both sides by orderId through a topic of our own, dead letters straight to theirs, and no
    # `concat`, which would switch the whole application to timestamp-aligned consumption across every topic
    # of a partition number, including the ones it writes itself (seen to stall).
    sides_topic = internal_topic("sides")

    side_keys = [_key_for_partition(p, partition_count, str.encode) for p in range(partition_count)]
    reading = InputProgress(partition_count)
    caught_up = CaughtUp(app_consumer(app), offsets, from_start=settings.auto_offset_reset == "earliest")

    def with_progress(kind: SideName) -> Callable[[Any, Any, int, Any], list[Emission]]:
        """Each input partition tells every join partition how far it has been read (after its sides, on
        the same path), as a Flink source broadcasts its watermark: a join partition may get no side at all
        from an input partition (inputs keyed by orderId like the sides are co-partitioned with them). Whether
        its reader has read everything there is comes from a periodic look (``_report_readers``)."""

        sources = [f"{kind}/{p}" for p in range(partitions[kind])]  # "payment/3", named once

        def step(value: Side | DeadLetter, key: Any, timestamp: int, _: Any) -> list[Emission]:
            progress = reading.after_record(sources[message_context().partition], timestamp)
            return [(value, key, timestamp, []), *((p, key, timestamp, []) for p in progress)]

        return step

    def side_or_deadletter(value: Any, *_: Any) -> Topic:
        return deadletter if is_deadletter(value) else sides_topic

    def side_key(value: Any) -> Any:
        if is_progress(value):
            return side_keys[value["to"]]
        return deadletter_key(value) if is_deadletter(value) else str(value["orderId"])

    inputs: list[tuple[SideName, Topic, StreamingDataFrame]] = [
        ("payment", payment_topic, payments),
        ("order", order_topic, orders),
    ]
    readers = []
    for kind, topic, stream in inputs:
        node = EmittingNode(with_progress(kind))
        node.attach(stream)
        stream.to_topic(side_or_deadletter, key=side_key)
        readers.append((kind, topic.name, node))
    sides = app.dataframe(sides_topic)
    join_store = Store(sides)
    join_caches = StoreCaches(join_store)
    _report_readers(app, reading, readers, caught_up, join_store)

    join = steps.join
    join.readers_report = True
    evaluator = steps.evaluator
    heartbeats = Heartbeats(HEARTBEAT_MS, HEARTBEAT_INTERVAL_S)

    def promises(partition: int, behind: Callable[[], bool] | None = None) -> list[Heartbeat]:
        """The join partition's watermark, to every rule-group partition, when it rose enough to tell, and
        whether its own input was read to the end (``behind``, asked of the consumer if not given)."""
        if not evaluator.group_fields or heartbeats.resting(partition):
            return []
        if not heartbeats.due(partition, watermark := join.watermark_ms(partition)):
            return []
        assert watermark is not None
        unread = behind() if behind is not None else caught_up.behind([sides_topic.name], partition)
        return [
            {"heartbeat": watermark, "upstream": partition, "to": to, "caughtUp": not unread}
            for to in range(partition_count)
        ]

    def join_step(value: Side | DeadLetter | Progress, key: Any, timestamp: int, _: Any) -> list[Emission]:
        if is_deadletter(value):
            return [(value, key, timestamp, [])]
        partition = message_context().partition
        states, epoch = join_caches.states(partition)
        if is_progress(value):
            caught_up = value.get("caughtUp", False)
            out = join.progress(value["input"], value["progress"], states, partition, epoch, caught_up)
            key = None
        else:
            out = join.process(value, timestamp, states, partition, epoch)
        if observer is not None and out:
            observer.joined(out)
        return _emissions(out, promises(partition), key, timestamp)

    def join_tick(partition: int, settled: Callable[[], bool], behind: Callable[[], bool]) -> list[Emission]:
        states, epoch = join_caches.states(partition)
        out = join.tick(partition, states, settled, epoch, behind)
        if observer is not None and out:
            observer.joined(out)
        # no record in hand: each event at its decision time
        events: list[Emission] = [(event, None, event["decisionTimeMs"], []) for event in out]
        return events + [(beat, None, beat["heartbeat"], []) for beat in promises(partition, behind)]

    joined = _with_ticks(app, sides, join_store, join_step, join_tick, caught_up)
    joined[joined.apply(is_deadletter)].to_topic(deadletter, key=deadletter_key)
    events = joined[joined.apply(_is_event)]

    heartbeat_keys = [_key_for_partition(p, partition_count, _json_key) for p in range(partition_count)]
    partials = []
    for group_field in evaluator.group_fields:
        grouped = events.group_by(
            _group_route(group_field, heartbeat_keys),
            name=group_field,
            value_serializer=JSON_OUT,
            value_deserializer=JSON_IN,
        )
        step = _group_step(steps, group_field, Store(grouped), partition_count, remember=True)
        partials.append(grouped.apply(step, metadata=True, expand=True))

    verdicts: StreamingDataFrame
    if not partials:  # no stateful rules: no order to keep, no heartbeats
        verdicts = events.apply(lambda enriched: evaluator.verdict(enriched, []))
    elif len(partials) == 1:
        verdicts = partials[0].apply(lambda partial: evaluator.verdict(partial["enriched"], [partial["results"]]))
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


def _chained(
    app: Application,
    steps: Steps,
    inputs: StreamingDataFrame,
    deadletter: Topic,
    sink: Topic,
    observer: PipelineObserver | None,
    caught_up: CaughtUp,
) -> None:
    """One-partition inputs: the join, the reorder buffer, the rules and the verdict in one step over one store
    (``chain.py``), dead letters and verdicts straight to their topics: no re-keying topic, no branch copy."""
    chain = Chain(steps, report_interval_s=MEMORY_INTERVAL_S, on_joined=None if observer is None else observer.joined)
    store = Store(inputs)
    caches = StoreCaches(store)

    def observed(outputs: list[Output]) -> list[Output]:
        if observer is not None:
            for output in outputs:
                if not is_deadletter(output):
                    observer.verdict(output)
        return outputs

    def step(value: Side | DeadLetter, key: Any, timestamp: int, _: Any) -> list[Emission]:
        if is_deadletter(value):
            return [(value, key, timestamp, [])]
        partition = message_context().partition
        states, epoch = caches.states(partition)
        outputs = observed(chain.process(value, timestamp, states, partition, epoch))
        return [(output, key, timestamp, []) for output in outputs]

    def tick(partition: int, settled: Callable[[], bool], behind: Callable[[], bool]) -> list[Emission]:
        states, epoch = caches.states(partition)
        outputs = observed(chain.tick(states, settled, partition, epoch, behind))
        # no record in hand: each verdict at its order's latest input timestamp
        return [(output, None, _input_timestamp(output), []) for output in outputs]

    def topic_of(value: Output, *_: Any) -> Topic:
        return deadletter if is_deadletter(value) else sink

    def key_of(value: Output) -> Any:
        return deadletter_key(value) if is_deadletter(value) else str(value["orderId"])

    outputs = _with_ticks(app, inputs, store, step, tick, caught_up)
    outputs.set_headers(_trace_headers).to_topic(topic_of, key=key_of)


def _input_timestamp(output: Output) -> int:
    """A dead letter's input timestamp, or the latest input timestamp of a verdict's order."""
    if is_deadletter(output):
        return output["source"]["timestamp"]
    provenance = output["provenance"]
    return max(source["timestamp"] for source in (provenance["payment"], provenance["order"]) if source is not None)


def _with_ticks(
    app: Application,
    sides: StreamingDataFrame,
    store: Store,
    step: Callable[[Any, Any, int, Any], list[Emission]],
    tick: Callable[[int, Callable[[], bool], Callable[[], bool]], list[Emission]],
    caught_up: CaughtUp,
) -> StreamingDataFrame:
    """``sides`` with the join as a stream node that also emits between records.

    Quix Streams calls a step only for a record, so the join could not expire one-sided orders, nor promise
    the rule groups anything, on a quiet stream. This node remembers its downstream executor, and a periodic
    task of the application's run loop (the mechanism Quix Streams' own lookup-join buffer uses) calls
    ``tick`` for every join partition this instance holds and sends what it returns downstream. ``tick`` may
    ask whether this instance has read every record there is, and whether records of the partition's own input
    wait unread (``OrderJoin.tick``).
    """
    node = EmittingNode(step)
    topics = [t.name for t in sides.topics]  # the node's own inputs (the sides topic, or both input topics)
    topic = topics[0]
    next_tick = 0.0

    def run_tick() -> None:
        nonlocal next_tick
        now = time.monotonic()
        if node.downstream is None or now < next_tick or store.recovering():
            return
        next_tick = now + _TICK_S
        settled = _Once(caught_up)
        for partition in sorted(store.partitions()):
            behind = _Once(partial(caught_up.behind, topics, partition))
            node.emit(topic, partition, tick(partition, settled, behind))

    every_loop(app, run_tick)
    node.attach(sides)
    return sides


def _report_readers(
    app: Application,
    reading: InputProgress,
    readers: list[tuple[SideName, str, EmittingNode]],
    caught_up: CaughtUp,
    store: Store,
) -> None:
    """A periodic task of the run loop looks whether this instance has read every record of each input partition
    it reads, and sends their progress when ``reading`` says (``progress.py``), through each input's step node."""
    next_look = 0.0

    def look() -> None:
        nonlocal next_look
        now = time.monotonic()
        if now < next_look or store.recovering():  # no producing while a store recovers
            return
        next_look = now + _TICK_S
        assigned = caught_up.assigned()
        reading.forget({f"{kind}/{tp.partition}" for kind, topic, _ in readers for tp in assigned if tp.topic == topic})
        for kind, topic, node in readers:
            mine = [tp for tp in assigned if tp.topic == topic]
            if node.downstream is None or not mine:
                continue
            for tp, done in zip(mine, caught_up.each(mine), strict=True):
                progress = reading.looked(f"{kind}/{tp.partition}", done)
                node.emit(topic, tp.partition, [(p, None, int(time.time() * 1000), []) for p in progress])

    every_loop(app, look)


class _Once:
    """A question asked at most once per tick."""

    def __init__(self, ask: Callable[[], bool]) -> None:
        self._ask = ask
        self._answer: bool | None = None

    def __call__(self) -> bool:
        if self._answer is None:
            self._answer = self._ask()
        return self._answer


def _emissions(out: list[JoinOutput], promises: list[Heartbeat], key: Any, timestamp: int) -> list[Emission]:
    """The join's outputs for a record, then its heartbeats (after: a promise covers the events sent before)."""
    emitted: list[Emission] = [(value, key, timestamp, []) for value in out]
    return emitted + [(beat, key, beat["heartbeat"], []) for beat in promises]


def _group_step(steps: Steps, field: str, store: Store, upstream: int, remember: bool) -> Any:
    """One rule group's step: events wait in the group's reorder buffer (``reorder.py``) and reach the rules in
    decision-time order, released by the join partitions' heartbeats.

    ``remember``: with internal topics between the join and the rules, a restart under at-least-once can
    deliver an order to a rule group twice; the group then answers with the results it gave the first time
    (and whether it was late), so the repeat decides the same and the rules' state takes each order in once.
    The results are kept per verdictId for ``dedup_retention_seconds`` of event time, as the join keeps decided
    orders: a repeat arrives within seconds of wall time, but a backlog crosses hours of event time in that.
    """
    partial = steps.evaluator.partial
    reorder = steps.reorder(upstream, readers_report=True)  # heartbeats say whether their join partition is behind
    memory = timedelta(seconds=steps.settings.dedup_retention_seconds)

    def evaluate(event: Enriched, states: WriteBackStates, direct: PartitionStates) -> Partial:
        key = event["event"].get(field, MISSING_KEY)
        result = partial(field, event, states.for_key(key))
        if remember:
            given = {"results": result["results"], "late": bool(event.get("late"))}
            direct.for_key(key).set(_RESULTS_PREFIX + event["verdictId"], given, ttl=memory)  # type: ignore[call-arg]
        return result

    def remembered(event: Enriched, states: PartitionStates) -> Partial | None:
        state = states.for_key(event["event"].get(field, MISSING_KEY))
        given = state.get(_RESULTS_PREFIX + event["verdictId"])
        if given is None:
            return None
        enriched: Enriched = {**event, "late": True} if given["late"] else event
        return {
            "orderId": event["orderId"],
            "verdictId": event["verdictId"],
            "group": field,
            "results": given["results"],
            "enriched": enriched,
        }

    ttl_enabled: set[int] = set()
    # The reorder buffer and the rules go through a write-back cache; the remembered results, which carry a TTL
    # counted from their record's timestamp, straight to the transaction (``direct``).
    caches = StoreCaches(store)

    def group_step(value: Enriched | Heartbeat, _: Any, timestamp: int, __: Any) -> list[Partial]:
        partition = message_context().partition
        tx = store.transaction(partition)
        direct = PartitionStates(tx, timestamp)
        if remember and partition not in ttl_enabled:
            # A store's first write with a TTL gives every record already in it an expiry (Quix Streams'
            # "legacy" backfill): the reorder buffer's and the rules' records must not get one, so the store
            # sees a TTL write before any other (the cache writes at the checkpoint, after this).
            direct.for_key(REORDER_PREFIX).set("ttl", True, ttl=memory)  # type: ignore[call-arg]
            ttl_enabled.add(partition)
        # the store partition's incarnation: the reorder buffer's index in memory is rebuilt on a new one
        states, epoch = caches.states(partition, tx)
        if is_heartbeat(value):
            caught_up = value.get("caughtUp", True)
            released = reorder.report(partition, value["upstream"], value["heartbeat"], states, epoch, caught_up)
        else:
            if remember and (given := remembered(value, direct)) is not None:
                return [given]
            released = reorder.add(value, states, partition, epoch)
        return [evaluate(event, states, direct) for event in released]

    return group_step


def _group_route(field: str, heartbeat_keys: list[str]) -> Callable[[Enriched | Heartbeat], Any]:
    """The rule group's key: the event's ``field``, or for a heartbeat a key that lands on its partition."""

    def route(value: Enriched | Heartbeat) -> Any:
        if is_heartbeat(value):
            return heartbeat_keys[value["to"]]
        return value["event"].get(field, MISSING_KEY)

    return route


def _key_for_partition(partition: int, partitions: int, serialize: Callable[[str], bytes]) -> str:
    """A key that lands on ``partition`` of a ``partitions``-partition topic whose keys are ``serialize`` d:
    Quix Streams' producer partitions with librdkafka's ``murmur2`` (Kafka's Java partitioner)."""
    for n in range(1_000_000):
        key = f"{_HEARTBEAT_KEY}-{n}"
        if (_murmur2(serialize(key)) & 0x7FFFFFFF) % partitions == partition:
            return key
    raise AssertionError(f"no key for partition {partition} of {partitions}")  # pragma: no cover


def _json_key(key: str) -> bytes:
    """A ``group_by`` key as Quix Streams writes it (JSON)."""
    return json.dumps(key).encode()


def _murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), as an unsigned 32-bit int."""
    m = 0x5BD1E995
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = (int.from_bytes(data[i : i + 4], "little") * m) & 0xFFFFFFFF
        k = ((k ^ (k >> 24)) * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = data[whole:]
    if tail:
        for shift, byte in reversed(list(enumerate(tail))):
            h ^= byte << (8 * shift)
        h = (h * m) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * m) & 0xFFFFFFFF
    return h ^ (h >> 15)


def _no_headers(*_: Any) -> list[tuple[str, bytes]]:
    return []


def _trace_headers(output: Verdict | DeadLetter, *_: Any) -> list[tuple[str, bytes]]:
    """A verdict's ``traceparent`` header; none on a dead letter."""
    traceparent = None if is_deadletter(output) else output.get("traceparent")
    return [] if not traceparent else [("traceparent", str(traceparent).encode())]


def _is_event(value: JoinOutput | Heartbeat) -> bool:
    return not is_deadletter(value)
