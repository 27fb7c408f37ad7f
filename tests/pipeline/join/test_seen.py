from __future__ import annotations

import random

import pytest

from fraudrules.pipeline.join import seen
from fraudrules.pipeline.join.seen import SeenOrders


def test_a_partition_opened_without_state_has_no_entry_but_those_scheduled_since() -> None:
    orders = SeenOrders(None)
    assert not orders.may_be_stored(7)

    orders.scheduled(7, 100)
    assert orders.may_be_stored(7)
    assert not orders.may_be_stored(8)


def test_no_order_id_scheduled_is_ever_taken_for_one_without_an_entry() -> None:
    orders, rng = SeenOrders(None), random.Random(3)
    ids = [rng.randrange(2**63) for _ in range(20_000)] + list(range(20_000))
    for order_id in ids:
        orders.scheduled(order_id, 1)

    assert all(orders.may_be_stored(order_id) for order_id in ids)
    # and most never scheduled are told apart (a Bloom filter's "may be" is sometimes wrong)
    others = [rng.randrange(2**63) for _ in range(10_000)]
    assert sum(orders.may_be_stored(order_id) for order_id in others) < 100


def test_a_partition_opened_on_stored_state_may_hold_any_order_id_until_stream_time_passes_its_lists() -> None:
    orders = SeenOrders(stored_until=120)
    assert orders.may_be_stored(1)
    assert orders.may_be_stored(2)

    orders.passed(119)
    assert orders.may_be_stored(1)
    orders.passed(120)  # every list the stored clock knew is handled: their entries are gone or rescheduled
    assert not orders.may_be_stored(1)


def test_a_full_generation_is_forgotten_once_stream_time_passes_every_list_its_order_ids_were_put_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(seen, "CAPACITY", 3)
    orders = SeenOrders(None)
    for order_id, bucket in ((1, 50), (2, 80), (3, 20)):
        orders.scheduled(order_id, bucket)
    orders.scheduled(4, 30)  # the first three's generation is closed: 4 starts the next

    orders.passed(79)
    assert all(orders.may_be_stored(order_id) for order_id in (1, 2, 3, 4))
    orders.passed(80)
    assert [orders.may_be_stored(order_id) for order_id in (1, 2, 3, 4)] == [False, False, False, True]


def test_a_record_far_in_the_future_keeps_only_its_own_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seen, "CAPACITY", 2)
    orders = SeenOrders(None)
    orders.scheduled(1, 10**9)  # timestamped far ahead: listed for then
    orders.scheduled(2, 10)
    orders.scheduled(3, 10)
    orders.scheduled(4, 10)
    orders.scheduled(5, 10)  # (1, 2), (3, 4) closed, 5 in the current one

    orders.passed(10)
    assert orders.may_be_stored(1)
    assert orders.may_be_stored(2)  # in 1's generation
    assert not orders.may_be_stored(3)
    assert not orders.may_be_stored(4)


def test_an_order_id_scheduled_again_is_remembered_in_the_newest_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seen, "CAPACITY", 2)
    orders = SeenOrders(None)
    orders.scheduled(1, 10)
    orders.scheduled(2, 20)
    orders.scheduled(3, 10)  # (1, 2) closed: they stay until 20
    orders.scheduled(1, 90)  # 1 listed again (decided, to be forgotten at 90)

    orders.passed(20)
    assert orders.may_be_stored(1)
    assert orders.may_be_stored(3)
    assert not orders.may_be_stored(2)


def test_too_many_generations_alive_give_way_to_may_be_until_stream_time_passes_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(seen, "CAPACITY", 1)
    monkeypatch.setattr(seen, "MAX_GENERATIONS", 3)
    orders = SeenOrders(None)
    for order_id in range(1, 5):  # stream time stands still while generations fill
        orders.scheduled(order_id, 10**9)

    assert orders.may_be_stored(99)  # given up: any orderId may be stored ...
    orders.passed(10**9)  # ... until every list there was is handled
    assert not orders.may_be_stored(99)
    assert orders.may_be_stored(4)  # scheduled after giving up, in the generation that goes on


def test_once_lists_were_dropped_unread_every_order_id_may_be_stored_for_good() -> None:
    orders = SeenOrders(None)
    orders.unknown()
    orders.passed(10**12)
    assert orders.may_be_stored(1)
