"""What flows between the pipeline's steps, in the order a record meets them.

    bytes ─decode─▶ Side | DeadLetter ─join─▶ Enriched | DeadLetter ─rules─▶ Partial ─score─▶ Verdict

These are TypedDicts, not classes: the same values cross Kafka (internal topics and changelogs, as JSON)
and the offline backtest without a conversion, and the type checker still sees what flows where.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from typing_extensions import TypeIs

SideName = Literal["payment", "order"]
JoinStatus = Literal["joined", "payment_only", "order_only"]
Decision = Literal["approve", "review", "decline"]
DeadLetterReason = Literal[
    "null_value",
    "not_utf8",
    "not_json",
    "not_object",
    "schema",
    "too_large",
    "too_deep",
    "duplicate",
    "conflicting_duplicate",
    "late",
]


class Source(TypedDict):
    """Where an input record was read: topic, partition, offset and Kafka timestamp (ms)."""

    topic: str
    partition: int
    offset: int
    timestamp: int


class Side(TypedDict):
    """A valid payment or order, re-keyed by ``orderId`` (an int), with where it came from."""

    side: SideName
    orderId: int
    record: dict[str, Any]
    source: Source
    #: The W3C trace context of the input record, if it had one (the only header carried through).
    traceparent: str | None


class Provenance(TypedDict):
    payment: Source | None
    order: Source | None


class ReusedOrderId(TypedDict):
    """An order whose orderId an order decided before it used, with other content (``join.py``)."""

    #: The verdictId of the order decided before it under this orderId ...
    previousVerdictId: str
    #: ... and when that one became decidable, in stream time (ms; its ``decisionTimeMs``).
    previousDecisionTimeMs: int
    #: The top-level fields in which this order's records differ from that order's records of the same side.
    differingFields: list[str]


class Enriched(TypedDict):
    """One order as the rules see it: both sides merged into ``event`` (or one side, after the window)."""

    orderId: int
    #: Tells two orders with one orderId apart: the input position of the payment (or of the lone order).
    verdictId: str
    event: dict[str, Any]
    payment: dict[str, Any] | None
    order: dict[str, Any] | None
    provenance: Provenance
    #: The later Kafka timestamp of the two sides: latency is measured from here.
    inputTimestampMs: int
    #: When the order became decidable, in stream time: the later side's timestamp for a joined order, the
    #: second its join window ran out in for a one-sided one. Stateful rules see events in this order.
    decisionTimeMs: int
    traceparent: str | None
    #: Set when the event reached its rules after later ones had (beyond the reorder bound): see ``reorder.py``.
    late: NotRequired[bool]
    #: Set when another order was decided under this orderId before, with other content (``join.py``).
    reusedOrderId: NotRequired[ReusedOrderId]


class RuleHit(TypedDict):
    rule: str
    version: str
    mode: Literal["enforce", "shadow"]
    score: float
    reason: str
    values: dict[str, Any]
    #: Wall time the rule took on this event, in microseconds.
    micros: float


class RuleError(TypedDict):
    rule: str
    error: str


class RuleResults(TypedDict):
    """What a group of rules said about one event: hits, and rules that failed (never part of a score)."""

    hits: list[RuleHit]
    errors: list[RuleError]


class Partial(TypedDict):
    """One rule group's results for one order, on its way to the order's verdict."""

    orderId: int
    verdictId: str
    group: str
    results: RuleResults
    enriched: Enriched


class Progress(TypedDict):
    """What a reader tells one join partition (several partitions only): for each input partition it reads,
    ``[input, timestamp, caughtUp]``: read up to Kafka ``timestamp`` (ms; -1: nothing read since its reader got
    it), its sides before that sent before this record, and whether every record there was had been read
    (``progress.py``). One record per reader and join partition, however many input partitions it reads.
    (Earlier builds sent one record per input partition: ``progress`` its timestamp, ``input`` its name,
    ``caughtUp``; :func:`progress_reports` reads both, so a sides topic written by one reads on after an
    upgrade.)"""

    progress: list[list[Any]]
    #: The join partition it is for.
    to: int


def progress_reports(value: Progress) -> list[list[Any]]:
    """A progress record's ``[input, timestamp, caughtUp]`` reports, in either shape it was ever written."""
    return _reports(value, "progress", "input", caught_up=False)


