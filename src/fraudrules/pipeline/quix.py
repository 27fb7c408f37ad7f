"""Every use of Quix Streams beyond its documented API, in one place: the checklist for an upgrade.

The pipeline's steps are plain functions over plain state (the backtest runs them too); ``topology.py`` wires
them with Quix Streams' public API. What that API does not offer is here, each item named:

1. ``Application._consumer``: the app's own consumer, asked for its assignment, positions and cached
   watermarks (nothing that waits for the broker: :mod:`fraudrules.pipeline.offsets`).
2. ``Application._dataframe_registry.register_periodic_task``: a task the run loop calls between polls (the
   mechanism of Quix Streams' own lookup-join buffer), for the join's timers and the readers' progress.
3. ``StreamingDataFrame._stream`` and ``TransformFunction._resolve_branching``: a stream node that keeps its
   downstream executor, so a periodic task can emit through it (as ``StreamingDataFrame.join_lookup`` adds one).
4. ``quixstreams.context.set_message_context`` / ``copy_context`` and ``MessageContext(...)``: the message
   context of what a periodic task emits, which has no record in hand.
5. ``ProcessingContext.commit_checkpoint``, wrapped once: the write-back state caches are flushed before every
   commit (the run loop's, a revoke's, the shutdown's); Quix Streams has no hook for it. The wrapper decides
   whether the checkpoint is due and commits it as forced (Quix Streams' own check, made again a moment later,
   could commit a checkpoint whose caches were not flushed). Under exactly-once Quix Streams aborts a
   checkpoint that stored no offset and changed no state (``Checkpoint.empty()``, then ``close()``), and with
   its transaction whatever a periodic task emitted in it: the readers' progress and the timers' watermarks
   once the inputs went quiet, so at the end of a backlog the last verdicts waited for the next input record
   (seen in ``make bench``: 4 x 2 exactly-once, every side packet after the last input record aborted). A
   checkpoint in which a periodic task emitted is committed (``Checkpoint.commit()``, then
   ``ProcessingContext.init_checkpoint()``, as Quix Streams commits a non-empty one).
6. ``StateStoreManager.recovery_required`` and ``get_store(...).partitions``: nothing is emitted while a store
   recovers, and a store partition object per assignment names the state's incarnation.
7. ``Checkpoint.get_store_transaction`` and ``PartitionTransaction.as_state(prefix=..., timestamp=...)``: state
   under any key of the partition (the join's index, the reorder buffer), not only the record's key.
8. A ``stats_cb`` in ``consumer_extra_config`` is called after Quix Streams' own (undocumented: Quix pops it
   from the extra config and chains it), with ``statistics.interval.ms`` as given.
9. ``Application._on_assign``, ``_on_revoke`` and ``_on_lost``: the rebalance callbacks the run loop subscribes
   with, wrapped (before it runs) so that what is cached of the assignment is dropped at every rebalance.
10. The run loop's buffered reading (Quix Streams' mode for ``concat`` and joins), at any partition count:
    ``DataFrameRegistry.require_time_alignment`` switches it on; ``InternalConsumer._buffer`` is ours
    (``aligned.AlignedInputs``: the inputs in timestamp order across partitions, the app's own topics as they
    come), for the interface of Quix Streams' ``InternalConsumerBuffer`` as ``InternalConsumer`` calls it
    (assign, revoke, feed, pop, pause_full, resume_empty, clear, close); and ``InternalConsumer._feed_buffer``
    is ours (``_Feed``, with the consumer's ``_consumer``, ``_on_error`` and ``_max_partition_buffer_size``): a
    batch read that returns at the first record (librdkafka's batch read waits its whole timeout for a full
    batch: 10 ms at every hop of an order and of a watermark), the input partitions' positions and end offsets
    from the assignment cached per rebalance (item 9).
11. A ``KeyError`` naming a changelog topic, raised from the run loop right after a restart (seen once in CI:
   a kill -9 under exactly-once, the restarted instance failed 1 s after it started): Quix Streams' consumer
   buffer holds input partitions only, and a changelog record that reaches it (a rebalance while a store
   recovers: Quix Streams' own fixes of that window are in releases after 3.28) has no place there. Nothing
   was processed or committed with it, so ``fraudrules run`` restarts from the checkpoint, as for a Kafka
   error (:func:`is_state_race`, ``runner.py``).
12. A ``rocksdict.DbClosedError`` from a store read right after the group lost this instance's partitions (seen
    once in CI: the broker stopped for longer than the session timeout, the consumer's session expired and the
    partitions came back): Quix Streams closes a lost partition's store but keeps the open checkpoint's
    transaction on it, and hands that transaction out again once the partition is reassigned. That checkpoint
    can never commit, so ``fraudrules run`` restarts from the last one, as for a Kafka error
    (:func:`is_state_race`).
13. A consumer that stops delivering records it has to read: seen in CI and once in 13 runs here of the
    kill -9 test at two partitions under exactly-once: after the last restart (whose producer logged "Failed
    to acquire transactional PID ... concurrent operation ... retrying" while the killed one's transaction was
    being aborted), the sides topic held ~1,000 committed records per partition past the group's committed
    offset, every broker was up, the group was stable with them assigned and the main thread sat in
    ``Consumer.poll``, yet nothing came for four minutes. The cause was not found (Quix Streams pauses and
    resumes data partitions around recovery). ``offsets.StallWatch`` notices it from the consumer's statistics
    and ``fraudrules run`` restarts from the last checkpoint.
14. ``Application._state_manager._recovery_manager``: its ``_consumer`` wrapped, its ``_position_cache`` and
    ``MAX_INVALID_OFFSET_ATTEMPTS`` (:func:`recover_promptly`). Quix Streams' recovery loop
    (``RecoveryManager._recovery_loop``) polls with a 1 s timeout and looks whether its partitions are recovered
    only when a poll comes back empty, so every recovery, even of nothing new after a rebalance, ended with a
    second of waiting: at 4 partitions x 2 instances ~1.6-1.9 s of each drain, the second instance's rebalance
    (BENCHMARKS "Changes and gains"). The wrapper shortens that poll to :data:`RECOVERY_POLL_S`; what the loop
    checks then is the consumer's own position (no broker request), which it caches for a second: the cache is
    emptied at every changelog record, so that the check after the last one sees where it ended. The loop gives
    up ("Recovery stuck") after ``MAX_INVALID_OFFSET_ATTEMPTS`` checks finding no position (60: a minute at its
    own 1 s polls, which a seek leaves until the first fetch comes back); that many is scaled to the shorter
    poll, so the minute stays a minute.

:func:`check_version` refuses a Quix Streams release this list was not checked against. To upgrade: read
each item against the new release's source, run ``make test`` (the equivalence, crash and scale-out tests
cover every item), then add the release to :data:`TESTED_VERSIONS` (CONTRIBUTING, "Upgrading Quix Streams").
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any, Generic, TypeVar

import quixstreams
import structlog
from confluent_kafka import TopicPartition
from quixstreams import Application
from quixstreams.context import copy_context, set_message_context
from quixstreams.core.stream import TransformFunction, VoidExecutor
from quixstreams.dataframe import StreamingDataFrame
from quixstreams.exceptions import PartitionAssignmentError
from quixstreams.kafka.consumer import raise_for_msg_error
from quixstreams.models.messagecontext import MessageContext
from rocksdict import DbClosedError

from fraudrules.pipeline.aligned import AlignedInputs
from fraudrules.settings import ConfigError
from fraudrules.state import Keep, KeyState, WriteBackStates

#: A step's object for one partition (``StoreCaches``).
P = TypeVar("P")

_logger = logging.getLogger(__name__)  # what Quix Streams' error callback takes
log = structlog.get_logger(__name__)

#: Quix Streams releases (major.minor) this module was checked against.
TESTED_VERSIONS = ("3.28",)
#: What a step emits: (value, key, timestamp, headers).
Emission = tuple[Any, Any, int, Any]


def check_version(version: str = quixstreams.__version__) -> None:
    """Refuse a Quix Streams release whose private parts this module has not been checked against."""
    if ".".join(version.split(".")[:2]) not in TESTED_VERSIONS:
        raise ConfigError(
            f"quixstreams {version} is installed, but this fraudrules was tested with quixstreams "
            f"{', '.join(v + '.x' for v in TESTED_VERSIONS)} only: install one of those "
            f"(pip install 'quixstreams~={TESTED_VERSIONS[-1]}.0'); CONTRIBUTING.md says how to support a new one"
        )


def app_consumer(app: Application) -> Any:
    """The app's own consumer (item 1)."""
    return app._consumer


