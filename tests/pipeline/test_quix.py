"""The Quix Streams adapter: it refuses a release it was not checked against, commits no checkpoint before
the state caches are flushed into it, and its buffered read waits for one record, not a batch."""

from __future__ import annotations

import time
from typing import Any, cast

import pytest
import quixstreams
from confluent_kafka import TopicPartition
from structlog.testing import capture_logs

from fraudrules.kafka_tools.harness import create_topics, read_topic
from fraudrules.pipeline.quix import (
    RECOVERY_POLL_S,
    TESTED_VERSIONS,
    EmittingNode,
    ShortPolls,
    Store,
    StoreCaches,
    align_inputs,
    app_consumer,
    before_commit,
    check_version,
    every_loop,
    on_rebalance,
    recover_promptly,
)
from fraudrules.settings import ConfigError
from tests.kafka_helpers import produce


def test_the_installed_quix_streams_is_a_tested_one() -> None:
    check_version()
    assert ".".join(quixstreams.__version__.split(".")[:2]) in TESTED_VERSIONS


@pytest.mark.parametrize("version", ["3.29.0", "4.0.0", "3.2.0"])
def test_an_untested_release_is_refused_with_what_to_install(version: str) -> None:
    with pytest.raises(ConfigError, match=rf"quixstreams {version} is installed.*pip install 'quixstreams~=3\.28\.0'"):
        check_version(version)


class _Context:
    """The members of Quix Streams' ``ProcessingContext`` that ``before_commit`` uses, its
    ``commit_checkpoint`` as Quix Streams 3.28 has it: it asks ``expired()`` itself (unless forced), and aborts
    an empty checkpoint instead of committing it."""

    def __init__(self, answers: list[bool], exactly_once: bool = False) -> None:
        self.checkpoint = _Checkpoint(answers)
        self.checkpoint.context = self
        self.exactly_once = exactly_once
        self.commits: list[tuple[bool, list[str]]] = []
        self.aborted = 0
        self.checkpoints = 1
        self.flushed: list[str] = []

    def commit_checkpoint(self, force: bool = False, revoking: bool = False) -> None:
        if self.checkpoint.expired() or force:
            if self.checkpoint.empty():
                self.aborted += 1
            else:
                self.checkpoint.commit(revoking=revoking)
            self.init_checkpoint()

    def init_checkpoint(self) -> None:
        self.checkpoints += 1


class _Checkpoint:
    """A checkpoint whose ``expired()`` answers from a script (the clock crossing its deadline at any moment)
    and that is empty (nothing consumed, no state changed) unless a store's cache was flushed into it."""

    def __init__(self, answers: list[bool]) -> None:
        self.answers = answers
        self.context: _Context | None = None

    def expired(self) -> bool:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    def empty(self) -> bool:
        assert self.context is not None
        return not self.context.flushed

    def commit(self, revoking: bool = False) -> None:
        assert self.context is not None
        self.context.commits.append((revoking, self.context.flushed))
        self.context.flushed = []


@pytest.mark.parametrize("expires_after", range(4))
def test_a_checkpoint_commits_only_with_every_cache_flushed_into_it(expires_after: int) -> None:
    # The deadline passes after `expires_after` checks: between the caches' checks and Quix Streams' own, or
    # before all of them. Two stores' caches each checking for itself let a checkpoint commit with one unflushed.
    context = _Context([False] * expires_after + [True])
    for store in ("join", "group"):
        before_commit(context, lambda store=store: context.flushed.append(store))  # type: ignore[misc]
    for _ in range(5):
        context.commit_checkpoint()
    assert context.commits, "the checkpoint never committed"
    assert all(sorted(flushed) == ["group", "join"] for _, flushed in context.commits), context.commits


def test_a_forced_commit_flushes_first_and_passes_on_revoking() -> None:
    context = _Context([False])
    before_commit(context, lambda: context.flushed.append("join"))
    context.commit_checkpoint()
    assert context.commits == []
    context.commit_checkpoint(force=True, revoking=True)
    assert context.commits == [(True, ["join"])]


@pytest.mark.parametrize("exactly_once", [True, False])
def test_a_checkpoint_a_periodic_task_emitted_in_commits_under_exactly_once_though_nothing_was_consumed(
    exactly_once: bool,
) -> None:
    # Quix Streams aborts an empty checkpoint's transaction, and with it the watermarks a timer sent in it
    context = _Context([True], exactly_once=exactly_once)
    before_commit(context, lambda: None)  # a store's cache with nothing in it
    commit: Any = context.commit_checkpoint

    commit.emitted = True
    context.commit_checkpoint()
    context.commit_checkpoint()  # nothing emitted since: empty, Quix Streams' way
    commit.flushes.append(lambda: setattr(commit, "emitted", True))  # packets sent by a flush before the commit
    context.commit_checkpoint()

    assert context.commits == ([(False, []), (False, [])] if exactly_once else [])
    assert context.aborted == (1 if exactly_once else 3)  # at-least-once has no transaction to lose
    assert context.checkpoints == 4
    assert commit.emitted is False


