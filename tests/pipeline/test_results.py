"""The results a rule group gave, kept per checkpoint: a repeat of an event gets the same answer, after a flush,
after a restart (a new incarnation reads them back from state), until the retention has passed."""

from __future__ import annotations

from typing import Any

from fraudrules.pipeline.model import Enriched, RuleResults
from fraudrules.pipeline.results import BATCH, PAGE, RESULTS_PREFIX, KeptResults
from tests.fixtures import DictPartitionStates, ReadCountingStates

T0 = 1_700_000_000_000
HOUR_MS = 3_600_000


def event(n: int, at: int) -> Enriched:
    value: Any = {"orderId": n, "verdictId": f"payment/0/{n}", "decisionTimeMs": at, "event": {}}
    return value  # type: ignore[no-any-return]


def results(n: int) -> RuleResults:
    return {"hits": [{"rule": "r", "score": n}], "errors": []}  # type: ignore[typeddict-item]


def checkpoint(kept: KeptResults, states: DictPartitionStates) -> int:
    return kept.flush(lambda: states)


def batches_read(states: ReadCountingStates) -> int:
    return sum(1 for key, name in states.names if key == RESULTS_PREFIX and str(name).startswith("b"))


def stored(states: DictPartitionStates) -> dict[Any, Any]:
    return states.by_key.get(RESULTS_PREFIX, {})


def test_a_repeat_gets_the_first_answer_before_and_after_the_checkpoint() -> None:
    kept, states = KeptResults(HOUR_MS), DictPartitionStates()
    kept.keep(states, event(1, T0), results(1), False, T0)
    kept.keep(states, event(2, T0 + 5), results(2), True, T0 + 5)

    assert kept.given(states, event(2, T0 + 5)) == [results(2), True]  # not yet flushed
    checkpoint(kept, states)
    assert kept.given(states, event(1, T0)) == [results(1), False]
    assert kept.given(states, event(2, T0 + 5)) == [results(2), True]
    assert kept.given(states, event(3, T0 + 5)) is None  # never answered


def test_a_checkpoint_writes_its_answers_in_batches_of_at_most_BATCH() -> None:
    # one changelog record each: a value over the broker's message.max.bytes would stop the app
    kept, states = KeptResults(HOUR_MS), DictPartitionStates()
    for n in range(2 * BATCH + 1):
        kept.keep(states, event(n, T0 + n), results(n), False, T0 + n)

    assert checkpoint(kept, states) == 5  # three batches, their index page, the head
    assert sorted(stored(states)) == ["b0", "b1", "b2", "head", "p0"]
    assert [len(stored(states)[f"b{n}"]) for n in range(3)] == [BATCH, BATCH, 1]
    assert checkpoint(kept, states) == 0  # nothing answered since: nothing written
    assert kept.given(states, event(BATCH + 7, T0 + BATCH + 7)) == [results(BATCH + 7), False]


def test_the_batches_of_one_checkpoint_across_an_index_page_are_found_after_a_restart() -> None:
    kept, states = KeptResults(HOUR_MS), DictPartitionStates()
    for n in range(PAGE - 1):  # a batch a checkpoint: the first page but its last
        kept.keep(states, event(n, T0 + n), results(n), False, T0 + n)
        checkpoint(kept, states)
    big = range(1000, 1000 + 2 * BATCH + 1)  # three batches: the first page's last, two on the second
    for n in big:
        kept.keep(states, event(n, T0 + n), results(n), False, T0 + n)

    assert checkpoint(kept, states) == 6  # three batches, two index pages, the head
    assert len(stored(states)["p0"]) == PAGE
    assert len(stored(states)["p1"]) == 2
    assert stored(states)["head"] == [0, PAGE + 2]
    restarted = KeptResults(HOUR_MS)
    for n in [0, PAGE - 2, *big]:
        assert restarted.given(states, event(n, T0 + n)) == [results(n), False], n


def test_a_new_incarnation_reads_the_batches_back_and_numbers_on_after_them() -> None:
    kept, states = KeptResults(HOUR_MS), DictPartitionStates()
    for n in range(3):
        kept.keep(states, event(n, T0 + n * 1000), results(n), False, T0 + n * 1000)
        checkpoint(kept, states)
    kept.keep(states, event(9, T0 + 9000), results(9), False, T0 + 9000)  # lost with the process

    restarted = KeptResults(HOUR_MS)  # a restart, or the partition assigned again
    assert [restarted.given(states, event(n, T0 + n * 1000)) for n in range(3)] == [
        [results(n), False] for n in range(3)
    ]
    assert restarted.given(states, event(9, T0 + 9000)) is None
    restarted.keep(states, event(4, T0 + 4000), results(4), False, T0 + 4000)
    checkpoint(restarted, states)
    assert sorted(stored(states)) == ["b0", "b1", "b2", "b3", "head", "p0"]
    assert restarted.given(states, event(1, T0 + 1000)) == [results(1), False]


