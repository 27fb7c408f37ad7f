"""What the reader of an input partition tells every join partition (several partitions only).

With several partitions each input partition (``payment/3``) is read by one instance and the join partitions
that its sides go to may be held by others. A join partition's stream time is the lowest of what every input
partition has been read up to, so each input partition reports its progress to every join partition, after its
sides and on the same path, as a Flink source broadcasts its watermark. A reader sends the word of all the input
partitions it reads in one record per join partition (as a Flink source task reads several splits and sends one
watermark): an instance reading 8 input partitions sends 4 records to 4 join partitions, not 32.

Only the reader knows whether an input partition that does not move is idle (nothing more to read) or merely
not read yet (its reader is behind on a backlog, busy elsewhere, or gone). So each progress record says whether
its reader had read everything there was (``caughtUp``), and while it has, the reader repeats its progress at
least every :data:`REPORT_S` of wall time even when nothing arrives. A join partition counts an input as idle
(``watermark.py``) only while that input's latest word, at most :data:`CAUGHT_UP_TTL_S` old, is "caught up": a
reader behind on a backlog, or one that stopped reporting, holds the join back however long it takes, and an
input that nobody writes to stops holding it after ``join_idle_seconds``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from fraudrules.pipeline.model import Heartbeat, Progress

#: Through topics a join partition sends its watermark (an input partition its progress) at most once per this
#: much stream time and per ``HEARTBEAT_INTERVAL_S`` of wall time: each one is a record to every partition
#: downstream, and each hop of the watermark waits up to that long. In memory (one partition) at most every
#: ``MEMORY_INTERVAL_S``. 20 ms for every watermark was measured twice and not kept (BENCHMARKS "Scaling": at 4
#: partitions and 200 orders/s a lower median, but +7 % CPU per order in the drain and, in the second pair, a
#: worse p99): it is only the live step below.
HEARTBEAT_MS = 50
HEARTBEAT_INTERVAL_S = 0.05
#: Live, a finer step: a watermark within ``LIVE_LAG_MS`` of the wall clock (event time) is sent at most once
#: per this much stream time and wall time. Live traffic has the CPU to spare and each hop of the watermark
#: waits up to the step; a backlog (a watermark hours behind the clock) keeps the coarser one, so a drain sends
#: no more records than before.
LIVE_HEARTBEAT_MS = 20
LIVE_HEARTBEAT_INTERVAL_S = 0.02
LIVE_LAG_MS = 10_000
#: How far past the latest record and event it knows a quiet join partition's watermark reaches beyond the rule
#: groups' reorder bound: the last few milliseconds of another input partition that its progress records, one
#: per ``HEARTBEAT_MS`` of stream time, may have left unreported. At least that step, and kept apart from it so
#: that a finer heartbeat does not narrow it.
QUIET_MARGIN_MS = 50
MEMORY_INTERVAL_S = 0.01
#: A caught-up reader repeats its input partition's progress at least this often (wall time).
REPORT_S = 1.0
#: A join partition believes "caught up" for this long (wall time) after hearing it: five missed reports.
CAUGHT_UP_TTL_S = 5 * REPORT_S


class InputProgress:
    """This instance as the reader of its input partitions: when to send each one's progress, and what it says.

    ``join_partitions``: how many join partitions each progress record goes to (one record per partition).
    """

    def __init__(
        self,
        join_partitions: int,
        every_ms: int = HEARTBEAT_MS,
        interval_s: float = HEARTBEAT_INTERVAL_S,
        wall_clock: Callable[[], float] = time.monotonic,
        live: tuple[int, float] | None = (LIVE_HEARTBEAT_MS, LIVE_HEARTBEAT_INTERVAL_S),
    ) -> None:
        self.join_partitions = join_partitions
        self._wall_clock = wall_clock
        self._heartbeats = Heartbeats(every_ms, interval_s, wall_clock, live=live)
        # input partition -> the highest Kafka timestamp read from it, in this process
        self._read: dict[str, int] = {}
        # input partition -> whether its reader had read everything there was, at the last look
        self._caught_up: dict[str, bool] = {}
        # input partition -> wall time of the last progress sent for it
        self._sent_at: dict[str, float] = {}

    def after_record(self, source: str, timestamp: int) -> list[Progress]:
        """A record of input partition ``source`` was read at Kafka ``timestamp`` (ms): the progress to send
        after it, if its stream time rose enough since the last (per record: cheap)."""
        if timestamp > self._read.get(source, -1):
            self._read[source] = timestamp
        if not self._heartbeats.due(source, timestamp):
            return []
        return self._progress()

    def looked(self, source: str, caught_up: bool) -> list[Progress]:
        """Whether the reader of ``source`` has read everything there is, as a periodic look found: the progress
        to send now (when it has just caught up, or stays caught up and sent nothing for ``REPORT_S``)."""
        was = self._caught_up.get(source)
        self._caught_up[source] = caught_up
        if not caught_up:
            return []
        sent = self._sent_at.get(source)
        if was and sent is not None and self._wall_clock() - sent < REPORT_S:
            return []
        return self._progress()

    def forget(self, keep: set[str]) -> list[Progress]:
        """Input partitions no longer read here (a rebalance): what was known of the others is dropped. Returns
        the last word on those read further than their last progress said (not caught up: another reader takes
        them over): their new reader may have nothing left to read and could never tell how far they went, and
        a join partition that never heard it would stay below the last orders."""
        unsent = [
            [source, at, False]
            for source, at in sorted(self._read.items())
            if source not in keep and at > self._heartbeats.sent_ms(source)
        ]
        for known in (self._read, self._caught_up, self._sent_at):
            for source in [source for source in known if source not in keep]:
                del known[source]
        if not unsent:
            return []
        return [{"progress": unsent, "to": to} for to in range(self.join_partitions)]

    def _progress(self) -> list[Progress]:
        """Every input partition read here, in one record per join partition: what one of them made due
        carries the others' word too, and counts as theirs (their next waits a step from it)."""
        now = self._wall_clock()
        read, caught_up, heartbeats = self._read, self._caught_up, self._heartbeats
        reports: list[list[Any]] = []
        for source in sorted(read.keys() | caught_up.keys()):
            at = read.get(source, -1)
            reports.append([source, at, caught_up.get(source, False)])
            self._sent_at[source] = now
            heartbeats.sent(source, at, now)
        return [{"progress": reports, "to": to} for to in range(self.join_partitions)]