def every_loop(app: Application, task: Callable[[], None]) -> None:
    """Have the app's run loop call ``task`` between polls (item 2)."""
    app._dataframe_registry.register_periodic_task(task)


def on_rebalance(app: Application, callback: Callable[[], None]) -> None:
    """Call ``callback`` after each of the app's rebalance callbacks: partitions assigned, revoked or lost (item
    9). Before ``app.run()``, which subscribes with them."""
    for name in ("_on_assign", "_on_revoke", "_on_lost"):
        setattr(app, name, _Then(getattr(app, name), callback))


#: The longest Quix Streams' recovery loop waits for a changelog record before it checks whether it is done
#: (item 14): what a check costs is a look at the consumer's positions.
RECOVERY_POLL_S = 0.02


def recover_promptly(app: Application, longest: float = RECOVERY_POLL_S) -> None:
    """Have the state recovery that follows each assignment notice it is done within ``longest`` of reading the
    last changelog record, not a second later; it still gives up on a position that never comes after the
    same time as before (item 14)."""
    manager: Any = app._state_manager._recovery_manager
    if manager is not None and not isinstance(manager._consumer, ShortPolls):
        manager._consumer = ShortPolls(manager._consumer, longest, lambda: manager._position_cache.clear())
        manager.MAX_INVALID_OFFSET_ATTEMPTS = math.ceil(manager.MAX_INVALID_OFFSET_ATTEMPTS / longest)


