from __future__ import annotations

from typing import Any, cast

import pytest

from fraudrules.pipeline.decode import side_record
from fraudrules.pipeline.join import (
    FORGET_LIST_S,
    INDEX_PREFIX,
    JOIN_ENTRY,
    MAX_EARLIER,
    MAX_WAITING,
    OrderJoin,
    decided_event,
    event_time_ms,
    rule_fields,
    seen,
)
from fraudrules.pipeline.model import Enriched, Side, SideName
from tests.fixtures import ORDER, PAYMENT, DictPartitionStates, FakeWallClock, ReadCountingStates, order, payment

WINDOW_MS = 10_000
RETENTION_MS = 60_000
T0 = 1_700_000_000_000


def side(
    kind: SideName, order_id: int, offset: int | None = None, timestamp: int = T0, partition: int = 0, **fields: Any
) -> Side:
    record = payment(order_id, **fields) if kind == "payment" else order(order_id, **fields)
    offset = order_id if offset is None else offset
    return side_record(record, kind, {"topic": kind, "partition": partition, "offset": offset, "timestamp": timestamp})


class Harness:
    def __init__(self) -> None:
        self.join = OrderJoin(WINDOW_MS, RETENTION_MS)
        self.states = DictPartitionStates()
        self.out: list[Any] = []

    def send(self, kind: SideName, order_id: int, at: int, offset: int | None = None, **fields: Any) -> list[Any]:
        emitted = self.join.process(side(kind, order_id, offset, at, **fields), at, self.states)
        self.out.extend(emitted)
        return emitted

    def pair(self, order_id: int, at: int) -> list[Any]:
        """Both sides of an order: normal traffic that moves both inputs' stream time."""
        return self.send("payment", order_id, at) + self.send("order", order_id, at)


def test_payment_then_order_joins_once_when_the_order_arrives() -> None:
    h = Harness()

    assert h.send("payment", 1, T0) == []
    [event] = h.send("order", 1, T0 + 50)

    assert event["orderId"] == 1
    assert event["event"]["joinStatus"] == "joined"
    assert event["event"]["category"] == "kids_pets"
    assert event["event"]["payAmount"] == payment(1)["payAmount"]
    assert event["provenance"]["payment"]["topic"] == "payment"
    assert event["provenance"]["order"]["topic"] == "order"
    assert event["inputTimestampMs"] == T0 + 50


def test_order_then_payment_joins_the_same_way() -> None:
    h = Harness()

    h.send("order", 1, T0)
    [event] = h.send("payment", 1, T0 + 9_000)

    assert event["event"]["joinStatus"] == "joined"
    # the payment's createTime wins in the merged event
    assert event["event"]["createTime"] == payment(1)["createTime"]


def test_sides_out_of_event_time_order_still_join() -> None:
    h = Harness()

    h.send("order", 1, T0 + 5_000)
    [event] = h.send("payment", 1, T0)

    assert event["event"]["joinStatus"] == "joined"


def test_an_exact_repeat_of_a_side_is_dead_lettered_as_a_duplicate_naming_the_original() -> None:
    h = Harness()

    h.send("payment", 1, T0, offset=10)
    [repeat] = h.send("payment", 1, T0 + 1, offset=11)
    h.send("order", 1, T0 + 2, offset=12)
    [after] = h.send("order", 1, T0 + 3, offset=13)

    assert repeat["reason"] == "duplicate"
    assert repeat["original"]["offset"] == 10
    assert repeat["source"]["offset"] == 11
    assert repeat["orderId"] == 1
    assert (after["reason"], after["original"]["offset"]) == ("duplicate", 12)
    assert [e["orderId"] for e in h.out if "event" in e] == [1]


SECOND_RUN = {"payAmount": 5.0, "createTime": "2024-01-01 00:00:00"}  # the seed's generator started again


def reuse(h: Harness, at: int, payment_offset: int, order_offset: int) -> list[Any]:
    """Both sides of another order under orderId 1 (other content)."""
    return h.send("payment", 1, at, offset=payment_offset, **SECOND_RUN) + h.send(
        "order", 1, at, offset=order_offset, createTime=SECOND_RUN["createTime"]
    )


def test_a_reused_order_id_after_its_verdict_is_a_new_order_joined_with_its_own_other_side_and_marked() -> None:
    h = Harness()
    [first] = h.pair(1, T0)

    assert h.send("payment", 1, T0 + 75_000, offset=99, **SECOND_RUN) == []  # a new order, waiting for its order
    [second] = h.send("order", 1, T0 + 75_500, offset=100, createTime=SECOND_RUN["createTime"])

    assert (second["orderId"], second["event"]["joinStatus"]) == (1, "joined")
    assert (first["verdictId"], second["verdictId"]) == ("payment/0/1", "payment/0/99")
    assert second["payment"] == payment(1, **SECOND_RUN)
    assert second["provenance"]["order"]["offset"] == 100
    assert second["reusedOrderId"] == {
        "previousVerdictId": "payment/0/1",
        "previousDecisionTimeMs": first["decisionTimeMs"],
        "differingFields": ["createTime", "payAmount"],
    }
    assert (first["event"]["reusedOrderId"], second["event"]["reusedOrderId"]) == (False, True)
    assert "reusedOrderId" not in first
    assert h.join.totals.reused == 1
    assert h.join.totals.deadlettered == 0


def test_a_reused_order_id_may_start_with_either_side_and_names_the_fields_both_its_records_differ_in() -> None:
    marks = []
    first: SideName
    then: SideName
    for first, then in (("order", "payment"), ("payment", "order")):
        h = Harness()
        h.pair(1, T0)
        h.send(first, 1, T0 + 75_000, offset=50, **({"merchantId": 7} if first == "order" else {"payAmount": 5.0}))
        [second] = h.send(
            then, 1, T0 + 75_000, offset=51, **({"merchantId": 7} if then == "order" else {"payAmount": 5.0})
        )
        marks.append((second["verdictId"], second["reusedOrderId"]))

    assert marks[0][0] == "payment/0/51"
    assert marks[0][1] == marks[1][1]  # whichever record came first
    assert marks[0][1]["differingFields"] == ["merchantId", "payAmount"]


