"""Who this instance is to Kafka across its restarts.

A consumer that is killed does not leave its group: Kafka holds its partitions until its session times out,
and under exactly-once the transaction it left open holds back every ``read_committed`` reader of its partitions
until the broker aborts it (``transaction.timeout.ms``). A restarted instance that comes back under the same
``group.instance.id`` (static membership) takes its partitions back at once, and one that comes back under the
same ``transactional.id`` aborts the open transaction as it starts. So an instance gets one stable name: the
configured ``kafka.instance_id``, or one derived from its consumer group, host and state directory. Two running
instances must never share a name (each would fence the other), so the state directory is locked while a
process uses the name; a second process on the same directory gets a random name instead.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import uuid
from pathlib import Path

import structlog

from fraudrules.settings import Settings

log = structlog.get_logger(__name__)

#: Names this process holds, by lock file (the lock lasts as long as the process: the OS drops it on any exit).
_held: dict[Path, str] = {}
_announced: set[str] = set()


def instance_id(settings: Settings) -> str:
    """This instance's stable name (see the module docs); said in the log the first time."""
    if settings.kafka.instance_id:
        return _announce(settings, settings.kafka.instance_id)
    state_dir = settings.state_dir.resolve()
    digest = hashlib.sha256(f"{settings.consumer_group}\0{state_dir}".encode()).hexdigest()[:12]
    name = f"fraudrules-{socket.gethostname()}-{digest}"
    lock = state_dir / f".instance-{digest}.lock"
    if lock in _held:
        return _held[lock]
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        name = f"{name}-{uuid.uuid4().hex[:8]}"
        log.warning(
            "another process uses this state directory; this instance gets a one-off name, so after a crash its "
            "partitions wait for kafka.session_timeout_seconds",
            state_dir=str(state_dir),
            instance=name,
        )
        return name
    _held[lock] = name
    return _announce(settings, name)


def _announce(settings: Settings, name: str) -> str:
    """Say, before the start waits on it, what a start may wait for."""
    if name not in _announced:
        _announced.add(name)
        log.info(
            "joining the consumer group as this instance: a restart under the same name takes its partitions back "
            "at once; those of a member that died under another name wait for its session to time out",
            group=settings.consumer_group,
            instance=name,
            session_timeout_s=settings.kafka.session_timeout_seconds,
        )
    return name