class ShortPolls:
    """A consumer whose ``poll`` waits at most ``longest`` seconds and calls ``on_record()`` when it returns
    something; everything else is the consumer's own."""

    def __init__(self, consumer: Any, longest: float, on_record: Callable[[], None] = lambda: None) -> None:
        self._consumer = consumer
        self._longest = longest
        self._on_record = on_record

    def poll(self, timeout: float | None = None) -> Any:
        if timeout is None or timeout < 0 or timeout > self._longest:
            timeout = self._longest
        record = self._consumer.poll(timeout)
        if record is not None:
            self._on_record()
        return record

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)


def align_inputs(app: Application, inputs: list[str], assigned: Callable[[], list[TopicPartition]]) -> AlignedInputs:
    """Have the app read ``inputs`` in timestamp order across all their partitions it holds, and the records of
    its own topics as they come, first (item 10; ``aligned.py``): the buffer they go through. ``assigned``: the
    partitions the app consumes, no changelog (``offsets.CaughtUp.assigned``, asked once per rebalance)."""
    app._dataframe_registry.require_time_alignment()  # type: ignore[no-untyped-call]
    consumer: Any = app._consumer
    buffer = consumer._buffer = AlignedInputs(inputs, consumer._max_partition_buffer_size)
    consumer._feed_buffer = _Feed(consumer, buffer, inputs, assigned)
    return buffer