def test_exact_repeats_of_either_order_under_a_reused_order_id_stay_duplicates_and_replays_give_nothing() -> None:
    h = Harness()
    h.pair(1, T0)
    h.send("payment", 1, T0 + 75_000, offset=99, **SECOND_RUN)

    # while the second order is open: a retry of the first order's order must not become the second's order
    [retry] = h.send("order", 1, T0 + 75_100, offset=200)
    assert (retry["reason"], retry["original"]["offset"]) == ("duplicate", 1)
    assert h.send("order", 1, T0, offset=1) == []  # the first order's order read again (a replay)
    assert h.send("payment", 1, T0, offset=1) == []

    [second] = h.send("order", 1, T0 + 75_200, offset=100, createTime=SECOND_RUN["createTime"])
    [again] = h.send("payment", 1, T0 + 75_300, offset=201, **SECOND_RUN)
    [first_again] = h.send("payment", 1, T0 + 75_400, offset=202)

    assert second["verdictId"] == "payment/0/99"
    assert (again["reason"], again["original"]["offset"]) == ("duplicate", 99)
    assert (first_again["reason"], first_again["original"]["offset"]) == ("duplicate", 1)
    assert h.send("payment", 1, T0 + 75_000, offset=99, **SECOND_RUN) == []  # the second's own record read again
    assert h.join.totals.replayed == 3
    assert [e["verdictId"] for e in h.out if "event" in e] == ["payment/0/1", "payment/0/99"]


def test_a_reused_order_id_whose_other_side_never_comes_gets_its_own_one_sided_verdict_and_then_late() -> None:
    h = Harness()
    h.pair(1, T0)
    h.send("payment", 1, T0 + 75_000, offset=99, **SECOND_RUN)

    [alone, _] = h.pair(2, T0 + 75_000 + WINDOW_MS + 1_000)
    [late] = h.send("order", 1, T0 + 75_000 + WINDOW_MS + 2_000, offset=300, createTime=SECOND_RUN["createTime"])

    assert (alone["orderId"], alone["verdictId"], alone["event"]["joinStatus"]) == (1, "payment/0/99", "payment_only")
    assert alone["reusedOrderId"]["previousVerdictId"] == "payment/0/1"
    assert alone["event"]["reusedOrderId"] is True
    assert (late["reason"], late["original"]["offset"]) == ("late", 99)


def test_the_missing_side_of_a_one_sided_order_stays_late_even_with_other_content() -> None:
    h = Harness()
    h.send("payment", 1, T0)
    h.pair(2, T0 + WINDOW_MS + 1_000)

    [late] = h.send("order", 1, T0 + WINDOW_MS + 2_000, offset=77, merchantId=7)

    assert late["reason"] == "late"
    assert h.join.totals.reused == 0


def test_a_reused_order_id_expires_at_its_own_deadline_even_before_the_joined_order_s_deadline() -> None:
    join, states = OrderJoin(WINDOW_MS, RETENTION_MS), DictPartitionStates()

    def send(kind: SideName, order_id: int, at: int, offset: int | None = None, **fields: Any) -> list[Any]:
        return join.process(side(kind, order_id, offset, at, **fields), at, states)

    def pair(order_id: int, at: int) -> list[Any]:
        return send("payment", order_id, at) + send("order", order_id, at)

    pair(1, T0 + 5_000)  # joined (the clock, kept in memory, knows): its deadline (T0 + 15 s) is still indexed
    pair(2, T0 + 5_000)
    send("payment", 1, T0, offset=99, **SECOND_RUN)  # stamped earlier: its deadline is T0 + 10 s

    [alone, _] = pair(3, T0 + WINDOW_MS + 1_500)

    assert (alone["verdictId"], alone["event"]["joinStatus"]) == ("payment/0/99", "payment_only")
    assert alone["decisionTimeMs"] == T0 + WINDOW_MS + 1_000


def test_a_second_record_of_the_side_an_open_order_holds_waits_and_starts_the_next_order_once_that_one_joins() -> None:
    h = Harness()
    h.send("payment", 1, T0, offset=10)

    assert h.send("payment", 1, T0 + 1_000, offset=99, **SECOND_RUN) == []  # waits behind the open order
    [first] = h.send("order", 1, T0 + 2_000, offset=11)
    [second] = h.send("order", 1, T0 + 3_000, offset=12, createTime=SECOND_RUN["createTime"])

    # first come, first served: the first order joins the first payment
    assert (first["verdictId"], first["provenance"]["order"]["offset"]) == ("payment/0/10", 11)
    assert first["event"]["reusedOrderId"] is False
    assert (second["verdictId"], second["provenance"]["order"]["offset"]) == ("payment/0/99", 12)
    assert second["reusedOrderId"] == {
        "previousVerdictId": "payment/0/10",
        "previousDecisionTimeMs": first["decisionTimeMs"],
        "differingFields": ["createTime", "payAmount"],
    }
    assert (h.join.totals.deadlettered, h.join.totals.reused) == (0, 1)


def test_a_waiting_record_whose_window_ran_out_meanwhile_is_decided_with_the_order_before_it_as_if_alone() -> None:
    h = Harness()
    h.send("payment", 1, T0, offset=10)
    h.send("payment", 1, T0 + 500, offset=99, **SECOND_RUN)  # its window ends in the same second as the first's
    h.send("payment", 1, T0 + 4_000, offset=98, payAmount=7.0)  # its window ends later

    [alone, waited, _] = h.pair(2, T0 + WINDOW_MS + 1_500)

    assert [(e["verdictId"], e["event"]["joinStatus"]) for e in (alone, waited)] == [
        ("payment/0/10", "payment_only"),
        ("payment/0/99", "payment_only"),
    ]
    # each decided when its own window ran out, not when the clock got there
    assert (alone["decisionTimeMs"], waited["decisionTimeMs"]) == (T0 + WINDOW_MS + 1_000, T0 + WINDOW_MS + 1_000)
    assert waited["reusedOrderId"]["previousVerdictId"] == "payment/0/10"
    [third] = h.send("order", 1, T0 + WINDOW_MS + 2_000, offset=20, merchantId=7)
    assert (third["verdictId"], third["event"]["joinStatus"]) == ("payment/0/98", "joined")
    assert third["reusedOrderId"]["previousVerdictId"] == "payment/0/99"


def test_retries_and_replays_of_a_waiting_record_are_recognised() -> None:
    h = Harness()
    h.send("payment", 1, T0, offset=10)
    h.send("payment", 1, T0 + 1_000, offset=99, **SECOND_RUN)

    [retry] = h.send("payment", 1, T0 + 1_500, offset=100, **SECOND_RUN)
    assert h.send("payment", 1, T0 + 1_000, offset=99, **SECOND_RUN) == []  # read again after a restart

    assert (retry["reason"], retry["original"]["offset"]) == ("duplicate", 99)
    assert h.join.totals.replayed == 1
    orders = h.send("order", 1, T0 + 2_000, offset=11) + h.send("order", 1, T0 + 2_500, offset=12, merchantId=7)
    assert [e["verdictId"] for e in orders] == ["payment/0/10", "payment/0/99"]


