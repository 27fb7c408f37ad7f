"""Python's cyclic garbage collector, set for a process that handles records for a long time.

Each record makes and drops hundreds of small dicts and lists (decoded JSON, the join's entry, the rules'
state, the verdict); reference counting frees them, and the cyclic collector, which only looks for cycles,
finds none among them. Three of its habits cost CPU here:

- its full passes scan every object that is tracked, including what start-up made (modules, the topology, the
  rule set), which lives as long as the process: frozen, it is never scanned again (in ``make demo`` the full
  passes took 70-106 ms each before);
- where what the process keeps grows with its input (a backtest keeps every verdict for its report), each pass
  of the middle generation, every 7,000 net allocations by Python's default, moves survivors on to the oldest,
  whose passes then scan the whole run so far: :func:`rarer_middle_generation` runs the middle one five times
  less often. The backtest's CPU per order fell by about a tenth (``benchmarks/pipeline_cpu.py``);
- the live app holds records in memory for a while (the inputs' timestamp-order buffer, up to 10,000 a
  partition; packets; the state cache until a checkpoint), long enough for the middle generation's passes to
  move many of them on to the oldest, whose full passes then come about twice a second, tens of milliseconds
  each (62 in a 4 x 1 drain of 100,000 orders). :data:`LIVE_THRESHOLDS` run the youngest generation after
  10,000 net allocations of containers, the middle after 20 passes of it and the oldest after 100 of the
  middle (CPython 3.11-3.13; 3.14's incremental collector reads them otherwise): in that drain no full pass
  and 15 middle ones instead of 690, and about 13 µs less CPU per order at 4 partitions, ~4 at one
  (BENCHMARKS "Changes and gains"). The price: a cycle that outlives the youngest generation waits longer to
  be collected (the middle's next pass, or a full one).

The freeze and the thresholds are undone on leaving, so that a pipeline restarted in the same process
(``runner.py``) starts afresh and its predecessor's cycles can be collected. For the thread that processes
records: the collector's settings are the process's. Unfreezing is all or nothing: it also moves what the
interpreter froze itself (Python 3.12 starts with a few hundred of its own objects frozen) to the oldest
generation.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

#: The collector's thresholds while the live app processes records (the module docstring).
LIVE_THRESHOLDS = (10_000, 20, 100)

#: How many :func:`processing` blocks are open: only the outermost freezes and unfreezes.
_open = 0


def rarer_middle_generation() -> tuple[int, int, int]:
    """The collector's thresholds in force, with the middle generation run five times less often (a backtest)."""
    young, middle, old = gc.get_threshold()
    return young, middle * 5, old


@contextmanager
def processing(thresholds: tuple[int, int, int] | None = None) -> Iterator[None]:
    """Within: start-up's objects frozen, and the collector's ``thresholds`` if given. Restored on leaving."""
    global _open
    previous = gc.get_threshold()
    if _open == 0:
        gc.freeze()
    _open += 1
    if thresholds is not None:
        gc.set_threshold(*thresholds)
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        _open -= 1
        if _open == 0:
            gc.unfreeze()