def test_a_slow_checkpoint_is_logged_with_its_flush_and_its_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])  # the clock the checkpoint is timed with

    class _SlowCommit(_Context):
        commit_s = 0.0

        def commit_checkpoint(self, force: bool = False, revoking: bool = False) -> None:
            clock[0] += self.commit_s
            super().commit_checkpoint(force, revoking)

    context = _SlowCommit([True])

    def flush() -> None:
        clock[0] += 0.02

    before_commit(context, flush)
    with capture_logs() as logs:
        context.commit_s = 0.1
        context.commit_checkpoint()  # 120 ms: not slow
        context.commit_s = 0.3
        context.commit_checkpoint()
    assert [(log["event"], log["flush_ms"], log["commit_ms"]) for log in logs] == [("slow checkpoint", 20, 300)]


class _App:
    """The three rebalance callbacks of Quix Streams' ``Application``, recording their calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def _on_assign(self, _: Any, partitions: list[int]) -> None:
        self.calls.append(f"assign {partitions}")

    def _on_revoke(self, _: Any, partitions: list[int]) -> None:
        self.calls.append(f"revoke {partitions}")

    def _on_lost(self, _: Any, partitions: list[int]) -> None:
        raise RuntimeError("lost")


def test_a_rebalance_callback_runs_after_each_of_the_apps_own_even_one_that_fails() -> None:
    app = _App()
    on_rebalance(app, lambda: app.calls.append("rebalanced"))  # type: ignore[arg-type]

    app._on_assign(None, [1])
    app._on_revoke(None, [1])
    with pytest.raises(RuntimeError):
        app._on_lost(None, [2])
    assert app.calls == ["assign [1]", "rebalanced", "revoke [1]", "rebalanced", "rebalanced"]


def test_quix_streams_application_has_the_callbacks_it_subscribes_with() -> None:
    for name in ("_on_assign", "_on_revoke", "_on_lost"):
        assert callable(getattr(quixstreams.Application, name))


class _Consumer:
    """A consumer that records how long each poll may wait, and returns a record on every other poll."""

    def __init__(self) -> None:
        self.timeouts: list[float | None] = []
        self.group = "g"

    def poll(self, timeout: float | None = None) -> str | None:
        self.timeouts.append(timeout)
        return "record" if len(self.timeouts) % 2 == 0 else None


def test_a_short_poll_waits_at_most_its_longest_and_leaves_the_rest_of_the_consumer_alone() -> None:
    consumer, records = _Consumer(), []
    short = ShortPolls(consumer, 0.02, lambda: records.append(len(consumer.timeouts)))

    polled = [short.poll(timeout) for timeout in (1, None, -1, 0.005, 0)]

    assert consumer.timeouts == [0.02, 0.02, 0.02, 0.005, 0]
    assert polled == [None, "record", None, "record", None]
    assert records == [2, 4]  # told of each record it returned
    assert short.group == "g"


def test_quix_streams_recovery_polls_briefly_once_and_only_with_changelogs(tmp_path: Any) -> None:
    # Quix Streams' recovery loop looks whether it is done only after an empty poll (quix.py item 14)
    app = quixstreams.Application(broker_address="127.0.0.1:1", consumer_group="g", state_dir=tmp_path / "a")
    manager: Any = app._state_manager._recovery_manager
    consumer, attempts = manager._consumer, manager.MAX_INVALID_OFFSET_ATTEMPTS

    recover_promptly(app)
    recover_promptly(app)

    assert isinstance(manager._consumer, ShortPolls)
    assert manager._consumer._consumer is consumer
    assert manager._consumer._longest == RECOVERY_POLL_S
    # it gives up on a position that never comes after as long as before: 60 checks of 1 s, 3,000 of 20 ms
    assert manager.MAX_INVALID_OFFSET_ATTEMPTS == attempts / RECOVERY_POLL_S == 3000
    # the position it checks is cached a second: a record read empties the cache, the check after sees it
    manager._position_cache["changelog:0"] = (time.monotonic(), "before the last record")
    manager._consumer._on_record()
    assert manager._position_cache == {}
    without = quixstreams.Application(
        broker_address="127.0.0.1:1", consumer_group="g", state_dir=tmp_path / "b", use_changelog_topics=False
    )
    recover_promptly(without)  # no changelogs, no recovery: nothing to shorten
    assert without._state_manager._recovery_manager is None


def test_the_buffered_read_returns_at_the_first_record_with_what_follows_it(kafka: Any, unique: str) -> None:
    # librdkafka's batch read waits its whole timeout unless the batch fills; the app's feed waits for one record.
    topic = f"batches-{unique}"
    create_topics(kafka.bootstrap, [topic])
    app = quixstreams.Application(broker_address=kafka.bootstrap, consumer_group=f"batches-{unique}")
    partition = TopicPartition(topic, 0, 0)
    buffer = align_inputs(app, [topic], lambda: [TopicPartition(topic, 0)])
    consumer = app._consumer
    consumer.assign([partition])
    buffer.assign_partitions([partition])

    def fed(timeout: float) -> list[bytes]:
        consumer._feed_buffer(timeout=timeout)
        values = []
        while (message := buffer.pop()) is not None:
            values.append(message.value())
        return values

    try:
        assert fed(0.5) == []  # nothing there: the timeout, then nothing
        produce(kafka.bootstrap, topic, [b"first"])
        started = time.monotonic()
        assert fed(60) == [b"first"]
        assert time.monotonic() - started < 30, "waited for a full batch"
        produce(kafka.bootstrap, topic, [b"%d" % i for i in range(50)])
        values: list[bytes] = []
        while len(values) < 50:
            values += fed(60)
        assert values == [b"%d" % i for i in range(50)]  # in offset order, across the wait and what followed
        assert not buffer.holds(topic, 0)
    finally:
        consumer.close()  # type: ignore[no-untyped-call]


def test_what_a_periodic_task_emits_with_nothing_consumed_is_committed_under_exactly_once(
    kafka: Any, unique: str, tmp_path: Any
) -> None:
    # The end of a backlog: the inputs are quiet and a timer sends the watermark that releases the last verdicts.
    # Quix Streams aborts a checkpoint that consumed nothing and changed no state, and that record with it.
    source, out = f"quiet-{unique}", f"emitted-{unique}"
    create_topics(kafka.bootstrap, [source, out])
    app = quixstreams.Application(
        broker_address=kafka.bootstrap,
        consumer_group=f"quiet-{unique}",
        processing_guarantee="exactly-once",
        commit_interval=0.2,
        state_dir=tmp_path,
    )
    inputs = app.dataframe(app.topic(source))
    node = EmittingNode(lambda value, key, timestamp, headers: [(value, key, timestamp, headers)])
    node.attach(inputs)
    inputs.to_topic(app.topic(out))
    emitted_at: list[float] = []

    started = time.monotonic()

    def timer() -> None:
        if time.monotonic() - started > 60:  # never assigned: stop, and the assertion below fails
            app.stop()
        if not app_consumer(app).assignment():
            return
        if not emitted_at:
            node.emit(source, 0, [({"watermark": 1}, b"k", int(time.time() * 1000), None)])
            emitted_at.append(time.monotonic())
        elif time.monotonic() - emitted_at[0] > 2:  # ten checkpoints later: a lost record stays lost
            app.stop()

    every_loop(app, timer)
    app.run()

    messages = read_topic(kafka.bootstrap, out, until=lambda m: len(m) >= 1, timeout=15, settle=1)
    assert [m.value() for m in messages] == [b'{"watermark":1}']


class _Partitions:
    """A store's partitions as ``StoreCaches`` sees them: each assignment an object of its own."""

    def __init__(self) -> None:
        self.held: dict[int, object] = {0: object(), 1: object()}
        self.flushes: list[Any] = []

    def transaction(self, partition: int) -> object:
        return object()

    def partitions(self) -> dict[int, object]:
        return self.held

    def before_commit(self, flush: Any) -> None:
        self.flushes.append(flush)


def test_a_steps_object_for_a_partition_lives_as_long_as_that_assignment_of_it() -> None:
    store = _Partitions()
    made: list[object] = []

    def open_partition() -> object:
        made.append(object())
        return made[-1]

    caches = StoreCaches(cast(Store, store), open_partition)
    _, first = caches.states(0)
    assert caches.states(0)[1] is first  # the same assignment: the same object, memory and all
    assert caches.step(0) is first
    assert caches.step(1) is None  # no record of partition 1 yet: nothing made for it

    store.held[0] = object()  # partition 0 revoked and assigned again
    assert caches.step(0) is None  # what the old object remembers belongs to the old assignment
    _, second = caches.states(0)
    assert second is not first
    assert made == [first, second]
    assert caches.held() == {0: second}

    del store.held[0]  # lost: dropped at the next checkpoint, never flushed
    for flush in store.flushes:
        flush()
    assert caches.held() == {}
