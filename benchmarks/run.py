"""``make bench``: throughput, latency and memory of fraudrules against its baselines, in one run.

On a broker of its own (kafka/localkafka.py, free ports), with the same generated data for every run:

1. drain: N orders (2N messages, 5% payments without an order) pre-loaded, then the app started; orders/s
   from the moment the first instance holds partitions (with several, it reads alone until the others join:
   that counts) to the last verdict, start-up time,
   peak RSS (and RSS over the run), state on disk.
   fraudrules at 1 partition and at 4 with 1 and 2 instances, at-least-once and exactly-once; the raw
   confluent-kafka loop and the bare Quix Streams app (benchmarks/baselines.py) on the same data.
   With --rounds N every drain runs N times, round after round, and the table shows each run's median
   round and the range; each ratio (to bare Quix, to fraudrules at 1 x 1) is the median over rounds of
   each round's ratio, so a machine that is slower for a while weighs on both sides of each ratio.
2. latency: live traffic at fixed offered rates (orders/s) for a fixed time; from producing an order's
   second record to reading its verdict (read_committed, fetch.wait.max.ms 10).

Every data set is loaded first; then six drains kept out of the table warm the new broker's JVM up
(``warm_up``; --no-warm-up: not).
Results go to benchmarks/results/<UTC time>.json and latest.json, and the table in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from fraudrules import codec
from fraudrules.generate.data import Generator, GeneratorConfig
from fraudrules.kafka_tools.harness import (
    IN_ORDER,
    PipelineProcess,
    TopicReader,
    create_topics,
    group_members,
    percentile,
    produce_paced,
    whole_partition,
)
from fraudrules.kafka_tools.localkafka import LocalKafka, free_port
from fraudrules.pipeline.nodes.packets import packet_items
from fraudrules.settings import KafkaSettings, ProcessingGuarantee, Settings, TopicNames

ROOT = Path(__file__).resolve().parent.parent

RESULTS = ROOT / "benchmarks" / "results"
MARKDOWN = ROOT / "BENCHMARKS.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
#: The kinds of drain that run fraudrules itself (not a baseline).
OURS = ("fraudrules", "analyst")
#: Orders of each warm-up drain (``warm_up``).
WARM_UP_ORDERS = 20_000
#: Warm-up drains, each guarantee in turn: in the runs of 2026-12-05 the compiler still took 22-43 µs per order
#: in the last exactly-once one (``results/*.json``, ``warm_up``), and 0-31 in the drains recorded after.
WARM_UP_DRAINS = 6
#: Set by --commit-interval: fraudrules' ``commit_interval_seconds`` in every run (None: the setting's default).
COMMIT_INTERVAL_S: float | None = None
#: Set by --profile: fraudrules drains run under py-spy, their stacks written here.
PROFILE_DIR: Path | None = None
#: ``--producer-batch-bytes``: the preloading producer's ``batch.size`` (librdkafka's default, 1 MB, unless told):
#: a consumer gets a partition's records a producer batch at a time at least (KIP-74).
PRODUCER_BATCH_BYTES = 1_000_000
#: ``--changelog-keys``: read every changelog record a drain wrote back and count them by the kind of state key.
CHANGELOG_KEYS = False
SCENARIOS = {"orphan_payment": 0.05, "amount_spike": 0.005, "category_shift": 0.005, "province_burst": 0.001}


@dataclass
class Dataset:
    partitions: int
    topics: TopicNames
    orders: int
    messages: int
    joined: int


@dataclass
class Run:
    """One process group under measurement: its processes, RSS samples and output count."""

    processes: list[subprocess.Popen[bytes]]
    state_dirs: list[Path]
    started: float = field(default_factory=time.monotonic)
    ready: float | None = None
    active: float | None = None
    profilers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    rss_mb: list[list[float]] = field(default_factory=list)
    #: CPU seconds (user + system) of all processes when the drain began and when its last output was read.
    cpu_at_active: float | None = None
    cpu_at_end: float | None = None
    #: The same for the broker, and the whole machine's busy CPU seconds (every process, /proc/stat).
    broker_cpu: tuple[float, float] = (0.0, 0.0)
    #: ... of which its JVM's JIT compiler threads (a broker still warming up)
    broker_compiler_cpu: tuple[float, float] = (0.0, 0.0)
    machine_busy: tuple[float, float] = (0.0, 0.0)


#: The broker's process (set once it runs): its CPU per order is reported beside the app's.
BROKER_PID: int | None = None


def preload(bootstrap: str, partitions: int, orders: int, seed: int) -> Dataset:
    """Generated orders with recent timestamps, record i of each topic on partition i mod ``partitions``: the
    shape two independent producers leave (an order's sides mostly on different partitions)."""
    tag = f"p{partitions}-{time.monotonic_ns()}"
    topics = TopicNames(payment=f"bench-payment-{tag}", order=f"bench-order-{tag}")
    create_topics(bootstrap, [topics.payment, topics.order], partitions)
    start_ms = int(time.time() * 1000) - orders * 500 - 120_000
    generator = Generator(GeneratorConfig(count=orders, seed=seed, start_ms=start_ms, scenario_rates=SCENARIOS))
    produced = produce_paced(
        bootstrap,
        topics,
        generator.records(),
        scatter=partitions,
        producer_config={"linger.ms": 20, "batch.size": PRODUCER_BATCH_BYTES},
    )
    return Dataset(partitions, topics, orders, produced.records, len(produced.joined))


def warm_up(bootstrap: str, work: Path) -> list[dict[str, Any]]:
    """Drains kept out of the table (4 partitions, each guarantee in turn; the results file has them under
    ``warm_up``), before the first run that is measured: a new broker's JVM compiles its hot paths (C1 and C2
    compiler threads) for minutes, and on two shared cores that work landed on whichever runs came first (278 of
    the broker's 482 µs per order in a first drain, ``results/20261205T072646+0000.json``)."""
    began = time.monotonic()
    dataset = preload(bootstrap, 4, WARM_UP_ORDERS, seed=6)
    drains = []
    for warm in range(WARM_UP_DRAINS):
        guarantee: ProcessingGuarantee = ("at-least-once", "exactly-once")[warm % 2]
        drains.append(drain(bootstrap, work, dataset, "fraudrules", guarantee, 1, profile=False))
    print(f"warmed the broker up in {time.monotonic() - began:.0f}s", flush=True)
    return drains


def fraudrules_settings(
    bootstrap: str, group: str, topics: TopicNames, sink: str, guarantee: ProcessingGuarantee, state: Path
) -> Settings:
    """``fraudrules run`` on the benchmark's topics, with its own group and state."""
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=bootstrap),
        consumer_group=group,
        topics=topics.model_copy(update={"sink": sink, "deadletter": f"{sink}-deadletter"}),
        processing_guarantee=guarantee,
        state_dir=state,
        log_level="WARNING",
    )
    if COMMIT_INTERVAL_S is None:
        return settings
    return settings.model_copy(update={"commit_interval_seconds": COMMIT_INTERVAL_S})


