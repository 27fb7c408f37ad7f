"""Times every state read of a ``fraudrules run`` child, for BENCHMARKS.md ("Where the time goes").

Python imports ``sitecustomize`` at start-up from its path, so with this folder on ``PYTHONPATH`` and
``FRAUDRULES_BENCH_STATE_READS`` naming a folder, each process that reads Quix Streams state writes there, at
exit, ``state-reads-<pid>.json``: how many reads went to RocksDB (hits and misses), and their mean wall time,
RocksDB's own call and the whole read through Quix Streams' transaction. With ``--no-warm-up``, else the
bench's warm-up apps write theirs too. For example::

    FRAUDRULES_BENCH_STATE_READS=/tmp/reads PYTHONPATH=benchmarks/state_reads \\
        .venv/bin/python benchmarks/run.py --orders 3000 --rates 1000 --reorder-bounds '' \\
        --only latency-1000-at-least-once --latency-seconds 30 --no-warm-up --no-markdown

Nothing here runs unless the variable is set; it is a measuring tool, not part of the package.
"""

from __future__ import annotations

import atexit
import json
import os
import time
from pathlib import Path
from typing import Any

_FOLDER = os.environ.get("FRAUDRULES_BENCH_STATE_READS")


def _install(folder: Path) -> None:
    from quixstreams.state.base import transaction
    from quixstreams.state.metadata import Marker
    from quixstreams.state.rocksdb import partition

    absent = Marker.UNDEFINED
    figures = {"hits": 0, "misses": 0, "rocksdb_s": 0.0, "transaction_reads": 0, "transaction_s": 0.0}
    rocksdb_get = partition.RocksDBStorePartition.get
    transaction_get = transaction.PartitionTransaction.get

    def timed_rocksdb_get(self: Any, key: bytes, cf_name: str = "default") -> Any:
        started = time.perf_counter()
        value = rocksdb_get(self, key, cf_name)
        figures["rocksdb_s"] += time.perf_counter() - started
        figures["misses" if value is absent else "hits"] += 1
        return value

    def timed_transaction_get(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        value = transaction_get(self, *args, **kwargs)
        figures["transaction_s"] += time.perf_counter() - started
        figures["transaction_reads"] += 1
        return value

    partition.RocksDBStorePartition.get = timed_rocksdb_get  # type: ignore[method-assign]
    transaction.PartitionTransaction.get = timed_transaction_get  # type: ignore[method-assign]

    def report() -> None:
        reads = figures["hits"] + figures["misses"]
        if not reads:
            return
        summary = {
            "rocksdb_reads": reads,
            "hits": figures["hits"],
            "misses": figures["misses"],
            "rocksdb_us_per_read": round(figures["rocksdb_s"] / reads * 1e6, 2),
            "transaction_reads": figures["transaction_reads"],
            "transaction_us_per_read": round(figures["transaction_s"] / max(1, figures["transaction_reads"]) * 1e6, 2),
        }
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"state-reads-{os.getpid()}.json").write_text(json.dumps(summary) + "\n")

    atexit.register(report)


if _FOLDER:
    _install(Path(_FOLDER))
