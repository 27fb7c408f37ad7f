"""Summarise py-spy collapsed stacks (``make bench BENCH_ARGS="--profile DIR"``): where the time goes.

    python benchmarks/profile.py DIR/fraudrules-p1x1-at-least-once-0.txt
    python benchmarks/profile.py --orders 100000 DIR/quix-p1x1-at-least-once-r1-0.txt \\
        DIR/quix-p4x1-at-least-once-r1-0.txt

Prints where the samples of the main thread go, grouped by the first part of the pipeline their stack is in
(the table in BENCHMARKS.md, "Where the time goes"), then by the layer whose code was running (the frame on
top of the stack, a C call counted to the layer that made it: "Scaling" in BENCHMARKS.md), then the
functions with the most samples on top of the stack (self) and anywhere in it (total), the idle time in the
consumer's poll left out of neither.
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from pathlib import Path

#: (group, what a frame of it contains), in the order a sample's stack is matched: the first group any of its
#: frames belongs to takes the sample.
GROUPS = [
    ("checkpoints: the state cache's flush, the changelog produced, RocksDB written, offsets committed", (
        "commit_checkpoint", "Checkpoint.commit")),
    ("Quix state API: reads the cache missed, through the transaction layers and RocksDB", ("quixstreams/state/",)),
    ("the rules (own code)", ("RuleSet.evaluate",)),
    ("scoring and building the verdict", ("score_results", "build_verdict", "Evaluator.verdict")),
    ("fraudrules' join, reorder buffer, chain and state cache (own code)", (
        "OrderJoin.", "Reorder.", "Chain.", "_CachedKeyState", "WriteBackStates", "StoreCaches", "Node.")),
    ("decoding and validation", ("RecordDecoder", "SchemaValidator", "quixstreams/models/serializers")),
    ("producing verdicts and dead letters (bare Quix: its re-key's records and its output)", (
        "Producer.produce", "to_topic")),
    ("consuming", ("consume", "poll_row", "Consumer.poll")),
    ("the rule-set control thread's poll (a C call, not CPU)", ("RuleControl._run",)),
]  # fmt: skip
_REST = "Quix plumbing and the rest"


#: (layer, the files of its frames), matched against the frame on top of the stack; a frame of none of them (the
#: standard library: typing, json) goes to the layer of the frame that called it.
LAYERS = [
    ("the rule-set control thread's poll (a C call, not CPU)", ("RuleControl._run",)),
    ("fraudrules (join, reorder buffers, rules, decoding, validation, verdicts)", ("fraudrules/",)),
    ("the Kafka client (librdkafka calls: produce, poll, flush, consume, commit)", (
        "quixstreams/kafka/", "confluent_kafka/")),
    ("Quix Streams' state: transactions, serialization, RocksDB calls", ("quixstreams/state/", "rocksdict")),
    ("Quix Streams' per-record path (dataframe functions, contexts, topics, checkpoint, internal producer)", (
        "quixstreams/",)),
]  # fmt: skip


def layer_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, parts in LAYERS:
            if any(part in frame for part in parts):
                return name
    return "the interpreter and the rest"


def group_of(frames: list[str]) -> str:
    for name, parts in GROUPS:
        if any(part in frame for frame in frames for part in parts):
            return name
    return _REST


def summarise(path: Path, top: int = 25) -> str:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    groups: Counter[str] = Counter()
    layers: Counter[str] = Counter()
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
        groups[group_of(frames)] += n
        layers[layer_of(frames)] += n
    lines = [f"{samples} samples in {path.name}", "", "| share | where |", "|---:|---|"]
    lines += [f"| {n / samples:.0%} | {name} |" for name, n in groups.most_common()]
    lines += ["", "| share | whose code ran |", "|---:|---|"]
    lines += [f"| {n / samples:.0%} | {name} |" for name, n in layers.most_common()]
    lines += ["", "self:"]
    lines += [f"{n / samples:6.1%}  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "total:"]
    lines += [f"{n / samples:6.1%}  {frame}" for frame, n in total.most_common(top)]
    return "\n".join(lines)


#: py-spy's sampling rate in ``benchmarks/run.py --profile``: samples per second of a thread's time.
RATE_HZ = 50


def _main_thread(frames: list[str]) -> bool:
    return any("Application.run" in frame for frame in frames)


def per_order(path: Path, orders: int) -> tuple[dict[str, float], dict[str, float]]:
    """µs per order of the main thread (Quix Streams' run loop), by part of the pipeline and by layer."""
    groups: defaultdict[str, float] = defaultdict(float)
    layers: defaultdict[str, float] = defaultdict(float)
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not stack or not _main_thread(frames):
            continue
        us = int(count) / RATE_HZ * 1e6 / orders
        groups[group_of(frames)] += us
        layers[layer_of(frames)] += us
    return groups, layers


def compare(before: Path, after: Path, orders: int) -> str:
    """Two profiles of drains of ``orders`` orders side by side, in µs of the main thread per order: what
    ``after`` costs more, and where (BENCHMARKS "Scaling")."""
    a, b = per_order(before, orders), per_order(after, orders)
    lines = []
    for title, x, y in (("part", a[0], b[0]), ("layer", a[1], b[1])):
        lines += [f"| {title} | {before.stem} | {after.stem} | more |", "|---|---:|---:|---:|"]
        for name in sorted(set(x) | set(y), key=lambda k: x.get(k, 0.0) - y.get(k, 0.0)):
            was, now = x.get(name, 0.0), y.get(name, 0.0)
            lines.append(f"| {name} | {was:.0f} | {now:.0f} | {now - was:+.0f} |")
        lines.append(
            f"| all | {sum(x.values()):.0f} | {sum(y.values()):.0f} | {sum(y.values()) - sum(x.values()):+.0f} |"
        )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--orders"]:  # profile.py --orders N BEFORE AFTER
        print(compare(Path(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[2])))
    else:
        for name in sys.argv[1:]:
            print(summarise(Path(name)))