def _reports(value: Any, field: str, sender: str, caught_up: bool) -> list[list[Any]]:
    """``value[field]``: its reports, or the one report of a record written by an earlier build (``field`` the
    watermark, ``sender`` the partition it is of, ``caughtUp`` if present, else ``caught_up``)."""
    reports = value[field]
    if isinstance(reports, int):
        return [[value[sender], reports, value.get("caughtUp", caught_up)]]
    return reports  # type: ignore[no-any-return]


class Heartbeat(TypedDict):
    """The watermarks an instance's join (or rule-group) partitions send one partition downstream: for each,
    ``[upstream, watermark, caughtUp]``: no event decided before ``watermark`` (ms, stream time) will follow
    from partition ``upstream``, and whether it had read every record of its input when it said so
    (``reorder.py``). One record per instance and downstream partition, however many partitions it holds.
    (Earlier builds sent one record per upstream partition: ``heartbeat`` its watermark, ``upstream``,
    ``caughtUp``; :func:`heartbeat_reports` reads both.)"""

    heartbeat: list[list[Any]]
    #: The partition downstream it is for.
    to: int


def heartbeat_reports(value: Heartbeat) -> list[list[Any]]:
    """A heartbeat's ``[upstream, watermark, caughtUp]`` reports, in either shape it was ever written."""
    return _reports(value, "heartbeat", "upstream", caught_up=True)


def heartbeat_ms(value: Heartbeat) -> int:
    """The Kafka timestamp a heartbeat is written with: the first report's watermark (the partition whose record or
    timer sent it)."""
    return int(heartbeat_reports(value)[0][1])


class DeadLetterSource(TypedDict):
    topic: str
    partition: int
    offset: int
    timestamp: int
    #: The record's key in base64, cut at the key limit (``keySize`` and ``keySha256`` describe all of it).
    key: str | None
    keySize: NotRequired[int]
    keySha256: NotRequired[str | None]


class DeadLetter(TypedDict):
    """A record refused, with why and where it came from (``schemas/deadletter.json``)."""

    reason: DeadLetterReason
    error: str
    path: str | None
    source: DeadLetterSource
    raw: str | None
    rawSize: int
    rawTruncated: bool
    rawSha256: str | None
    seenAt: str
    fraudrulesVersion: str
    orderId: NotRequired[int]
    #: For duplicates and late sides: the record this one repeats, conflicts with, or came too late for.
    original: NotRequired[Source]
    #: For a conflicting duplicate: the top-level fields whose values differ from the original's.
    differingFields: NotRequired[list[str]]


class JoinInfo(TypedDict):
    status: JoinStatus


class RulesetInfo(TypedDict):
    id: str
    rules: dict[str, str]
    #: The control topic's version of the rule set (``fraudrules rules set``); absent for the settings' own.
    version: NotRequired[int]
    #: The control topic's position of the last list change in force (``fraudrules lists add``); absent: none.
    lists: NotRequired[int]


class Verdict(TypedDict):
    """One per order, on ``sink`` (``schemas/verdict.json``)."""

    orderId: int
    verdictId: str
    decision: Decision
    score: int
    hits: list[dict[str, Any]]
    shadowHits: list[dict[str, Any]]
    errors: list[RuleError]
    join: JoinInfo
    eventTime: str
    decidedAt: str
    latencyMs: float
    payment: dict[str, Any] | None
    order: dict[str, Any] | None
    provenance: Provenance
    ruleset: RulesetInfo
    fraudrulesVersion: str
    #: The W3C trace context of the payment (else the order), also sent as the ``traceparent`` header.
    traceparent: NotRequired[str]
    #: Present (true) when a stateful rule saw this order after later ones (``reorder_bound_ms`` exceeded).
    late: NotRequired[bool]
    #: The allow, review and decline lists the order is on (``rules/lists.py``), when it is on any.
    lists: NotRequired[list[Any]]
    #: Present when another order was decided under this orderId before this one, with other content.
    reusedOrderId: NotRequired[ReusedOrderId]


def is_deadletter(value: Side | Enriched | Verdict | DeadLetter | Heartbeat | Progress) -> TypeIs[DeadLetter]:
    """Dead letters share streams with sides and enriched events; only they have a ``reason``."""
    return "reason" in value


def is_progress(value: Side | DeadLetter | Progress) -> TypeIs[Progress]:
    """Input progress shares the sides topic with sides (several partitions only)."""
    return "progress" in value


def is_heartbeat(value: Enriched | DeadLetter | Heartbeat) -> TypeIs[Heartbeat]:
    """Heartbeats share the stream from the join to the rule groups with enriched events."""
    return "heartbeat" in value