def test_past_a_bound_of_waiting_records_one_more_is_a_conflicting_duplicate_and_the_others_pair_in_order() -> None:
    h = Harness()
    h.send("payment", 1, T0, offset=10)
    for n in range(1, MAX_WAITING + 1):
        assert h.send("payment", 1, T0 + n, offset=10 + n, payAmount=float(n)) == []

    [conflict] = h.send("payment", 1, T0 + 100, offset=99, **SECOND_RUN)
    events = [
        e for n in range(MAX_WAITING + 1) for e in h.send("order", 1, T0 + 1_000 + n, offset=200 + n, merchantId=n)
    ]

    assert conflict["reason"] == "conflicting_duplicate"
    assert conflict["differingFields"] == ["createTime", "payAmount"]
    assert conflict["original"] == {"topic": "payment", "partition": 0, "offset": 10, "timestamp": T0}
    assert f"{MAX_WAITING} more orders" in conflict["error"]
    assert [e["verdictId"] for e in events] == [f"payment/0/{10 + n}" for n in range(MAX_WAITING + 1)]


def test_flush_decides_the_records_waiting_behind_an_open_order_too() -> None:
    h = Harness()
    h.send("order", 1, T0, offset=10)
    h.send("order", 1, T0 + 100, offset=11, merchantId=7)

    flushed = cast(list[Enriched], h.join.flush(h.states))

    assert [(e["verdictId"], e["event"]["joinStatus"]) for e in flushed] == [
        ("order/0/10", "order_only"),
        ("order/0/11", "order_only"),
    ]
    assert h.join.flush(h.states) == []


def test_each_reuse_names_the_order_before_it_and_an_entry_keeps_a_bounded_number_of_earlier_orders() -> None:
    h = Harness()
    h.pair(1, T0)
    events = []
    for n in range(1, MAX_EARLIER + 3):
        at = T0 + n * 1_000
        events += h.send("payment", 1, at, offset=1000 + n, payAmount=float(n)) + h.send(
            "order", 1, at, offset=2000 + n, merchantId=n
        )

    assert [e["verdictId"] for e in events] == [f"payment/0/{1000 + n}" for n in range(1, MAX_EARLIER + 3)]
    assert [e["reusedOrderId"]["previousVerdictId"] for e in events] == [
        "payment/0/1",
        *(f"payment/0/{1000 + n}" for n in range(1, MAX_EARLIER + 2)),
    ]
    entry = h.states.for_key(1).get(JOIN_ENTRY)
    assert len(entry["earlier"]) == MAX_EARLIER
    # the newest earlier orders are kept: a retry of one is still a duplicate
    [retry] = h.send("payment", 1, T0 + 20_000, offset=5000, payAmount=float(MAX_EARLIER))
    assert (retry["reason"], retry["original"]["offset"]) == ("duplicate", 1000 + MAX_EARLIER)


def test_a_reused_order_id_is_remembered_for_the_retention_after_its_own_decision_not_the_first_ones() -> None:
    h = Harness()
    h.pair(1, T0)
    reuse(h, T0 + RETENTION_MS - 5_000, 99, 100)

    h.pair(2, T0 + RETENTION_MS + 5_000)  # the first order's forgetting is due: it must not take the second
    [retry] = h.send("payment", 1, T0 + RETENTION_MS + 6_000, offset=300, **SECOND_RUN)
    assert (retry["reason"], retry["original"]["offset"]) == ("duplicate", 99)

    h.pair(3, T0 + 2 * RETENTION_MS + 5_000)  # past the second order's retention: forgotten
    [third] = reuse(h, T0 + 2 * RETENTION_MS + 6_000, 400, 401)
    assert third["verdictId"] == "payment/0/400"
    assert "reusedOrderId" not in third  # after the retention a reused orderId is an order like any other


def test_a_decided_order_under_a_reused_order_id_is_rebuilt_from_the_entry_of_the_one_after_it() -> None:
    h = Harness()
    [first] = h.pair(1, T0)
    h.send("payment", 1, T0 + 75_000, offset=99, **SECOND_RUN)
    entry = h.states.for_key(1).get(JOIN_ENTRY)

    rebuilt = decided_event(entry, "payment/0/1", first["decisionTimeMs"])
    assert rebuilt == first
    assert decided_event(entry, "payment/0/99", 0) is None  # open: not decided yet

    [second] = h.send("order", 1, T0 + 75_500, offset=100, createTime=SECOND_RUN["createTime"])
    entry = h.states.for_key(1).get(JOIN_ENTRY)
    assert decided_event(entry, "payment/0/99", second["decisionTimeMs"]) == second
    assert decided_event(entry, "payment/0/1", first["decisionTimeMs"]) == first


def test_an_extra_field_named_reused_order_id_does_not_mark_an_order() -> None:
    h = Harness()
    h.send("payment", 1, T0, reusedOrderId=True)
    [event] = h.send("order", 1, T0)

    assert event["event"]["reusedOrderId"] is False
    assert "reusedOrderId" not in event