def baseline_process(
    kind: str,
    bootstrap: str,
    group: str,
    topics: TopicNames,
    sink: str,
    guarantee: ProcessingGuarantee,
    state: Path,
    log: Path,
) -> subprocess.Popen[bytes]:
    """``benchmarks/baselines.py`` ``kind`` (raw or quix) as its own process."""
    command = [
        sys.executable, str(ROOT / "benchmarks" / "baselines.py"), kind, "--bootstrap", bootstrap,
        "--group", group, "--payment", topics.payment, "--order", topics.order, "--sink", sink,
        "--guarantee", guarantee, "--state-dir", str(state),
    ]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(command, stderr=out, stdout=out, stdin=subprocess.DEVNULL)


def rss_mb(pid: int, field_name: str = "VmRSS") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _stat_cpu_seconds(stat: Path) -> float:
    """User + system CPU seconds in a ``/proc/.../stat`` file (a process's or a thread's); OSError if it is gone."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads) so far, or 0 if it is gone."""
    try:
        return _stat_cpu_seconds(Path(f"/proc/{pid}/stat"))
    except OSError:
        return 0.0


def compiler_cpu_seconds(pid: int) -> float:
    """CPU seconds of the JIT compiler threads (``C1 CompilerThre…``, ``C2 CompilerThre…``) of JVM ``pid`` that
    are alive: a lower bound where the JVM stops compiler threads it added (on machines with more cores)."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            if (task / "comm").read_text().startswith(("C1 Compiler", "C2 Compiler")):
                total += _stat_cpu_seconds(task / "stat")
        except OSError:  # a thread that ended
            continue
    return total


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine has spent busy (not idle or waiting for I/O) since boot."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait


def internal_records(bootstrap: str, group: str) -> tuple[dict[str, int], dict[str, int]]:
    """Records the app wrote to topics of its own, by kind: ``changelog`` (its state stores', named
    ``changelog__<group>--...`` by Quix Streams) and ``internal`` (sides, rule groups: ``fraudrules-...--<group>``),
    and by topic (its name without the group). Offsets, so under exactly-once a transaction's commit marker counts
    as one."""
    topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{group}-count"})
    counts = {"changelog": 0, "internal": 0}
    by_topic: dict[str, int] = {}
    try:
        for name, topic in topics.items():
            if not name.endswith(f"--{group}") and f"__{group}--" not in name:
                continue
            kind = "changelog" if name.startswith("changelog__") else "internal"
            short = name.replace(f"{group}--", "").replace(f"--{group}", "")
            for partition in topic.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=10)
                counts[kind] += high - low
                by_topic[short] = by_topic.get(short, 0) + high - low
    finally:
        consumer.close()
    return counts, by_topic


def changelog_keys(bootstrap: str, group: str) -> dict[str, int]:
    """Every record of the app's changelog topics, counted by the kind of state key it writes (its prefix and
    key with digits folded, ``N``) and whether it is a value or a tombstone (``--changelog-keys``): what each
    part of the state costs the changelog."""
    topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{group}-keys", "enable.auto.commit": False})
    kinds: dict[str, int] = {}
    try:
        for name, topic in topics.items():
            if not name.startswith(f"changelog__{group}--"):
                continue
            store = name.removeprefix(f"changelog__{group}--").replace(f"--{group}", "")
            for partition in topic.partitions:
                for message in whole_partition(consumer, name, partition):
                    prefix, _, key = (message.key() or b"").partition(b"|")
                    shape = re.sub(rb"[0-9]+", b"N", prefix)[:40] + b" | " + re.sub(rb"[0-9]+", b"N", key)[:40]
                    kind = f"{store}: {shape.decode(errors='replace')}" + (
                        " (tombstone)" if message.value() is None else ""
                    )
                    kinds[kind] = kinds.get(kind, 0) + 1
    finally:
        consumer.close()
    return kinds


def read_skew(bootstrap: str, group: str) -> dict[str, float]:
    """How unevenly the app read its input partitions, from the sides topic (``--changelog-keys``): a side goes
    there the moment its input record is read, so each partition of it lists its sides in the order they were
    read. For each side: the spread between the input partitions' highest timestamps read so far (seconds of
    event time), and whether some input partition had delivered nothing to that join partition yet."""
    name = f"fraudrules-sides--{group}"
    topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
    if name not in topics:
        return {}
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{group}-skew", "enable.auto.commit": False})
    sources = 2 * len(topics[name].partitions)  # payment and order partitions: as many as the sides topic has
    spreads: list[float] = []
    unseen = 0
    try:
        for partition in topics[name].partitions:
            highest: dict[tuple[str, int], int] = {}
            for message in whole_partition(consumer, name, partition):
                value = json.loads(message.value() or b"null")
                for timestamp, item in packet_items(value, message.timestamp()[1]):
                    if not isinstance(item, dict) or "side" not in item:
                        continue  # progress records, dead letters
                    source = (item["side"], item["source"]["partition"])
                    highest[source] = max(highest.get(source, -1), timestamp)
                    if len(highest) < sources:
                        unseen += 1
                    else:
                        spreads.append((max(highest.values()) - min(highest.values())) / 1000)
    finally:
        consumer.close()
    spreads.sort()
    total = unseen + len(spreads)
    if not total:
        return {}
    skew: dict[str, float] = {"sides_before_every_input_seen": round(unseen / total, 3)}
    for label, q in (("spread_s_p50", 0.5), ("spread_s_p99", 0.99)):
        if spreads:
            skew[label] = round(spreads[min(len(spreads) - 1, int(q * len(spreads)))], 1)
    return skew


def dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6 if path.exists() else 0.0


def _mark_start(run: Run) -> None:
    """The broker's CPU, its compiler's and the machine's busy time as the drain's start."""
    run.broker_cpu = (cpu_seconds(BROKER_PID) if BROKER_PID else 0.0, 0.0)
    run.broker_compiler_cpu = (compiler_cpu_seconds(BROKER_PID) if BROKER_PID else 0.0, 0.0)
    run.machine_busy = (machine_busy_seconds(), 0.0)


def measure(run: Run, counter: TopicReader, target: int, timeout: float, bootstrap: str, group: str) -> None:
    """Wait until ``target`` outputs were read, sampling each process's RSS every half second.

    ``run.active`` is when a member of the group first held partitions (the drain's start: from then on an
    instance may read, alone until the others join), ``run.ready`` when the group first became stable with every
    process in it (to within the half second between two looks). Until a member holds partitions the group is
    asked every 0.1 s. The CPU per order counts from ``active`` too: an instance that joins later is charged its
    own start-up and the rebalance, as a deployment pays them.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    _mark_start(run)  # from the start, in case the group is never seen before the last output
    next_sample = 0.0
    while counter.count < target:
        if run.ready is None:
            members, assigned = group_members(admin, group)
            everyone = members == len(run.processes)
            if run.active is None and (assigned or everyone):
                run.active = time.monotonic()
                run.cpu_at_active = sum(cpu_seconds(p.pid) for p in run.processes)
                _mark_start(run)
            if everyone:
                run.ready = time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{counter.count} of {target} outputs after {timeout:.0f}s")
        for process in run.processes:
            if process.poll() is not None:
                raise RuntimeError(f"process {process.args!r} exited with {process.returncode}")
        if time.monotonic() >= next_sample:
            run.rss_mb.append([rss_mb(p.pid) for p in run.processes])
            next_sample = time.monotonic() + 0.5
        time.sleep(0.1 if run.active is None else 0.5)  # once one reads, the group is asked as often as before
    run.cpu_at_end = sum(cpu_seconds(p.pid) for p in run.processes)
    run.broker_cpu = (run.broker_cpu[0], cpu_seconds(BROKER_PID) if BROKER_PID else 0.0)
    run.broker_compiler_cpu = (run.broker_compiler_cpu[0], compiler_cpu_seconds(BROKER_PID) if BROKER_PID else 0.0)
    run.machine_busy = (run.machine_busy[0], machine_busy_seconds())