class _Feed:
    """``InternalConsumer._feed_buffer`` (item 10): the next records into the buffer, with the end offset
    librdkafka last heard of and the position of every input partition assigned (what the buffer waits on; a
    live app's feeds bring a record or two each, so their bookkeeping is kept to the inputs).

    The batch returns as soon as a record is there: what librdkafka holds, without waiting; if that is nothing,
    one record waited for (at most ``timeout``). (librdkafka's batch read waits its whole timeout unless the
    batch fills.) The partitions come from the cache of the assignment, their positions from one call; the
    buffer pauses nothing, so nothing is resumed."""

    def __init__(
        self, consumer: Any, buffer: AlignedInputs, inputs: list[str], assigned: Callable[[], list[TopicPartition]]
    ) -> None:
        self._consumer = consumer
        self._buffer = buffer
        self._inputs = frozenset(inputs)
        self._assigned = assigned
        self._size: int = consumer._max_partition_buffer_size
        # the assignment last seen (a new list after each rebalance), and the input partitions of it
        self._seen: list[TopicPartition] | None = None
        self._partitions: list[TopicPartition] = []

    def __call__(self, timeout: float | None = None) -> None:
        consumer = self._consumer
        try:
            batch = self._batch(consumer._consumer, timeout)  # confluent_kafka.Consumer, made on first use
        except PartitionAssignmentError:
            raise
        except Exception as exc:
            if not consumer._on_error(exc, None, _logger):
                raise
            batch = []
        ends: dict[tuple[str, int], int] = {}
        positions: dict[tuple[str, int], int] = {}
        assigned = self._assigned()
        if assigned is not self._seen:
            self._seen, self._partitions = assigned, [tp for tp in assigned if tp.topic in self._inputs]
        partitions = self._partitions
        if partitions:
            for position in consumer.position(partitions):
                place = (position.topic, position.partition)
                positions[place] = position.offset
                ends[place] = consumer.get_watermark_offsets(position, cached=True)[1]
        self._buffer.feed(self._valid(batch), ends, positions)

    def _batch(self, inner: Any, timeout: float | None) -> list[Any]:
        batch: list[Any] = inner.consume(num_messages=self._size, timeout=0)
        if batch or timeout == 0:
            return batch
        # The one record waited for comes alone; what followed it, with the next feed. Within one librdkafka
        # call a rebalance drops the records of revoked partitions; between two, a record from the first call
        # could belong to a partition the second one revoked.
        first = inner.poll(timeout=-1 if timeout is None else timeout)
        return [] if first is None else [first]

    def _valid(self, batch: list[Any]) -> Iterator[Any]:
        """The records of ``batch``; an error in its place goes to the consumer's error callback (as Quix
        Streams' own feed does)."""
        for message in batch:
            if message.error() is None:
                yield message
                continue
            try:
                raise_for_msg_error(message)
            except Exception as exc:
                if not self._consumer._on_error(exc, message, _logger):
                    raise


class _Then:
    """``first``, then ``then()``."""

    def __init__(self, first: Callable[..., Any], then: Callable[[], None]) -> None:
        self._first = first
        self._then = then

    def __call__(self, *args: Any) -> Any:
        try:
            return self._first(*args)
        finally:
            self._then()


class EmittingNode(TransformFunction):
    """An expanding step that keeps its downstream executor, so a periodic task can emit through it (item 3)."""

    def __init__(self, step: Callable[[Any, Any, int, Any], list[Emission]]) -> None:
        super().__init__(step, expand=True)
        self.downstream: VoidExecutor | None = None
        self._commit: _FlushingCommit | None = None

    def get_executor(self, *child_executors: VoidExecutor) -> VoidExecutor:
        self.downstream = self._resolve_branching(*child_executors)
        return super().get_executor(*child_executors)

    def emit(self, topic: str, partition: int, emissions: list[Emission]) -> None:
        """Send ``emissions`` downstream as if a record of ``topic``/``partition`` had produced them (item 4), in
        a checkpoint that then commits even if it consumed nothing (item 5)."""
        if self.downstream is not None and emissions:
            context = MessageContext(topic=topic, partition=partition, offset=-1, size=0)
            copy_context().run(_emit, self.downstream, context, emissions)
            if self._commit is not None:
                self._commit.emitted = True

    def attach(self, stream: StreamingDataFrame) -> None:
        """Add this node to ``stream`` (as ``StreamingDataFrame.join_lookup`` adds its own)."""
        stream._stream = stream.stream.add_function(self)
        self._commit = _flushing_commit(stream.processing_context)