class Heartbeats:
    """When a join partition sends its watermark (or an input partition its progress): once it has risen by
    ``every_ms`` of stream time and ``interval_s`` of wall time has passed since the last one sent. Each sends a
    record to every partition downstream, so both bounds matter: a backlog crosses seconds of stream time
    between two records of a partition, and live traffic many records per millisecond. The cost is latency: a
    released event waits up to ``interval_s`` more. Neither changes what is released, only when."""

    def __init__(
        self,
        every_ms: int,
        interval_s: float = 0.0,
        wall_clock: Callable[[], float] = time.monotonic,
        *,
        live: tuple[int, float] | None = None,
        epoch_ms: Callable[[], float] = lambda: time.time() * 1000,
    ) -> None:
        self.every_ms = every_ms
        self.interval_s = interval_s
        # (step ms, interval s) for a watermark within LIVE_LAG_MS of the clock (``epoch_ms``); None: one cadence
        self.live = live
        # what ``resting`` compares with, per record: the shorter of the two intervals
        self._shortest_s = interval_s if live is None else min(interval_s, live[1])
        self._epoch_ms = epoch_ms
        self._wall_clock = wall_clock
        self._sent: dict[Hashable, int] = {}
        self._sent_at: dict[Hashable, float] = {}

    def resting(self, key: Hashable) -> bool:
        """Whether ``key`` sent one less than the shorter interval ago (cheap: ask before computing a
        watermark)."""
        at = self._sent_at.get(key)
        return at is not None and self._wall_clock() - at < self._shortest_s

    def sent_ms(self, key: Hashable) -> int:
        """The last watermark sent for ``key`` (-1: none)."""
        return self._sent.get(key, -1)

    def sent(self, key: Hashable, watermark_ms: int, at: float) -> None:
        """``key``'s ``watermark_ms`` went out at wall time ``at`` with another key's (one record for both)."""
        if watermark_ms >= 0:
            self._sent[key] = watermark_ms
            self._sent_at[key] = at

    def would_send(self, key: Hashable, watermark_ms: int | None) -> bool:
        """Whether ``key``'s ``watermark_ms`` is due (:meth:`due`), without counting it as sent."""
        if watermark_ms is None:
            return False
        last = self._sent.get(key)
        if last is None:
            return True
        step, interval = self.cadence(watermark_ms)
        return watermark_ms >= last + step and self._wall_clock() - self._sent_at[key] >= interval

    def cadence(self, watermark_ms: int) -> tuple[int, float]:
        """The step (ms of stream time) and interval (s of wall time) for ``watermark_ms``: live or a backlog's."""
        live = self.live
        if live is not None and watermark_ms >= self._epoch_ms() - LIVE_LAG_MS:
            return live
        return self.every_ms, self.interval_s

    def due(self, key: Hashable, watermark_ms: int | None) -> bool:
        """Whether ``key``'s ``watermark_ms`` is due, counting it as sent if it is."""
        if not self.would_send(key, watermark_ms):
            return False
        assert watermark_ms is not None
        self._sent[key] = watermark_ms
        self._sent_at[key] = self._wall_clock()
        return True


