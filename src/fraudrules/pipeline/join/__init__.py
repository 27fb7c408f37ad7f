"""The payment/order join by orderId: a small state machine over partition state, any arrival order.

Per orderId the state holds the sides seen so far. The first side waits up to the join window; the second
completes the join and emits one enriched event at once. A side whose partner has not arrived when the
partition's stream time passes its deadline is emitted alone, with a join status naming the missing side.

Every input record ends in exactly one place. Once an order is decided its sides are remembered for
``retention`` (stream time). A later record under the same orderId is dead-lettered ``duplicate`` when it
repeats a side already used (a producer's retry) and ``late`` when it is the missing side of an order already
decided without it. A record whose content differs from its side of a decided order is a reused orderId (the
seed's generator run twice): it starts a new order under that orderId, a *generation*, held in the same entry,
which its own other side joins by the same rules as any order; its event carries ``reusedOrderId`` (the order
decided before it, when, and the fields that differ), and the earlier generations stay in the entry so that
their retries are still ``duplicate`` and their replays still recognised. A second, different record of the
side an order still open (waiting for its other side) already holds waits behind it and starts the next
generation once that order is decided: the sides of one orderId pair first come, first served, as its other
side cannot tell which of the two it belongs to. Only past ``MAX_WAITING`` waiting records is one
dead-lettered ``conflicting_duplicate``, a bound on what one orderId can hold. The same input record read
again (same topic, partition and offset: a replay after a crash) is recognised and ignored, since its outcome
exists. After the retention a reused orderId is a new order like any other. Each order has its own
``verdictId``: the position of a record it uses, and no record is used twice.

Stream time is a watermark: the lowest of the highest Kafka timestamps read from each partition of both
inputs, so a replayed backlog cannot expire one side before the other side's records of the same period
are read. Deadlines live in an index of one-second buckets under a partition-wide prefix, so expiry costs
one state read per record and a bucket scan once per second of stream time. A decided order is forgotten
once stream time passes its second too, but its forgetting is listed per minute (``FORGET_LIST_S``): the
same second decides, and a stream of a few orders a second writes a list per minute, not one per order.
An idle input partition (``watermark.py``, the rule the rule groups use too: it has held the watermark back,
still, for ``idle_ms`` of wall time and, with several partitions, its reader said it has read everything
there is, ``progress.py``) stops holding the watermark back until it delivers again; one that is merely not
being read (a backlog, another instance busy or gone) holds it back for as long as that lasts. When every
input has been still for the quiet time (the stream went quiet), stream time follows the wall clock from the
last record on, through :meth:`OrderJoin.tick` (a timer), so the last orders of a stream get their one-sided
verdicts too.

Each enriched event carries ``decisionTimeMs``, when it became decidable in stream time: the later side's
timestamp for a joined order, the end of the second its window ran out in for a one-sided one. The join
also sends a watermark, :meth:`OrderJoin.watermark_ms`: the lowest decision time any event it emits later
can have; the rule groups wait for that watermark to see events in decision-time order (``reorder.py``).

The package, split as Quix Streams' own lookup-join operators are: ``operator.py`` (the record path and the timer
path of one partition's join), ``index.py`` (its state index: the clock, the deadline and forgetting lists),
``events.py`` (what it makes of records); its node in Quix Streams is ``pipeline/nodes/join.py``.
"""

from fraudrules.pipeline.join.events import (
    ORDER_FIELDS,
    PAYMENT_FIELDS,
    SCHEMA_FIELDS,
    SIDES,
    decided_event,
    enriched_event,
    event_time_ms,
    rule_fields,
    verdict_id,
)
from fraudrules.pipeline.join.index import FORGET_LIST_S, INDEX_PREFIX, KEPT_PREFIXES, kept_cached
from fraudrules.pipeline.join.operator import (
    JOIN_ENTRY,
    MAX_EARLIER,
    MAX_WAITING,
    QUIET_S,
    JoinOutput,
    JoinTotals,
    OrderJoin,
)

__all__ = [
    "FORGET_LIST_S",
    "INDEX_PREFIX",
    "JOIN_ENTRY",
    "KEPT_PREFIXES",
    "MAX_EARLIER",
    "MAX_WAITING",
    "ORDER_FIELDS",
    "PAYMENT_FIELDS",
    "QUIET_S",
    "SCHEMA_FIELDS",
    "SIDES",
    "JoinOutput",
    "JoinTotals",
    "OrderJoin",
    "decided_event",
    "enriched_event",
    "event_time_ms",
    "kept_cached",
    "rule_fields",
    "verdict_id",
]