def test_a_late_event_is_found_in_the_batch_that_answered_it_though_earlier_batches_cover_its_time() -> None:
    kept, states = KeptResults(HOUR_MS), DictPartitionStates()
    kept.keep(states, event(1, T0 + 1000), results(1), False, T0 + 1000)
    checkpoint(kept, states)
    kept.keep(states, event(2, T0 + 2000), results(2), False, T0 + 2000)
    kept.keep(states, event(3, T0 + 500), results(3), True, T0 + 2000)  # late
    checkpoint(kept, states)

    assert KeptResults(HOUR_MS).given(states, event(3, T0 + 500)) == [results(3), True]


def test_batches_past_the_retention_below_what_was_released_are_deleted_with_their_index_pages() -> None:
    kept, states = KeptResults(HOUR_MS), DictPartitionStates()
    for n in range(PAGE + 2):  # a batch a minute: the first page fills, the second starts
        at = T0 + n * 60_000
        kept.keep(states, event(n, at), results(n), False, at)
        checkpoint(kept, states)
    assert {key for key in stored(states) if key.startswith("p")} == {"p0", "p1"}

    # Released up to minute PAGE + 1: what was decided more than an hour before that (minutes 0 .. PAGE - 60)
    # goes at the next checkpoint.
    released = T0 + (PAGE + 1) * 60_000
    kept.keep(states, event(1000, released), results(1000), False, released)
    checkpoint(kept, states)
    gone = range(PAGE + 1 - 60)
    assert not any(f"b{n}" in stored(states) for n in gone)
    assert all(f"b{n}" in stored(states) for n in range(gone.stop, PAGE + 3))
    assert kept.given(states, event(0, T0)) is None
    assert kept.given(states, event(gone.stop, T0 + gone.stop * 60_000)) == [results(gone.stop), False]

    # once every batch of the first page is past the retention, the page goes too
    released = T0 + (2 * PAGE + 60) * 60_000
    kept.keep(states, event(2000, released), results(2000), False, released)
    checkpoint(kept, states)
    assert {key for key in stored(states) if key.startswith("p")} == {"p1"}
    assert stored(states)["head"] == [PAGE + 3, PAGE + 4]
    restarted = KeptResults(HOUR_MS)
    assert restarted.given(states, event(2000, released)) == [results(2000), False]


def test_a_lookup_reads_only_the_batches_whose_range_holds_its_time_and_stops_below_them() -> None:
    kept, states = KeptResults(HOUR_MS), ReadCountingStates()
    for n in range(10):  # a batch a minute, each with two orders a second apart
        for k in range(2):
            at = T0 + n * 60_000 + k * 1000
            kept.keep(states, event(2 * n + k, at), results(2 * n + k), False, at)
        checkpoint(kept, states)
    restarted = KeptResults(HOUR_MS)

    assert restarted.given(states, event(5, T0 + 2 * 60_000 + 1000)) == [results(5), False]
    assert batches_read(states) == 1
    assert restarted.given(states, event(99, T0 - 1)) is None  # before every batch: none is read
    assert batches_read(states) == 1
    assert restarted.given(states, event(99, T0 + 30_000)) is None  # between two batches' ranges
    assert batches_read(states) == 1


def test_the_batches_of_one_checkpoint_each_cover_their_own_times_so_a_lookup_reads_one() -> None:
    kept, states = KeptResults(HOUR_MS), ReadCountingStates()
    for n in reversed(range(3 * BATCH)):  # answered out of time order (late events, several join partitions)
        kept.keep(states, event(n, T0 + n * 10), results(n), False, T0 + n * 10)
    checkpoint(kept, states)
    restarted = KeptResults(HOUR_MS)

    for n in (BATCH + 3, 5, 3 * BATCH - 1):
        before = batches_read(states)
        assert restarted.given(states, event(n, T0 + n * 10)) == [results(n), False]
        assert batches_read(states) == before + 1
