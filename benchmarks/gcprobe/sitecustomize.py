"""Counts the passes of Python's cyclic collector in every process that loads it (BENCHMARKS "Changes and gains").

    GC_PROBE=/tmp/gc PYTHONPATH=benchmarks/gcprobe python benchmarks/run.py ...

Python imports ``sitecustomize`` at start-up from the path, so every process of the run (the bench, each app
instance) loads this; with ``GC_PROBE`` set, each writes ``<GC_PROBE>.<pid>`` when it exits: the passes of each
generation and the process CPU seconds during them (every thread's: the Kafka client's threads run on meanwhile,
so this is an upper bound on the collector's own), then the process's CPU seconds in all.
"""

from __future__ import annotations

import atexit
import gc
import os
import time
from typing import Any

_PROBE = os.environ.get("GC_PROBE")
_passes = [0, 0, 0]
_seconds = [0.0, 0.0, 0.0]
_started = [0.0]


def _timed(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.process_time()
        return
    generation = info["generation"]
    _passes[generation] += 1
    _seconds[generation] += time.process_time() - _started[0]


def _report() -> None:
    with open(f"{_PROBE}.{os.getpid()}", "w") as out:
        seconds = ", ".join(f"{s:.2f}" for s in _seconds)
        total = time.process_time()
        out.write(f"passes by generation {_passes}; CPU s during them {seconds}; CPU s in all {total:.2f}\n")


if _PROBE:
    gc.callbacks.append(_timed)
    atexit.register(_report)
