"""Summarise py-spy collapsed stacks (``make bench BENCH_ARGS="--profile DIR"``): where the time goes.

    python benchmarks/profile.py DIR/fraudrules-p1x1-at-least-once-0.txt

Prints the functions with the most samples on top of the stack (self) and anywhere in it (total), the
idle time in the consumer's poll left out of neither.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path


def summarise(path: Path, top: int = 25) -> str:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        samples += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    lines = [f"{samples} samples in {path.name}", "", "self:"]
    lines += [f"{n / samples:6.1%}  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "total:"]
    lines += [f"{n / samples:6.1%}  {frame}" for frame, n in total.most_common(top)]
    return "\n".join(lines)


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(summarise(Path(name)))