def _emit(downstream: VoidExecutor, context: MessageContext, emissions: list[Emission]) -> None:
    set_message_context(context)
    for value, key, timestamp, headers in emissions:
        downstream(value, key, timestamp, headers)


class PartitionStates:
    """Partition state addressable under any key (item 7)."""

    __slots__ = ("_timestamp", "_tx")

    def __init__(self, tx: Any, timestamp: int) -> None:
        self._tx = tx
        self._timestamp = timestamp

    def for_key(self, key: Any) -> KeyState:
        state: KeyState = self._tx.as_state(prefix=key, timestamp=self._timestamp)
        return state


class Store:
    """The state store of one stateful dataframe: its partitions' transactions in the current checkpoint, their
    incarnations, and whether it recovers (items 6 and 7)."""

    def __init__(self, stream: StreamingDataFrame) -> None:
        stream.register_store()
        self._context = stream.processing_context
        self._stream_id = stream.stream_id

    def transaction(self, partition: int) -> Any:
        return self._context.checkpoint.get_store_transaction(stream_id=self._stream_id, partition=partition)

    def partitions(self) -> Mapping[int, object]:
        """The store partitions this instance holds, each an object of its own per assignment."""
        partitions: Mapping[int, object] = self._context.state_manager.get_store(stream_id=self._stream_id).partitions
        return partitions

    def recovering(self) -> bool:
        return bool(self._context.state_manager.recovery_required)

    def before_commit(self, flush: Callable[[], None]) -> None:
        """Call ``flush`` before every commit of the checkpoint: the run loop's (when due), on a revoke and at
        shutdown (forced) (item 5)."""
        before_commit(self._context, flush)


def before_commit(context: Any, flush: Callable[[], None]) -> None:
    """Have ``context`` (Quix Streams' ``ProcessingContext``) call ``flush`` before each checkpoint it commits
    (item 5). All the flushes of one context go in one wrapper, which decides once whether the checkpoint is
    due and then commits it as forced: Quix Streams asks ``Checkpoint.expired()`` again, and a checkpoint that
    expired between two such checks would commit the offsets of records whose state changes were still in a
    cache (a kill -9 then loses them: seen as orders decided twice, or never)."""
    _flushing_commit(context).flushes.append(flush)


def _flushing_commit(context: Any) -> _FlushingCommit:
    """The wrapper of ``context.commit_checkpoint`` (item 5), put in place on first use."""
    commit = context.commit_checkpoint
    if not isinstance(commit, _FlushingCommit):
        commit = context.commit_checkpoint = _FlushingCommit(context, commit)
    return commit


#: A checkpoint that takes longer (the caches' flush, then Quix Streams' commit: producer flush, changelog,
#: RocksDB, offsets) is logged: records wait behind it.
SLOW_CHECKPOINT_S = 0.25


class _FlushingCommit:
    """``ProcessingContext.commit_checkpoint`` with the flushes before it (:func:`before_commit`), logged when
    slow; a checkpoint in which a periodic task emitted (``emitted``) is committed, never aborted (item 5)."""

    def __init__(self, context: Any, commit: Callable[..., None]) -> None:
        self.flushes: list[Callable[[], None]] = []
        self.emitted = False
        self._context = context
        self._commit = commit

    def __call__(self, force: bool = False, revoking: bool = False) -> None:
        context = self._context
        if force or context.checkpoint.expired():
            started = time.monotonic()
            for flush in self.flushes:
                flush()
            flushed = time.monotonic()
            if self.emitted and context.exactly_once and context.checkpoint.empty():
                context.checkpoint.commit(revoking=revoking)
                context.init_checkpoint()
            else:
                self._commit(force=True, revoking=revoking)
            self.emitted = False
            if time.monotonic() - started > SLOW_CHECKPOINT_S:
                log.warning(
                    "slow checkpoint",
                    flush_ms=round((flushed - started) * 1000),
                    commit_ms=round((time.monotonic() - flushed) * 1000),
                )