class DownstreamWatermarks:
    """The watermarks of an instance's partitions of one stage (the join's, or a rule group's) to every one of
    ``downstream`` partitions of the next, when due (:class:`Heartbeats`), each saying whether its partition's
    own input was read to the end: the join's to the first rule group, a group's to the next.

    One record per downstream partition carries every partition's watermark of this instance
    (``partitions()``, each one's ``watermark(partition)`` and ``behind(partition)``): an instance holding 4 join
    partitions sends 4 records to 4 rule-group partitions per step, not 16. What a partition downstream waits for
    is the lowest of them, so that is what the step is measured on. The partitions of a stage move together,
    each on a record of its own (the heartbeats of the stage before reach each of them in turn): the first one to
    rise makes the record due, and it goes out once the lowest has risen a step too, that is when the last of
    them has caught up; if one stays behind, at the first record or timer (every ``TIMER_S``) once the interval
    has passed since the first rose. A partition never reported goes out at once. Sending at the first one's
    rise, as before, carried the others' old watermarks and held their new ones back by the interval at every
    hop (BENCHMARKS "Changes and gains").
    """

    def __init__(
        self,
        downstream: int,
        partitions: Callable[[], Iterable[int]],
        watermark: Callable[[int], int | None],
        behind: Callable[[int], bool],
        wall_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._heartbeats = Heartbeats(
            HEARTBEAT_MS,
            HEARTBEAT_INTERVAL_S,
            wall_clock,
            live=(LIVE_HEARTBEAT_MS, LIVE_HEARTBEAT_INTERVAL_S),
        )
        self._downstream = downstream
        self._partitions = partitions
        self._watermark = watermark
        self._behind = behind
        self._wall_clock = wall_clock
        # While a record waits for the others: since when (wall time), for how long at most, and the partitions
        # whose rise it waits for (only their records, or the deadline, can change the answer).
        self._due_since: float | None = None
        self._wait_s = 0.0
        self._waiting_for: set[int] = set()

    def due(self, partition: int, behind: Callable[[], bool] | None = None) -> list[Heartbeat]:
        """The heartbeats to send after ``partition``'s record (or timer), or nothing: its watermark is asked
        only when one may be due, every partition's only when one is and the answer may have changed.
        ``behind``: the partition's, if known."""
        heartbeats = self._heartbeats
        if self._due_since is None:
            if heartbeats.resting(partition):  # the usual record: nothing more to ask
                return []
            mark = self._watermark(partition)
            if mark is None or not heartbeats.would_send(partition, mark):
                return []
            now = self._wall_clock()
            self._due_since, self._wait_s = now, heartbeats.cadence(mark)[1]
        else:
            now = self._wall_clock()
            if partition not in self._waiting_for and now - self._due_since < self._wait_s:
                return []
        marks = [(p, self._watermark(p)) for p in (partition, *sorted(set(self._partitions()) - {partition}))]
        known = [(p, mark) for p, mark in marks if mark is not None]
        if not known:  # its partitions went elsewhere meanwhile
            self._due_since = None
            return []
        lowest = min(mark for _, mark in known)
        sent = min(heartbeats.sent_ms(p) for p, _ in known)  # -1: one never reported
        step, self._wait_s = heartbeats.cadence(lowest)
        if sent >= 0 and lowest < sent + step and now - self._due_since < self._wait_s:
            self._waiting_for = {p for p, mark in marks if mark is None or mark < sent + step}
            return []
        self._due_since, self._waiting_for = None, set()
        reports: list[list[Any]] = []
        for p, mark in known:
            caught_up = not (behind() if behind is not None and p == partition else self._behind(p))
            reports.append([p, mark, caught_up])
            heartbeats.sent(p, mark, now)
        return [{"heartbeat": reports, "to": to} for to in range(self._downstream)]