def stop(run: Run) -> list[float]:
    """SIGTERM every process; returns each one's peak RSS (MB) read just before."""
    peaks = [rss_mb(p.pid, "VmHWM") for p in run.processes]
    for profiler in run.profilers:  # py-spy writes its output on SIGINT
        profiler.send_signal(signal.SIGINT)
        profiler.wait(60)
    for process in run.processes:
        process.send_signal(signal.SIGTERM)
    for process in run.processes:
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
    return peaks


#: The ``analyst`` runs: fraudrules with what analysts add without code (BENCHMARKS "Lists and expression rules").
ANALYST_EXPRESSIONS = {
    "big_payment": "event.payAmount > 900000.0",
    "big_on_platform_2": "event.payAmount > 500000.0 && event.payPlatform == 2",
    "province_9_big": "event.provinceId == 9 && event.payAmount > 250000.0",
    "whole_amount": "event.payAmount == double(int(event.payAmount)) && event.payAmount > 1000.0",
    "tiny_amount": "event.payAmount < 1.0",
    "order_without_category": "has(order.merchantId) && !has(order.category)",
    "category_mismatch": "event.category == 'travel' && event.payPlatform == 0",
    "merchant_watch_big": "event.merchantId in lists.watched_merchants && event.payAmount > 100000.0",
    "high_province": "event.provinceId > 30",
    "no_order_big": "event.joinStatus == 'payment_only' && event.payAmount > 100000.0",
}
ANALYST_LIST_SIZE = 100_000