def test_an_ordinary_order_reads_its_entry_only_at_its_second_side_and_its_entry_notes_its_forgetting() -> None:
    join, states = OrderJoin(WINDOW_MS, RETENTION_MS, idle_ms=None), ReadCountingStates()
    join.process(side("payment", 1, timestamp=T0), T0, states)
    join.process(side("order", 1, timestamp=T0), T0, states)

    # the payment, of an orderId never scheduled, reads no entry (``seen.py``); the order reads it once
    assert states.read.count(1) == 1
    entry = states.for_key(1).get(JOIN_ENTRY)
    forget_bucket = (T0 + RETENTION_MS) // 1000 + 1
    assert (entry["decidedMs"], entry["forgetBucket"]) == (T0, forget_bucket)
    # listed with the minute's: the list of the minute's last second
    assert entry["forgetList"] == -(-forget_bucket // FORGET_LIST_S) * FORGET_LIST_S >= forget_bucket
    assert 1 in states.for_key(INDEX_PREFIX).get(-entry["forgetList"])


def test_the_same_input_record_read_again_is_a_replay_and_gives_nothing() -> None:
    h = Harness()
    h.send("payment", 1, T0, offset=5)

    assert h.send("payment", 1, T0, offset=5) == []  # pending: read again after a restart
    [event] = h.send("order", 1, T0 + 1, offset=6)
    assert h.send("order", 1, T0 + 1, offset=6) == []  # decided: read again after a restart
    assert event["verdictId"] == "payment/0/5"
    assert h.join.totals.replayed == 2


def test_the_missing_side_arriving_after_a_one_sided_verdict_is_dead_lettered_as_late() -> None:
    h = Harness()
    h.send("payment", 1, T0)
    h.pair(2, T0 + WINDOW_MS + 1_000)

    [late] = h.send("order", 1, T0 + WINDOW_MS + 2_000, offset=77)

    assert late["reason"] == "late"
    assert late["original"]["topic"] == "payment"
    assert "payment_only" in late["error"]
    events = [(e["orderId"], e["event"]["joinStatus"]) for e in h.out if "event" in e]
    assert events == [(1, "payment_only"), (2, "joined")]


def test_after_the_retention_a_reused_order_id_is_a_new_order_with_its_own_verdict_id() -> None:
    h = Harness()
    [first] = h.pair(1, T0)
    h.pair(2, T0 + RETENTION_MS + 2_000)

    [second] = h.send("payment", 1, T0 + RETENTION_MS + 3_000, offset=500) + h.send(
        "order", 1, T0 + RETENTION_MS + 3_000, offset=501
    )

    assert second["orderId"] == first["orderId"] == 1
    assert (first["verdictId"], second["verdictId"]) == ("payment/0/1", "payment/0/500")


def test_flush_gives_every_waiting_side_its_one_sided_event() -> None:
    h = Harness()
    h.pair(1, T0)
    h.send("payment", 2, T0 + 100)
    h.send("order", 3, T0 + 200)

    flushed = cast(list[Enriched], h.join.flush(h.states))

    assert sorted((e["orderId"], e["event"]["joinStatus"]) for e in flushed) == [(2, "payment_only"), (3, "order_only")]
    assert h.join.flush(h.states) == []


def test_payment_without_order_is_emitted_alone_after_the_window() -> None:
    h = Harness()
    h.send("payment", 1, T0)

    assert [e["orderId"] for e in h.pair(2, T0 + WINDOW_MS - 1_000)] == [2]
    [orphan, _joined] = h.pair(3, T0 + WINDOW_MS + 1_000)

    assert orphan["orderId"] == 1
    assert orphan["event"]["joinStatus"] == "payment_only"
    assert orphan["order"] is None
    assert orphan["provenance"]["order"] is None
    assert "merchantId" not in orphan["event"]


def test_order_without_payment_is_emitted_as_order_only() -> None:
    h = Harness()
    h.send("order", 7, T0)

    [orphan, _] = h.pair(8, T0 + WINDOW_MS + 1_000)

    assert orphan["event"]["joinStatus"] == "order_only"
    assert "payAmount" not in orphan["event"]


def test_decided_orders_are_forgotten_after_the_retention() -> None:
    h = Harness()
    h.pair(1, T0)
    h.pair(2, T0 + RETENTION_MS + 2_000)
    # forgotten once stream time passes the forgetting list of the minute its retention ends in
    h.pair(3, T0 + 2 * RETENTION_MS + FORGET_LIST_S * 1_000 + 5_000)

    assert h.states.live_keys() == {3, INDEX_PREFIX}


def test_a_jump_in_stream_time_expires_everything_due_without_scanning_empty_years() -> None:
    h = Harness()
    for order_id in range(100):
        h.send("payment", order_id, T0 + order_id * 100)

    h.send("order", 1000, T0)
    h.pair(1001, T0 + 10 * 365 * 24 * 3600 * 1000)

    orphans = [e for e in h.out if e["event"]["joinStatus"] == "payment_only"]
    assert sorted(e["orderId"] for e in orphans) == list(range(100))


def test_a_late_record_older_than_the_clock_still_expires() -> None:
    h = Harness()
    h.pair(1, T0 + 100_000)
    h.send("payment", 2, T0)  # far behind stream time: its deadline already passed

    [orphan] = [e for e in h.pair(3, T0 + 102_000) if e["orderId"] == 2]

    assert orphan["event"]["joinStatus"] == "payment_only"


def test_a_backlog_on_one_input_does_not_expire_the_other_side_early() -> None:
    h = Harness()
    # a replay: a minute of payments is read before any of their orders
    for order_id in range(60):
        h.send("payment", order_id, T0 + order_id * 1_000)
    for order_id in range(60):
        h.send("order", order_id, T0 + order_id * 1_000)

    assert [e["event"]["joinStatus"] for e in h.out] == ["joined"] * 60


def test_an_order_side_that_never_advances_holds_expiry_back() -> None:
    h = Harness()
    h.send("payment", 1, T0)
    for order_id in range(2, 40):
        h.send("payment", order_id, T0 + order_id * 1_000)

    assert h.out == []


def test_a_partition_read_ahead_of_the_others_does_not_expire_their_partners() -> None:
    join = OrderJoin(WINDOW_MS, RETENTION_MS, partitions={"payment": 2, "order": 2})
    states = DictPartitionStates()
    out: list[Any] = []
    # payments of both partitions, then order partition 0 read to the end before order partition 1
    for order_id in range(40):
        out += join.process(
            side("payment", order_id, 0, T0 + order_id * 1_000, order_id % 2), T0 + order_id * 1_000, states
        )
    for part in (0, 1):
        for order_id in range(part, 40, 2):
            at = T0 + order_id * 1_000
            out += join.process(side("order", order_id, 0, at, part), at, states)

    assert sorted(e["orderId"] for e in out) == list(range(40))
    assert {e["event"]["joinStatus"] for e in out} == {"joined"}


def test_an_input_partition_idle_longer_than_idle_ms_stops_holding_expiry_back() -> None:
    wall = FakeWallClock()
    join = OrderJoin(WINDOW_MS, RETENTION_MS, partitions={"payment": 1, "order": 2}, idle_ms=30_000, wall_clock=wall)
    states = DictPartitionStates()
    out: list[Any] = []

    def send(kind: SideName, order_id: int, part: int, at: int) -> None:
        out.extend(join.process(side(kind, order_id, None, at, part), at, states))

    send("payment", 999, 0, T0)  # its order never comes
    for second in range(1, 60):
        wall.now = float(second)
        # orders only ever arrive on order partition 0: partition 1 is idle
        send("payment", second, 0, T0 + second * 1_000)
        send("order", second, 0, T0 + second * 1_000)
        if second == 20:
            assert [e["orderId"] for e in out if e["event"]["joinStatus"] != "joined"] == []

    one_sided = [e for e in out if e["event"]["joinStatus"] != "joined"]
    assert [(e["orderId"], e["event"]["joinStatus"]) for e in one_sided] == [(999, "payment_only")]


def test_decision_time_is_the_later_side_for_a_joined_order_and_the_end_of_the_window_second_for_one_side() -> None:
    h = Harness()
    h.send("order", 1, T0 + 250)
    [joined] = h.send("payment", 1, T0 + 900)
    h.send("payment", 2, T0 + 1_300)  # its order never comes
    h.pair(3, T0 + WINDOW_MS + 2_500)

    [alone] = [e for e in h.out if e["orderId"] == 2]
    assert joined["decisionTimeMs"] == T0 + 900
    assert alone["decisionTimeMs"] == T0 + WINDOW_MS + 2_000  # deadline T0 + 11_300, in the second ending at 12 s


def test_the_watermark_promises_the_lowest_decision_time_still_to_come() -> None:
    join, states = OrderJoin(WINDOW_MS, RETENTION_MS, idle_ms=None), DictPartitionStates()
    assert join.watermark_ms() is None

    out: list[Any] = join.process(side("payment", 1, timestamp=T0 + 400), T0 + 400, states)
    assert join.watermark_ms() is None  # nothing read from the order input yet: anything may come

    out += join.process(side("order", 2, timestamp=T0 + 300), T0 + 300, states)
    assert join.watermark_ms() == T0 + 300  # the lowest of the highest timestamps of each input

    for at in range(T0 + 1_000, T0 + 20_000, 700):
        out += join.process(side("payment", at, timestamp=at), at, states)
        out += join.process(side("order", at, timestamp=at), at, states)
        watermark = join.watermark_ms()
        assert watermark is not None
        # every event emitted later decides at or after the promise
        restarted = OrderJoin(WINDOW_MS, RETENTION_MS, idle_ms=None)  # what the state holds, flushed apart
        later = [e["decisionTimeMs"] for e in cast(list[Enriched], restarted.flush(_copy(states)))]
        assert all(t >= watermark for t in later), (at, watermark, later)
    assert {e["event"]["joinStatus"] for e in out} >= {"payment_only", "order_only", "joined"}


def test_a_still_input_holds_the_promise_until_it_has_been_idle_for_idle_ms_then_no_longer() -> None:
    wall = FakeWallClock()
    join = OrderJoin(WINDOW_MS, RETENTION_MS, partitions={"payment": 1, "order": 2}, idle_ms=30_000, wall_clock=wall)
    states = DictPartitionStates()
    join.process(side("order", 1, timestamp=T0, partition=1), T0, states)  # order/1: then nothing more
    promises = []
    for second in range(1, 61):
        wall.now = float(second)
        at = T0 + second * 1_000
        join.process(side("payment", second, timestamp=at), at, states)
        join.process(side("order", second, timestamp=at), at, states)
        promises.append(join.watermark_ms())

    # held at order/1's last record while it may still deliver, for 30 s of wall time from when it began holding
    # the others back (second 1: when it was read, the other inputs had not been); then the others lead
    assert promises[:30] == [T0] * 30
    assert promises[30:] == [T0 + second * 1_000 for second in range(31, 61)]


def _copy(states: DictPartitionStates) -> DictPartitionStates:
    import copy

    other = DictPartitionStates()
    other.by_key = copy.deepcopy(states.by_key)
    return other


def test_a_quiet_stream_follows_the_wall_clock_so_its_last_orders_get_their_one_sided_verdicts() -> None:
    wall = FakeWallClock()
    join = OrderJoin(WINDOW_MS, RETENTION_MS, idle_ms=30_000, wall_clock=wall)
    states = DictPartitionStates()
    join.process(side("payment", 1, timestamp=T0), T0, states)
    join.process(side("order", 2, timestamp=T0 + 500), T0 + 500, states)

    wall.now = 29.0
    assert join.tick(states) == []  # inputs not idle yet
    assert join.watermark_ms() == T0

    wall.now = 35.0  # idle for 35 s: stream time is the last record plus 35 s, past both windows
    expired = join.tick(states)
    assert [(e["orderId"], e["event"]["joinStatus"]) for e in expired] == [(1, "payment_only"), (2, "order_only")]
    assert join.tick(states) == []
    watermark = join.watermark_ms()
    assert watermark is not None
    assert watermark > max(e["decisionTimeMs"] for e in expired)


def test_with_no_consumer_lag_the_stream_is_quiet_after_two_seconds_and_promises_what_it_has_read() -> None:
    wall = FakeWallClock()
    join = OrderJoin(WINDOW_MS, RETENTION_MS, idle_ms=30_000, wall_clock=wall)
    states = DictPartitionStates()
    join.process(side("payment", 1, timestamp=T0), T0, states)
    [joined] = cast(list[Enriched], join.process(side("order", 1, timestamp=T0 + 500), T0 + 500, states))
    assert join.watermark_ms() == T0  # the payment input may still bring something from T0 on

    wall.now = 1.5
    assert join.tick(states, settled=lambda: True) == []
    assert join.watermark_ms() == T0
    wall.now = 3.0
    assert join.tick(states, settled=lambda: False) == []  # lagging: a backlog may still hold older records
    assert join.watermark_ms() == T0
    join.tick(states, settled=lambda: True)
    assert join.watermark_ms() == joined["decisionTimeMs"] + 1  # just past the last event: it can be released
    wall.now = 9.0
    join.tick(states, settled=lambda: True)
    assert join.watermark_ms() == joined["decisionTimeMs"] + 1  # and no further while nothing happens

    join.process(side("payment", 2, timestamp=T0 + 8_000), T0 + 8_000, states)  # records again: no longer quiet
    assert join.watermark_ms() == T0 + 500


def test_the_clock_is_kept_in_memory_by_the_partitions_join_and_read_again_by_the_next_one() -> None:
    join, states = OrderJoin(WINDOW_MS, RETENTION_MS, idle_ms=None), DictPartitionStates()
    join.process(side("payment", 1, timestamp=T0), T0, states)
    join.process(side("order", 2, timestamp=T0), T0, states)
    before = _copy(states)  # the state as a restart would recover it
    stored = states.for_key(INDEX_PREFIX).get("clock")
    assert stored is not None

    states.for_key(INDEX_PREFIX).delete("clock")  # the same join does not read it again
    join.process(side("payment", 3, timestamp=T0), T0, states)  # stream time unmoved: nothing to write
    assert states.for_key(INDEX_PREFIX).get("clock") is None

    # the join of a new incarnation (after an assignment) reads the stored clock: stream time goes on from there
    after = OrderJoin(WINDOW_MS, RETENTION_MS, idle_ms=None)
    out: list[Any] = after.process(side("payment", 4, timestamp=T0 + 20_000), T0 + 20_000, before)
    out += after.process(side("order", 5, timestamp=T0 + 20_000), T0 + 20_000, before)
    assert {(e["orderId"], e["event"]["joinStatus"]) for e in out} == {(1, "payment_only"), (2, "order_only")}


def test_a_joined_order_is_not_read_again_neither_at_its_deadline_nor_when_it_is_forgotten() -> None:
    join, states = OrderJoin(WINDOW_MS, RETENTION_MS, idle_ms=None), ReadCountingStates()
    join.process(side("payment", 1, timestamp=T0), T0, states)
    join.process(side("order", 1, timestamp=T0), T0, states)
    states.read.clear()

    # past the deadline, then past the retention and the end of its minute
    for at in range(T0 + 1_000, T0 + RETENTION_MS + FORGET_LIST_S * 1_000 + 2_000, 1_000):
        join.process(side("payment", at, timestamp=at), at, states)
        join.process(side("order", at, timestamp=at), at, states)

    assert states.read.count(1) == 0  # forgotten after the retention without a look
    assert 1 not in states.live_keys()


def test_a_forgetting_scheduled_with_the_deadlines_by_an_earlier_release_still_happens() -> None:
    join, states = OrderJoin(WINDOW_MS, RETENTION_MS, idle_ms=None), DictPartitionStates()
    join.process(side("payment", 1, timestamp=T0), T0, states)
    join.process(side("order", 1, timestamp=T0), T0, states)
    index, entry = states.for_key(INDEX_PREFIX), states.for_key(1).get(JOIN_ENTRY)
    forget_bucket = (T0 + RETENTION_MS) // 1000 + 1
    # the old layout: in the deadline list of its second, and the entry notes neither bucket nor list
    index.set(forget_bucket, [*(index.get(forget_bucket) or []), *index.get(-entry["forgetList"])])
    index.delete(-entry["forgetList"])
    states.for_key(1).set(JOIN_ENTRY, {k: v for k, v in entry.items() if k not in ("forgetBucket", "forgetList")})

    join = OrderJoin(WINDOW_MS, RETENTION_MS, idle_ms=None)  # this release, restarted on that state
    for at in range(T0 + 1_000, T0 + RETENTION_MS + 3_000, 1_000):
        join.process(side("payment", at, timestamp=at), at, states)
        join.process(side("order", at, timestamp=at), at, states)
    assert 1 not in states.live_keys()


def test_forgetting_listed_per_second_by_the_last_release_still_happens_in_its_second() -> None:
    join, states = OrderJoin(WINDOW_MS, RETENTION_MS, idle_ms=None), DictPartitionStates()
    join.process(side("payment", 1, timestamp=T0), T0, states)
    join.process(side("order", 1, timestamp=T0), T0, states)
    index, entry = states.for_key(INDEX_PREFIX), states.for_key(1).get(JOIN_ENTRY)
    forget_bucket = entry["forgetBucket"]
    # the last release's layout: a list per second, an entry without ``forgetList``, a clock without its limit
    index.set(-forget_bucket, index.get(-entry["forgetList"]))
    index.delete(-entry["forgetList"])
    states.for_key(1).set(JOIN_ENTRY, {k: v for k, v in entry.items() if k != "forgetList"})
    clock = index.get("clock")
    del clock["secondListsUntil"]
    index.set("clock", clock)

    join = OrderJoin(WINDOW_MS, RETENTION_MS, idle_ms=None)  # this release, restarted on that state
    for at in range(T0 + 1_000, forget_bucket * 1_000 + 1_000, 1_000):
        join.process(side("payment", at, timestamp=at), at, states)
        join.process(side("order", at, timestamp=at), at, states)
    assert 1 not in states.live_keys()  # in its second, as then
    assert index.get(-forget_bucket) is None


def test_an_order_id_reused_after_its_second_of_forgetting_and_before_its_minute_is_a_new_order() -> None:
    h = Harness()
    [first] = h.pair(1, T0)
    entry = h.states.for_key(1).get(JOIN_ENTRY)
    assert entry["forgetList"] > entry["forgetBucket"] + 1  # the minute's list is due later than its second
    passed = entry["forgetBucket"] * 1_000 + 500
    h.pair(2, passed)  # stream time past the second of forgetting: order 1 is forgotten, its list not yet due

    h.send("payment", 1, passed + 100, offset=50)
    [second] = h.send("order", 1, passed + 100, offset=50)
    assert second["event"]["reusedOrderId"] is False  # a new order like any other, not a next generation
    assert second["verdictId"] != first["verdictId"]
    later = entry["forgetList"] * 1_000 + 1_000
    h.pair(3, later)  # the minute's list comes due: the new order's entry is not deleted with it
    assert h.states.for_key(1).get(JOIN_ENTRY)["decidedMs"] == passed + 100


def test_a_join_partition_not_read_for_a_while_does_not_find_its_inputs_idle() -> None:
    wall = FakeWallClock()
    join, states = OrderJoin(WINDOW_MS, RETENTION_MS, idle_ms=30_000, wall_clock=wall), DictPartitionStates()
    join.process(side("payment", 1, timestamp=T0), T0, states)
    join.process(side("order", 2, timestamp=T0), T0, states)

    wall.now = 40.0  # nothing read for 40 s (the consumer was busy elsewhere); both inputs' records queue here
    # the payment input was read ahead; the order input is not idle, its records are just not read yet
    assert join.process(side("payment", 3, timestamp=T0 + 20_000), T0 + 20_000, states) == []
    [joined] = cast(list[Enriched], join.process(side("order", 1, timestamp=T0 + 1_000), T0 + 1_000, states))
    assert (joined["orderId"], joined["event"]["joinStatus"]) == (1, "joined")


def test_a_join_partition_behind_on_its_own_input_is_not_quiet() -> None:
    wall = FakeWallClock()
    join, states = OrderJoin(WINDOW_MS, RETENTION_MS, idle_ms=30_000, wall_clock=wall), DictPartitionStates()
    join.process(side("payment", 1, timestamp=T0), T0, states)
    join.process(side("order", 2, timestamp=T0), T0, states)

    wall.now = 60.0
    assert join.tick(states, behind=lambda: True) == []  # unread records of its own: not quiet
    assert len(join.tick(states, behind=lambda: False)) == 2  # nothing unread: quiet, the windows ran out


def _reported_join(wall: FakeWallClock) -> OrderJoin:
    """Two order partitions, read (in the scenario below) by two instances that report as readers do."""
    partitions = {"payment": 1, "order": 2}
    return OrderJoin(WINDOW_MS, RETENTION_MS, partitions, idle_ms=30_000, wall_clock=wall, readers_report=True)


def test_with_readers_reporting_an_input_whose_reader_is_behind_holds_expiry_back_however_long() -> None:
    wall = FakeWallClock()
    join, states = _reported_join(wall), DictPartitionStates()
    out: list[Any] = []
    out += join.process(side("payment", 999, None, T0, 0), T0, states)  # its order is on order/1, not read yet
    for second in range(1, 120):
        wall.now = float(second)
        out += join.process(side("payment", second, None, T0 + second * 1_000, 0), T0 + second * 1_000, states)
        out += join.process(side("order", second, None, T0 + second * 1_000, 0), T0 + second * 1_000, states)
        # order/1's reader (another instance, on a backlog) keeps saying it has not read everything yet
        out += join.progress("order/1", T0, states, caught_up=False)
    assert [e["orderId"] for e in out if e["event"]["joinStatus"] != "joined"] == []

    [joined] = cast(list[Enriched], join.process(side("order", 999, None, T0 + 500, 1), T0 + 500, states))
    assert (joined["orderId"], joined["event"]["joinStatus"]) == (999, "joined")


def test_with_readers_reporting_an_input_whose_reader_is_caught_up_is_idle_after_idle_ms() -> None:
    wall = FakeWallClock()
    join, states = _reported_join(wall), DictPartitionStates()
    out: list[Any] = []
    out += join.process(side("payment", 999, None, T0, 0), T0, states)  # its order never comes
    for second in range(1, 60):
        wall.now = float(second)
        out += join.process(side("payment", second, None, T0 + second * 1_000, 0), T0 + second * 1_000, states)
        out += join.process(side("order", second, None, T0 + second * 1_000, 0), T0 + second * 1_000, states)
        # nobody writes to order/1: its reader has read everything, and repeats that every second
        assert join.progress("order/1", -1, states, caught_up=True) == []
        if second == 20:
            assert [e["orderId"] for e in out if e["event"]["joinStatus"] != "joined"] == []
    one_sided = [(e["orderId"], e["event"]["joinStatus"]) for e in out if e["event"]["joinStatus"] != "joined"]
    assert one_sided == [(999, "payment_only")]


def test_with_readers_reporting_a_caught_up_word_not_repeated_expires() -> None:
    wall = FakeWallClock()
    join, states = _reported_join(wall), DictPartitionStates()
    out: list[Any] = []
    out += join.process(side("payment", 999, None, T0, 0), T0, states)
    join.progress("order/1", -1, states, caught_up=True)  # then its reader went silent (stuck, or gone)
    for second in range(1, 60):
        wall.now = float(second)
        out += join.process(side("payment", second, None, T0 + second * 1_000, 0), T0 + second * 1_000, states)
        out += join.process(side("order", second, None, T0 + second * 1_000, 0), T0 + second * 1_000, states)
    assert [e["orderId"] for e in out if e["event"]["joinStatus"] != "joined"] == []
    assert join.watermark_ms() is None  # order/1 was never read and is not idle: nothing can be promised


def test_with_readers_reporting_the_stream_is_quiet_only_when_every_reader_has_read_everything() -> None:
    wall = FakeWallClock()
    join, states = _reported_join(wall), DictPartitionStates()
    join.process(side("payment", 1, None, T0, 0), T0, states)
    join.process(side("order", 2, None, T0, 0), T0, states)
    for second in range(1, 60):  # every reader repeats its word each second; order/1's is on a backlog
        wall.now = float(second)
        join.progress("payment/0", T0, states, caught_up=True)
        join.progress("order/0", T0, states, caught_up=True)
        join.progress("order/1", T0, states, caught_up=False)
        assert join.tick(states) == []
    join.progress("order/1", T0, states, caught_up=True)  # it is done: nothing more to come
    assert sorted(e["orderId"] for e in join.tick(states)) == [1, 2]


def test_a_partition_taken_over_with_nothing_new_to_read_goes_on_from_its_stored_clock() -> None:
    # One instance read everything and left a waiting payment in the state; another takes the partition over,
    # and its readers have nothing new to read, so their progress says -1 (nothing read since they got it).
    wall = FakeWallClock()
    states = DictPartitionStates()
    before = _reported_join(wall)
    before.process(side("payment", 999, None, T0, 0), T0, states)  # its order never comes
    before.process(side("payment", 1, None, T0 + 5_000, 0), T0 + 5_000, states)
    [joined] = cast(list[Enriched], before.process(side("order", 1, None, T0 + 5_432, 0), T0 + 5_432, states))
    before.process(side("order", 2, None, T0 + 5_000, 1), T0 + 5_000, states)

    after, out = _reported_join(wall), []
    for second in range(1, 60):
        wall.now = float(second)
        for source in after.inputs:
            assert after.progress(source, -1, states, caught_up=True) == []
        out += after.tick(states)
    assert [(e["orderId"], e["event"]["joinStatus"]) for e in out] == [(999, "payment_only"), (2, "order_only")]
    # and the rule groups are promised everything emitted, the other process's last joined order too
    promise = after.watermark_ms()
    assert promise is not None
    assert promise > max(e["decisionTimeMs"] for e in [*out, joined])


def test_a_join_partition_whose_first_record_is_far_ahead_does_not_start_its_clock_there() -> None:
    # With several partitions the first record a join partition gets can be the progress of an input partition
    # read far ahead of the others. Its clock must not start there: a side still to come from a slower input
    # would be scheduled after everything promised meanwhile, and reach the rules late.
    join = OrderJoin(WINDOW_MS, RETENTION_MS, partitions={"payment": 2, "order": 1}, idle_ms=None)
    states = DictPartitionStates()
    out: list[Any] = []
    promised: list[tuple[int, int]] = []  # (promise, events emitted before it)
    out += join.progress("payment/1", T0 + 100_000, states)
    out += join.process(side("payment", 1, None, T0, 0), T0, states)  # its order never comes
    for second in range(1, 120):
        at = T0 + second * 1_000
        out += join.progress("payment/0", at, states)
        out += join.progress("order/0", at, states)
        promise = join.watermark_ms()
        if promise is not None:
            promised.append((promise, len(out)))
    [expired] = [e for e in out if e["orderId"] == 1]
    assert expired["decisionTimeMs"] == T0 + 11_000
    at = out.index(expired)
    assert all(promise <= expired["decisionTimeMs"] for promise, emitted in promised if emitted <= at)


def test_the_rules_see_each_schemas_fields_from_its_own_side_and_extras_only_under_other_names() -> None:
    spoofing_payment = {**PAYMENT, "category": 5, "merchantId": "x", "note": "p", "shared": "p"}
    spoofing_order = {**ORDER, "payAmount": "0", "provinceId": [1], "createTime": ORDER["createTime"], "shared": "o"}

    fields = rule_fields(spoofing_payment, spoofing_order)

    assert fields == {**ORDER, **PAYMENT, "note": "p", "shared": "p"}
    assert rule_fields(spoofing_payment, None) == {**PAYMENT, "note": "p", "shared": "p"}  # no category, no merchant
    assert rule_fields(None, spoofing_order) == {**ORDER, "shared": "o"}  # no payAmount, no provinceId
    assert rule_fields(PAYMENT, ORDER) == {**ORDER, **PAYMENT}  # createTime from the payment


def test_a_sparse_stream_reads_only_the_lists_it_made_and_decides_as_a_join_that_reads_every_second() -> None:
    """Orders seconds apart: the clock (in memory for the partition's join) knows which seconds got a deadline or
    forgetting list, so the empty seconds between them are not read. What is decided, forgotten and stored is the
    same as with a clock read from the state for every record (a new join for every record: every second read)."""

    def run(states: DictPartitionStates, fresh: bool) -> list[Any]:
        join, out = OrderJoin(WINDOW_MS, RETENTION_MS, idle_ms=None), []

        def joined() -> OrderJoin:
            return OrderJoin(WINDOW_MS, RETENTION_MS, idle_ms=None) if fresh else join

        for n in range(60):
            at = T0 + n * 7_000
            order_id = n % 25  # reused after the retention: forgotten by then, each a new order
            out += joined().process(side("payment", order_id, offset=n, timestamp=at), at, states)
            if n % 5:  # every fifth order one-sided: decided at its deadline
                out += joined().process(side("order", order_id, offset=n, timestamp=at + 3), at + 3, states)
        return out

    sparse, every = ReadCountingStates(), ReadCountingStates()
    decided = run(sparse, fresh=False)
    assert decided == run(every, fresh=True)
    assert len(sparse.read) < len(every.read)  # the empty seconds were not read
    assert sparse.by_key == every.by_key
    assert len(decided) == 60
    assert {e["event"]["joinStatus"] for e in decided} == {"joined", "payment_only"}
    # at most a deadline list and a forgetting list read per order, against two reads for every second
    assert sparse.read.count(INDEX_PREFIX) <= 2 * 60 + 5 < every.read.count(INDEX_PREFIX) / 3


def test_a_decided_order_whose_event_still_waits_downstream_is_forgotten_once_it_is_released() -> None:
    h = Harness()
    waiting = {1}
    h.join.holds = lambda order_id: order_id in waiting  # as the chain's reorder buffer says
    h.pair(1, T0)
    listed = h.states.for_key(1).get(JOIN_ENTRY)["forgetList"]
    past = listed * 1_000 + 1_000
    h.pair(2, past)  # past its second of forgetting and its minute's list: its event still waits
    kept = h.states.for_key(1).get(JOIN_ENTRY)
    assert kept is not None
    assert kept["forgetBucket"] > listed  # forgotten later instead
    assert h.send("payment", 1, past + 10, offset=1) == []  # its record read again: still a replay
    assert h.join.totals.replayed == 1

    waiting.clear()  # released
    h.pair(3, kept["forgetList"] * 1_000 + 1_000)
    assert h.states.for_key(1).get(JOIN_ENTRY) is None
    assert all(1 not in ids for key, ids in h.states.by_key[INDEX_PREFIX].items() if key != "clock")


def test_an_order_id_that_comes_again_past_its_second_while_its_event_waits_downstream_is_not_a_new_order() -> None:
    h = Harness()
    h.join.holds = lambda order_id: order_id == 1
    h.pair(1, T0)
    passed = h.states.for_key(1).get(JOIN_ENTRY)["forgetBucket"] * 1_000 + 500
    h.pair(2, passed)  # past its second, before its minute's list

    assert h.send("payment", 1, passed + 100, offset=1) == []  # its record read again: a replay, as then
    assert h.join.totals.replayed == 1
    entry = h.states.for_key(1).get(JOIN_ENTRY)
    assert entry["forgetBucket"] > passed // 1_000  # forgotten later, in one list only
    lists = [ids for key, ids in h.states.by_key[INDEX_PREFIX].items() if key != "clock" and key < 0 and 1 in ids]
    assert len(lists) == 1


def test_a_shorter_quiet_time_lets_a_slow_streams_last_order_out_sooner() -> None:
    # A stream of an order every few seconds: each verdict waits for the quiet time, which the setting shortens.
    wall = FakeWallClock()
    join = OrderJoin(WINDOW_MS, RETENTION_MS, idle_ms=30_000, wall_clock=wall, quiet_ms=300)
    states = DictPartitionStates()
    join.process(side("payment", 1, timestamp=T0), T0, states)
    [joined] = cast(list[Enriched], join.process(side("order", 1, timestamp=T0 + 500), T0 + 500, states))

    wall.now = 0.2
    join.tick(states, settled=lambda: True)
    assert join.watermark_ms() == T0  # still within the quiet time
    wall.now = 0.4
    join.tick(states, settled=lambda: True)
    assert join.watermark_ms() == joined["decisionTimeMs"] + 1  # quiet after 0.3 s, not 2 s


def test_event_time_is_the_written_utc_time_in_milliseconds_with_a_fraction_rounded_down() -> None:
    assert event_time_ms("2023-11-14 22:13:20") == 1_700_000_000_000
    assert event_time_ms("2023-11-14 22:13:20.5") == 1_700_000_000_500
    assert event_time_ms("2023-11-14 22:13:20.123999") == 1_700_000_000_123
    assert event_time_ms("1970-01-01 00:00:00.000") == 0
    assert event_time_ms("2004-03-01 12:00:00.001") == 1_078_142_400_001  # a float timestamp lost this ms


def test_a_join_opened_on_stored_state_reads_every_first_side_until_stream_time_passes_the_lists_it_found() -> None:
    first = OrderJoin(WINDOW_MS, RETENTION_MS, idle_ms=None)
    stored = ReadCountingStates()
    first.process(side("payment", 1, timestamp=T0), T0, stored)
    first.process(side("order", 1, timestamp=T0), T0, stored)

    # a new incarnation (a restart, an assignment): an orderId decided before it is looked for, and found
    join, at = OrderJoin(WINDOW_MS, RETENTION_MS, idle_ms=None), T0 + 1_000
    [repeat] = cast(list[Any], join.process(side("payment", 1, offset=50, timestamp=at), at, stored))
    assert (repeat["reason"], repeat["original"]["offset"]) == ("duplicate", 1)
    join.process(side("payment", 2, timestamp=at), at, stored)
    assert stored.read.count(2) == 1  # a new orderId too, as long as entries from before may be in the state

    # once stream time has passed every list the stored clock knew, order 1 is forgotten: a new orderId is not read
    later = T0 + RETENTION_MS + 2 * 60_000
    join.process(side("payment", 3, timestamp=later), later, stored)
    join.process(side("order", 3, timestamp=later), later, stored)
    assert stored.for_key(1).get(JOIN_ENTRY) is None
    join.process(side("payment", 4, timestamp=later), later, stored)
    assert stored.read.count(4) == 0


def test_with_small_filter_generations_a_repeat_and_a_late_side_are_still_recognised_among_many_orders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(seen, "CAPACITY", 4)  # a generation closed every few orders, dropped as stream time passes
    h = Harness()
    h.send("payment", 1, T0, offset=1_000)
    for order_id in range(2, 200):
        h.pair(order_id, T0 + order_id * 200)  # 40 s of stream time: order 1's payment expires alone

    [repeat] = h.send("payment", 1, T0 + 40_000, offset=1_001)
    [late] = h.send("order", 1, T0 + 40_000, offset=1_002)
    assert (repeat["reason"], repeat["original"]["offset"]) == ("duplicate", 1_000)
    assert late["reason"] == "late"
    assert {e["orderId"] for e in h.out if "event" in e} == set(range(1, 200))


def test_a_join_that_goes_on_after_a_flush_looks_for_every_entry_again() -> None:
    join, states = OrderJoin(WINDOW_MS, RETENTION_MS, idle_ms=None), ReadCountingStates()
    join.process(side("payment", 1, timestamp=T0), T0, states)
    join.process(side("order", 1, timestamp=T0), T0, states)
    join.flush(states)  # the end of a finite input: its forgetting lists passed, dropped without being read

    assert states.for_key(1).get(JOIN_ENTRY) is not None  # order 1's entry stays, in no list
    later = T0 + 5 * RETENTION_MS
    join.process(side("payment", 2, timestamp=later), later, states)
    assert states.read.count(2) == 1  # so a new orderId's first side looks for an entry again