class StoreCaches(Generic[P]):
    """Write-back caches (``state.WriteBackStates``) in front of one store's partitions, each flushed into its
    checkpoint transaction before the checkpoint commits, and dropped with the store partition (a new
    incarnation after each assignment): what ``keep`` names stays cached from one checkpoint to
    the next only while the partition stays assigned. For steps that write no TTL (the join, the chain).

    Beside each cache, the step's object for that partition (``open_partition()``: its join, its reorder
    buffer), made with the cache and dropped with it, so a step keeps in memory only what belongs to one
    incarnation of one partition's state and reads the rest from it."""

    def __init__(
        self,
        store: Store,
        open_partition: Callable[[], P],
        keep: Keep | None = None,
        kept_prefixes: Collection[Any] | None = None,
    ) -> None:
        self._store = store
        self._open = open_partition
        self._keep = keep
        self._kept_prefixes = kept_prefixes
        # partition -> (its store partition's incarnation, the transaction read from, the cache, the step's object)
        self._caches: dict[int, tuple[object, Any, WriteBackStates, P]] = {}
        store.before_commit(self.flush)

    def states(self, partition: int, tx: Any | None = None) -> tuple[WriteBackStates, P]:
        """The cache of ``partition`` in front of its transaction, and the step's object for this incarnation of
        the partition's state (a new one, with a new cache, when the partition was assigned again)."""
        tx = self._store.transaction(partition) if tx is None else tx
        assignment = self._store.partitions().get(partition)
        known = self._caches.get(partition)
        if known is None or known[0] is not assignment:
            states = WriteBackStates(PartitionStates(tx, 0), self._keep, self._kept_prefixes)
            step = self._open()
        else:
            states, step = known[2], known[3]
            if known[1] is tx:
                return states, step
            states.rebind(PartitionStates(tx, 0))
        self._caches[partition] = (assignment, tx, states, step)
        return states, step

    def step(self, partition: int) -> P | None:
        """The step's object for ``partition``'s state as assigned now, if it was made (no transaction asked)."""
        known = self._caches.get(partition)
        if known is None or known[0] is not self._store.partitions().get(partition):
            return None
        return known[3]

    def held(self) -> dict[int, P]:
        """The step's objects of the partitions assigned now, by partition."""
        partitions = self._store.partitions()
        return {
            partition: step
            for partition, (assignment, _, _, step) in self._caches.items()
            if partitions.get(partition) is assignment
        }

    def flush(self) -> None:
        """Every cached change into the checkpoint's transactions, before it commits them."""
        partitions = self._store.partitions()
        for partition, (assignment, _, states, _) in list(self._caches.items()):
            if partitions.get(partition) is not assignment:  # lost: its transaction is gone, and so is the cache
                del self._caches[partition]
                continue
            self.states(partition)
            states.flush()


def is_state_race(exc: BaseException) -> bool:
    """Whether ``exc`` is item 11 (a changelog record met where Quix Streams expects an input partition's) or
    item 12 (a lost partition's closed store, read through the open checkpoint): a restart cures both."""
    if isinstance(exc, DbClosedError):
        return True
    return isinstance(exc, KeyError) and bool(exc.args) and str(exc.args[0]).startswith("changelog__")


def consumer_statistics(extra_config: dict[str, Any], report: Callable[[str], None]) -> None:
    """Have the consumer configured by ``extra_config`` send its statistics to ``report`` every second (unless
    configured otherwise) (item 8)."""
    extra_config.setdefault("statistics.interval.ms", "1000")
    extra_config["stats_cb"] = report