def analyst_settings(work: Path) -> Path:
    """A settings file with 10 expression rules and 3 lists of 100,000 values (written once)."""
    path = work / "analyst.toml"
    if path.exists():
        return path
    lines = []
    for name, when in ANALYST_EXPRESSIONS.items():
        lines += [f"[expressions.{name}]", f"when = {json.dumps(when)}", "score = 10", f'reason = "{name}"', ""]
    lists = {
        "blocked_merchants": ("merchantId", "decline", [f"m-{i}" for i in range(ANALYST_LIST_SIZE)]),
        "watched_merchants": ("merchantId", "review", [str(10_000_000 + i) for i in range(ANALYST_LIST_SIZE)]),
        "trusted_orders": ("orderId", "approve", [str(i) for i in range(ANALYST_LIST_SIZE)]),
    }
    for name, (key, action, values) in lists.items():
        lines += [f"[lists.{name}]", f'field = "{key}"', f'action = "{action}"', f"values = {json.dumps(values)}", ""]
    path.write_text("\n".join(lines))
    return path


def drain(
    bootstrap: str,
    work: Path,
    dataset: Dataset,
    kind: str,
    guarantee: ProcessingGuarantee,
    instances: int,
    round_: int = 1,
    profile: bool = True,
) -> dict[str, Any]:
    """Start ``instances`` processes of ``kind`` on the pre-loaded ``dataset`` and time them draining it (round
    ``round_``; under py-spy with --profile, unless not ``profile``)."""
    name = f"{kind}-p{dataset.partitions}x{instances}-{guarantee}"
    sink = f"bench-sink-{name}-{time.monotonic_ns()}"
    create_topics(bootstrap, [sink], dataset.partitions)
    group = f"bench-{sink}"
    states = [work / f"state-{sink}-{i}" for i in range(instances)]
    target = {"fraudrules": dataset.orders, "analyst": dataset.orders, "quix": dataset.joined, "raw": dataset.messages}[
        kind
    ]
    counter = TopicReader(bootstrap, [sink])
    processes = []
    for state in states:
        log = work / f"{name}.log"
        if kind in OURS:
            settings = fraudrules_settings(bootstrap, group, dataset.topics, sink, guarantee, state)
            config = analyst_settings(work) if kind == "analyst" else None
            processes.append(PipelineProcess(settings, log, config=config).process)
            continue
        processes.append(baseline_process(kind, bootstrap, group, dataset.topics, sink, guarantee, state, log))
    run = Run(processes, states)
    if profile and PROFILE_DIR is not None and kind != "raw":  # sample each instance with py-spy (profile.py)
        run.profilers = [
            subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "--format", "raw", "--rate", "50",
                 "--pid", str(p.pid), "-o", str(PROFILE_DIR / f"{name}-r{round_}-{i}.txt")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            for i, p in enumerate(processes)
        ]  # fmt: skip
    try:
        measure(run, counter, target, max(600.0, dataset.orders / 100), bootstrap, group)
    finally:
        peaks = stop(run)
        counter.close()
    assert counter.last is not None
    written, by_topic = internal_records(bootstrap, group)
    keys = changelog_keys(bootstrap, group) if CHANGELOG_KEYS and kind in OURS else {}
    skew = read_skew(bootstrap, group) if CHANGELOG_KEYS and kind in OURS else {}
    # from the moment the first instance had partitions (or the first output, if that came first) to the last
    # output: with several instances, the first reads alone until the others join, and that counts
    began = min(run.active or run.ready or run.started, counter.first or run.started)
    seconds = counter.last - began
    samples = [sum(sample) for sample in run.rss_mb if all(sample)]
    quarter = max(1, len(samples) // 4)
    result = {
        "name": name,
        "kind": kind,
        "partitions": dataset.partitions,
        "instances": instances,
        "guarantee": guarantee,
        "round": round_,
        "orders": dataset.orders,
        "input_messages": dataset.messages,
        "outputs": counter.count,
        "startup_seconds": round(began - run.started, 2),
        # of the drain, how long the first instance had partitions before every instance had (several)
        # (None: several instances, never all seen in the group before the last output)
        "alone_seconds": (
            None if run.ready is None and instances > 1 else round(max(0.0, (run.ready or began) - began), 2)
        ),
        "drain_seconds": round(seconds, 2),
        # an order's way through the app and its first checkpoints, paid once per drain
        "first_output_seconds": round((counter.first or began) - began, 2),
        "orders_per_second": round(dataset.orders / seconds),
        "messages_per_second": round(dataset.messages / seconds),
        # the app's own CPU per order over the drain (steadier than orders/s: the broker shares the cores)
        "cpu_us_per_order": (
            None
            if run.cpu_at_active is None or run.cpu_at_end is None
            else round((run.cpu_at_end - run.cpu_at_active) * 1e6 / dataset.orders)
        ),
        # beside it, the broker's CPU per order and the cores the whole machine kept busy (app, broker, reader)
        "broker_cpu_us_per_order": round((run.broker_cpu[1] - run.broker_cpu[0]) * 1e6 / dataset.orders),
        # of which its JIT compiler (high: the broker was still warming up, and took cores from the app)
        "broker_compiler_cpu_us_per_order": round(
            max(0.0, run.broker_compiler_cpu[1] - run.broker_compiler_cpu[0]) * 1e6 / dataset.orders
        ),
        "busy_cores": round((run.machine_busy[1] - run.machine_busy[0]) / seconds, 2),
        # what the app wrote through the broker besides its verdicts, per order (whole run, start-up included)
        "changelog_records_per_order": round(written["changelog"] / dataset.orders, 2),
        "internal_records_per_order": round(written["internal"] / dataset.orders, 2),
        "records_per_order_by_topic": {name: round(n / dataset.orders, 2) for name, n in sorted(by_topic.items())},
        **(
            {"changelog_per_order_by_key": {k: round(n / dataset.orders, 3) for k, n in sorted(keys.items())}}
            if keys
            else {}
        ),
        **({"read_skew": skew} if skew else {}),
        "peak_rss_mb": [round(p, 1) for p in peaks],
        "rss_mb_by_quarter": [round(s, 1) for s in samples[quarter - 1 :: quarter][:4]],
        "state_mb": round(sum(dir_mb(s) for s in states), 1),
    }
    print(json.dumps(result), flush=True)
    return result


def latency(
    bootstrap: str,
    work: Path,
    rate: int,
    seconds: int,
    guarantee: ProcessingGuarantee,
    seed: int,
    reorder_bound_ms: int | None = None,
    kind: str = "fraudrules",
    partitions: int = 1,
) -> dict[str, Any]:
    """Live traffic at ``rate`` orders/s for ``seconds``: produce time of an order's second record -> verdict read.

    ``partitions``: of the input topics, record i of each on partition i mod ``partitions`` (two independent
    producers' shape: an order's sides mostly apart).

    ``reorder_bound_ms``: the setting's value for this run (None: its default). ``kind``: ``fraudrules``, or
    ``quix`` for the bare Quix Streams join (``baselines.py``), whose every output is a joined order.
    """
    tag = f"latency-{kind}-{rate}-{guarantee}-{time.monotonic_ns()}"
    topics = TopicNames(payment=f"bench-payment-{tag}", order=f"bench-order-{tag}")
    sink = f"bench-sink-{tag}"
    create_topics(bootstrap, [topics.payment, topics.order], partitions)
    create_topics(bootstrap, [sink], 1)
    generator = Generator(GeneratorConfig(count=rate * seconds, seed=seed, scenario_rates=SCENARIOS))
    records = list(generator.records())  # generated before the clock starts
    arrived: dict[int, float] = {}
    joined: set[int] = set()

    in_app: dict[int, float] = {}

    def on_verdict(message: Message, now: float) -> None:
        verdict = codec.loads(message.value())
        arrived.setdefault(verdict["orderId"], now)
        if "latencyMs" in verdict:  # from the later side's Kafka timestamp to the verdict's making, in the app
            in_app.setdefault(verdict["orderId"], verdict["latencyMs"])
        if kind == "quix" or verdict["join"]["status"] == "joined":
            joined.add(verdict["orderId"])

    state = work / f"state-{tag}"
    settings = fraudrules_settings(bootstrap, f"bench-{tag}", topics, sink, guarantee, state)
    if reorder_bound_ms is not None:
        settings = settings.model_copy(update={"reorder_bound_ms": reorder_bound_ms})
    if kind == "fraudrules":
        pipeline = PipelineProcess(settings, work / f"{tag}.log")
        process, check = pipeline.process, pipeline.check
    else:
        process = baseline_process(kind, bootstrap, f"bench-{tag}", topics, sink, guarantee, state, work / f"{tag}.log")

        def check() -> None:
            assert process.poll() is None, f"the {kind} baseline exited ({process.returncode})"

    run = Run([process], [state])
    counter = TopicReader(bootstrap, [sink], on_message=on_verdict)
    try:  # the app is stopped whatever happens from here (a failure, a SIGTERM)
        # warm-up: one order through, so that start-up is not measured; by the producer that then sends the run
        # (a new one holds the first records until it has its connection, metadata and producer id)
        warm = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1, **IN_ORDER})
        common = {"createTime": "2026-01-01 00:00:00", "orderId": 1}
        warm.produce(topics.payment, value=codec.dumps({**common, "payAmount": 1.0, "payPlatform": 0, "provinceId": 0}))
        warm.produce(topics.order, value=codec.dumps({**common, "category": "warm", "merchantId": 0}))
        warm.flush(30)
        deadline = time.monotonic() + 120
        while 1 not in arrived and time.monotonic() < deadline:
            time.sleep(0.1)
        started = time.monotonic()
        cpu_started = cpu_seconds(process.pid)
        produced = produce_paced(
            bootstrap,
            topics,
            records,
            rate=rate,
            timestamps=False,
            scatter=partitions,
            producer=warm,
        )
        offered_seconds = time.monotonic() - started
        # payments without an order wait for the join window and for later traffic: wait for the joined ones
        sent = {order_id: produced.sent[order_id] for order_id in produced.joined}
        deadline = time.monotonic() + 300
        while not sent.keys() <= arrived.keys() and time.monotonic() < deadline:
            check()
            run.rss_mb.append([rss_mb(process.pid)])
            time.sleep(0.5)
        cpu = cpu_seconds(process.pid) - cpu_started
    finally:
        peaks = stop(run)
        counter.close()
    ms = [(arrived[i] - sent[i]) * 1000 for i in sent if i in arrived and i in joined]
    # in the order sent: a median that climbs quarter by quarter means the app is falling behind the rate
    measured = [i for i in sorted(sent, key=sent.__getitem__) if i in arrived and i in joined]
    in_order = [(arrived[i] - sent[i]) * 1000 for i in measured]
    quarters = [in_order[len(in_order) * q // 4 : len(in_order) * (q + 1) // 4] for q in range(4)]
    # The split: inside the app (consumer fetch wait, decode, join, reorder wait, rules, verdict), then out of it
    # (producing the verdict, the checkpoint's flush and commit, the reader's fetch).
    inside = [in_app[i] for i in sent if i in arrived and i in joined and i in in_app]
    outside = [(arrived[i] - sent[i]) * 1000 - in_app[i] for i in sent if i in arrived and i in joined and i in in_app]
    split = {}
    if inside:
        split = {
            "in_app_p50_ms": round(percentile(inside, 0.50), 1),
            "in_app_p99_ms": round(percentile(inside, 0.99), 1),
            "after_verdict_p50_ms": round(percentile(outside, 0.50), 1),
            "after_verdict_p99_ms": round(percentile(outside, 0.99), 1),
        }
    result = {
        "name": f"latency-{kind}-{rate}-{guarantee}"
        if partitions == 1
        else f"latency-{kind}-p{partitions}-{rate}-{guarantee}",
        "kind": kind,
        "partitions": partitions,
        "guarantee": guarantee,
        "reorder_bound_ms": settings.reorder_bound_ms if kind == "fraudrules" else None,
        "commit_interval_seconds": settings.commit_interval() if kind == "fraudrules" else None,
        "offered_orders_per_second": rate,
        "achieved_orders_per_second": round(produced.orders / offered_seconds),
        "orders": produced.orders,
        "measured": len(ms),
        "p50_ms": round(percentile(ms, 0.50), 1),
        "p95_ms": round(percentile(ms, 0.95), 1),
        "p99_ms": round(percentile(ms, 0.99), 1),
        "max_ms": round(max(ms), 1) if ms else None,
        "p50_ms_by_quarter": [round(percentile(q, 0.50), 1) for q in quarters if q],
        # without the first quarter, where the app (and Quix's own start, for the baseline) settles
        "steady_p99_ms": round(percentile(in_order[len(in_order) // 4 :], 0.99), 1),
        **split,
        # the app's CPU from the first order offered to the last verdict read, per order offered
        "cpu_us_per_order": round(cpu / produced.orders * 1e6) if produced.orders else None,
        "peak_rss_mb": [round(p, 1) for p in peaks],
    }
    print(json.dumps(result), flush=True)
    return result


def validation_cost(records: int = 20_000, rounds: int = 5) -> dict[str, Any]:
    """Microseconds per record for decoding and validating seed-format records (the pipeline's decoder)."""
    from fraudrules.pipeline.decode import RecordDecoder

    generator = Generator(GeneratorConfig(count=records // 2, seed=9))
    decoders = {"payment": RecordDecoder("payment"), "order": RecordDecoder("order")}
    values = [(decoders[r.topic], r.value) for r in generator.records()]
    best = float("inf")
    for _ in range(rounds):
        began = time.perf_counter()
        for decode, value in values:
            decode(value)
        best = min(best, time.perf_counter() - began)
    result = {"records": len(values), "microseconds_per_record": round(best / len(values) * 1e6, 2)}
    print(json.dumps({"validation": result}), flush=True)
    return result


def backtest_speed(orders: int = 50_000, rounds: int = 3) -> dict[str, Any]:
    """Orders per second of ``fraudrules backtest`` over files (built-in rules, one core, no broker)."""
    from pipeline_cpu import timed_backtests  # benchmarks/, this script's folder

    best = max(summary["orders_per_second"] for _, summary in timed_backtests(orders, rounds))
    figures = {"orders": orders, "orders_per_second": best}
    print(json.dumps({"backtest": figures}), flush=True)
    return figures


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {"cores": os.cpu_count(), "cpu": model, "python": platform.python_version(), "system": platform.platform()}


def _cpu(result: dict[str, Any]) -> str:
    cpu = result.get("cpu_us_per_order")
    return "" if cpu is None else f"{cpu:,}"


def _broker_cpu(result: dict[str, Any]) -> str:
    """The broker's CPU per order, with its JIT compiler's share when that was noticeable (still warming up)."""
    cpu, compiler = result.get("broker_cpu_us_per_order", 0), result.get("broker_compiler_cpu_us_per_order", 0)
    return f"{cpu:,}" + (f" ({compiler:,} JIT)" if compiler >= 5 else "")


def by_run(drains: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The drains by run name, in the order first run, each name's rounds in order."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for drain_ in drains:
        runs.setdefault(drain_["name"], []).append(drain_)
    return runs


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The round whose orders/s is the median (the lower of the middle two of an even number)."""
    ranked = sorted(runs, key=lambda run: run["orders_per_second"])
    return ranked[(len(ranked) - 1) // 2]


def paired_ratio(runs: list[dict[str, Any]], bases: list[dict[str, Any]] | None) -> float | None:
    """The median over rounds of each round's ratio, a run's orders/s over ``bases``' in the same round (the lower
    of the middle two of an even number, as :func:`median_run`; None: no base run)."""
    if not bases:
        return None
    base_of = {base.get("round", 1): base["orders_per_second"] for base in bases}
    ratios = [run["orders_per_second"] / base_of[run.get("round", 1)] for run in runs if run.get("round", 1) in base_of]
    return statistics.median_low(ratios) if ratios else None


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    validation = results["validation"]
    lines = [
        f"Measured {results['when']} on {m['cores']} cores ({m['cpu']}), Python {m['python']}, broker on the same "
        f"machine. Command: `{results['command']}`.",
        "",
        f"Validation (decode + schema, seed records): {validation['microseconds_per_record']} µs per record.",
        "",
        f"Backtest over files (`fraudrules backtest`, built-in rules, one core, no broker, "
        f"{results['backtest']['orders']:,} labelled orders): {results['backtest']['orders_per_second']:,} orders/s.",
        "",
        *(
            [f"Every drain ran {repeats} times, round after round: each row is its median round (orders/s: the range "
             "in brackets); each ratio is the median over rounds of that round's ratio.", ""]
            if (repeats := max((r.get("round", 1) for r in results["drain"]), default=1)) > 1
            else []
        ),
        "| run | partitions x instances | guarantee | orders/s | vs 1 x 1 | input msgs/s | vs bare Quix "
        "| app CPU µs per order | broker CPU µs per order | busy cores | changelog / internal records per order "
        "| start-up s | of the drain, one instance alone s | peak RSS MB | RSS by quarter MB | state MB |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]  # fmt: skip
    rounds = by_run(results["drain"])
    for runs in rounds.values():
        r = median_run(runs)
        guarantee = r["guarantee"]
        bare = rounds.get(f"quix-p1x1-{guarantee}") or rounds.get("quix-p1x1-at-least-once")
        single = rounds.get(f"{r['kind']}-p1x1-{guarantee}")  # fraudrules against its own, bare Quix against its own
        ours = r["kind"] in OURS
        vs_bare = paired_ratio(runs, bare) if ours else None
        vs_single = paired_ratio(runs, single) if r["kind"] in ("fraudrules", "quix") else None
        speed = f"{r['orders_per_second']:,}"
        if len(runs) > 1:
            speeds = [run["orders_per_second"] for run in runs]
            speed += f" ({min(speeds):,}-{max(speeds):,})"
        lines.append(
            f"| {r['kind']} | {r['partitions']} x {r['instances']} | {guarantee} | {speed} | "
            f"{'' if vs_single is None else f'{vs_single:.2f}'} | {r['messages_per_second']:,} | "
            f"{'' if vs_bare is None else f'{vs_bare:.0%}'} | {_cpu(r)} | {_broker_cpu(r)} | "
            f"{r.get('busy_cores', '')} | {r.get('changelog_records_per_order', '')} / "
            f"{r.get('internal_records_per_order', '')} | {r['startup_seconds']} | "
            f"{_or_dash(r.get('alone_seconds'))} | "
            f"{' + '.join(str(p) for p in r['peak_rss_mb'])} | "
            f"{' → '.join(str(s) for s in r['rss_mb_by_quarter'])} | {r['state_mb']} |"
        )
    lines += [
        "",
        "| latency run | partitions | reorder_bound_ms | offered orders/s | achieved | p50 ms | p95 ms | p99 ms "
        "| max ms | p99 after the first quarter ms | that vs bare Quix | in the app p50 / p99 ms "
        "| after the verdict p50 / p99 ms | p50 by quarter ms | app CPU µs per order |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---:|",
    ]
    quix_p99 = {
        r["offered_orders_per_second"]: r.get("steady_p99_ms") for r in results["latency"] if r.get("kind") == "quix"
    }
    for r in results["latency"]:
        kind = r.get("kind", "fraudrules")
        base = quix_p99.get(r["offered_orders_per_second"])
        steady = r.get("steady_p99_ms")
        ratio = f"{steady / base:.1f} x" if base and steady and kind == "fraudrules" else ""
        split = [
            f"{r[f'{part}_p50_ms']} / {r[f'{part}_p99_ms']}" if f"{part}_p50_ms" in r else ""
            for part in ("in_app", "after_verdict")
        ]
        lines.append(
            f"| {kind} {r['guarantee']} | {r.get('partitions', 1)} | {_or_dash(r.get('reorder_bound_ms'))} | "
            f"{r['offered_orders_per_second']:,} | "
            f"{r['achieved_orders_per_second']:,} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | {r['max_ms']} | "
            f"{_or_dash(steady)} | {ratio} | {split[0]} | {split[1]} | "
            f"{' → '.join(str(q) for q in r.get('p50_ms_by_quarter', []))} | {_cpu(r)} |"
        )
    return "\n".join(lines)


def _or_dash(value: Any) -> str:
    return "-" if value is None else str(value)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=200_000, help="orders pre-loaded for the drain runs")
    parser.add_argument(
        "--rounds",
        type=_positive,
        default=1,
        help="run every drain this many times, round after round; report medians",
    )
    parser.add_argument(
        "--no-warm-up",
        dest="warm_up",
        action="store_false",
        help="measure from a cold broker (by default six drains kept out of the table warm it first)",
    )
    parser.add_argument("--latency-seconds", type=int, default=20)
    parser.add_argument("--rates", default="200,1000", help="offered orders/s of the latency runs")
    parser.add_argument(
        "--latency-partitions", default="1,4", help="input partitions of the latency runs (scattered sides above 1)"
    )
    parser.add_argument(
        "--reorder-bounds",
        default="100,0",
        help="comma-separated reorder_bound_ms values, one latency run each per rate (the default, 100, and 0)",
    )
    parser.add_argument(
        "--only", default="", help="comma-separated run names to keep (e.g. fraudrules-p1x1-at-least-once)"
    )
    parser.add_argument("--no-markdown", action="store_true", help="do not rewrite the table in BENCHMARKS.md")
    parser.add_argument("--profile", type=Path, help="run fraudrules under py-spy, stacks into this folder")
    parser.add_argument("--commit-interval", type=float, help="fraudrules' commit_interval_seconds (default: its own)")
    parser.add_argument(
        "--changelog-keys",
        action="store_true",
        help="after each drain, count its changelog records by the kind of state key (slow on big runs)",
    )
    parser.add_argument(
        "--producer-batch-bytes",
        type=int,
        help="batch.size of the producer that preloads the drains (default 1000000, librdkafka's; Java's is 16384)",
    )
    args = parser.parse_args(argv)
    if args.producer_batch_bytes is not None:
        global PRODUCER_BATCH_BYTES
        PRODUCER_BATCH_BYTES = args.producer_batch_bytes
    if args.changelog_keys:
        global CHANGELOG_KEYS
        CHANGELOG_KEYS = True
    if args.profile:
        global PROFILE_DIR
        PROFILE_DIR = args.profile
        PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    if args.commit_interval is not None:
        global COMMIT_INTERVAL_S
        COMMIT_INTERVAL_S = args.commit_interval
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="fraudrules-bench-"))
    # a SIGTERM (kill, a CI timeout) unwinds like Ctrl-C, so that the broker and the apps are stopped
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # Kafka's own 3 s wait for a new group's members: instances started together join its first assignment
    broker = LocalKafka(work / "kafka", port=free_port(), heap="1g", initial_rebalance_delay_ms=3000).start()
    global BROKER_PID
    BROKER_PID = broker.process.pid if broker.process else None
    print(f"broker {broker.bootstrap} (work dir {work})", flush=True)
    plan: list[tuple[str, ProcessingGuarantee, int, int]] = [
        ("raw", "at-least-once", 1, 1),
        ("quix", "at-least-once", 1, 1),
        ("fraudrules", "at-least-once", 1, 1),
        ("quix", "exactly-once", 1, 1),
        ("fraudrules", "exactly-once", 1, 1),
        ("fraudrules", "at-least-once", 4, 1),
        ("fraudrules", "at-least-once", 4, 2),
        ("fraudrules", "exactly-once", 4, 1),
        ("fraudrules", "exactly-once", 4, 2),
        ("fraudrules", "at-least-once", 8, 1),  # BENCHMARKS "Scaling": CPU per order at 1, 4 and 8 partitions
        # the framework's own scale-out here: the bare Quix join, whose group_by re-keys through a topic at
        # several partitions and in place at one (BENCHMARKS "Scaling", what a re-key costs Quix Streams)
        ("quix", "at-least-once", 4, 1),
        ("quix", "at-least-once", 4, 2),
        ("analyst", "at-least-once", 1, 1),  # with 10 expression rules and 3 lists of 100,000 values
    ]
    only = set(filter(None, args.only.split(",")))
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "make bench" + (f" BENCH_ARGS='{' '.join(argv or sys.argv[1:])}'" if (argv or sys.argv[1:]) else ""),
        "machine": machine(),
        "validation": validation_cost(),
        "backtest": backtest_speed(),
        "drain": [],
        "latency": [],
    }
    try:
        drains = [
            (kind, guarantee, partitions, instances)
            for kind, guarantee, partitions, instances in plan
            if not only or f"{kind}-p{partitions}x{instances}-{guarantee}" in only
        ]
        # every data set first, then the warm-up: no measured drain follows a preload at once
        datasets: dict[int, Dataset] = {}
        for partitions in dict.fromkeys(partitions for _, _, partitions, _ in drains):
            began = time.monotonic()
            datasets[partitions] = preload(broker.bootstrap, partitions, args.orders, seed=7)
            print(
                f"pre-loaded {args.orders} orders on {partitions} partition(s) in {time.monotonic() - began:.0f}s",
                flush=True,
            )
        if args.warm_up:  # the latency runs too: a compiling broker took cores from the app there as well
            results["warm_up"] = warm_up(broker.bootstrap, work)
        for round_ in range(1, args.rounds + 1):
            for kind, guarantee, partitions, instances in drains:
                results["drain"].append(
                    drain(broker.bootstrap, work, datasets[partitions], kind, guarantee, instances, round_)
                )
        bounds: list[int | None] = [int(b) for b in args.reorder_bounds.split(",") if b] or [None]
        for rate in [int(r) for r in args.rates.split(",") if r]:
            if not only or f"latency-quix-{rate}-at-least-once" in only:
                results["latency"].append(
                    latency(broker.bootstrap, work, rate, args.latency_seconds, "at-least-once", seed=8, kind="quix")
                )
            for partitions in [int(p) for p in args.latency_partitions.split(",") if p]:
                name = (
                    f"latency-{rate}-at-least-once"
                    if partitions == 1
                    else f"latency-p{partitions}-{rate}-at-least-once"
                )
                if only and name not in only:
                    continue
                for bound in bounds:
                    run_ = latency(
                        broker.bootstrap,
                        work,
                        rate,
                        args.latency_seconds,
                        "at-least-once",
                        seed=8,
                        reorder_bound_ms=bound,
                        partitions=partitions,
                    )
                    results["latency"].append(run_)
    finally:
        broker.stop()
    stamp = results["when"].replace(":", "").replace("-", "")
    for path in (RESULTS / f"{stamp}.json", RESULTS / "latest.json"):
        path.write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    print(table)
    if not args.no_markdown and MARKDOWN.exists():
        text = MARKDOWN.read_text()
        if START in text and END in text:
            head, rest = text.split(START, 1)
            MARKDOWN.write_text(head + START + "\n" + table + "\n" + END + rest.split(END, 1)[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
