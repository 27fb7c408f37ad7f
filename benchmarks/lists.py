"""What a long list costs: ``make bench-lists`` (BENCHMARKS.md, "Lists and expression rules").

A list of N values (default 1,000,000) two ways, each measured in a fresh process:

- from a settings file (``[lists.NAME] values = [...]``): the time to load the settings and build the rule set,
  and the process's resident memory before and after;
- from the control topic (``fraudrules lists add NAME --file ...``, on a broker of its own): the time the
  command takes to publish them, and the time and memory an instance needs to read them at start-up
  (``RuleControl.initial``).

Then the cost of the lookups per order (every list whose field the event has: one dict lookup each).
Prints the figures and rewrites the block between the lists markers in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKDOWN = ROOT / "BENCHMARKS.md"
START, END = "<!-- lists:start -->", "<!-- lists:end -->"


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def from_settings(path: Path) -> dict[str, float]:
    """In this process: load the settings file and build its rule set."""
    from fraudrules.rules.engine import RuleSet
    from fraudrules.rules.registry import discover_configured
    from fraudrules.settings import load_settings
    from fraudrules.testing import event

    registered = discover_configured(load_settings().plugins).rules()
    before = rss_mb()
    began = time.perf_counter()
    settings = load_settings(path)
    ruleset = RuleSet.build(registered, settings)
    seconds = time.perf_counter() - began
    after = rss_mb()
    listed, other = event(merchantId="m-17"), event(merchantId=5)
    assert ruleset.lists.match(listed["event"])
    assert not ruleset.lists.match(other["event"])
    lookup_us = timeit.timeit(lambda: ruleset.lists.match(other["event"]), number=100_000) / 100_000 * 1e6
    return {"seconds": seconds, "rss_before_mb": before, "rss_after_mb": after, "lookup_us": lookup_us}


def from_topic(bootstrap: str, topic: str) -> dict[str, float]:
    """In this process: what an instance does at start-up, reading the control topic."""
    from fraudrules.operations.control import RuleControl
    from fraudrules.rules.registry import discover_configured
    from fraudrules.settings import KafkaSettings, Settings, TopicNames

    settings = Settings(kafka=KafkaSettings(bootstrap_servers=bootstrap), topics=TopicNames(rules=topic))
    registered = discover_configured(settings.plugins).rules()
    before = rss_mb()
    began = time.perf_counter()
    control = RuleControl(settings, registered, "bench")
    in_force = control.initial()
    seconds = time.perf_counter() - began
    after = rss_mb()
    control.stop()
    size = len(in_force.ruleset.lists.by_name["big"].entries)
    return {"seconds": seconds, "rss_before_mb": before, "rss_after_mb": after, "entries": size}


def child(function: str, *args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", function, *args], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--values", type=int, default=1_000_000)
    parser.add_argument("--no-markdown", action="store_true")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        function, *rest = args.child
        result = from_settings(Path(rest[0])) if function == "settings" else from_topic(*rest)
        print(json.dumps(result))
        return

    from fraudrules.kafka_tools.localkafka import LocalKafka, free_port

    work = Path(tempfile.mkdtemp(prefix="fraudrules-lists-"))
    values = [f"m-{i}" for i in range(args.values)]
    toml = work / "big.toml"
    toml.write_text(f'[lists.big]\nfield = "merchantId"\naction = "decline"\nvalues = {json.dumps(values)}\n')
    settings_figures = child("settings", str(toml))
    print("settings file:", settings_figures, flush=True)

    (work / "values.txt").write_text("\n".join(values) + "\n")
    broker = LocalKafka(work / "kafka", port=free_port(), heap="1g").start()
    try:
        env = {**os.environ, "FRAUDRULES_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap}
        env["FRAUDRULES_TOPICS__RULES"] = topic = "bench-lists"
        began = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "fraudrules", "lists", "add", "big", "--file", str(work / "values.txt"),
             "--field", "merchantId", "--action", "decline", "--reason", "bench", "--wait", "0"],
            check=True, env=env, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        publish_seconds = time.perf_counter() - began
        topic_figures = child("topic", broker.bootstrap, topic)
        assert topic_figures["entries"] == args.values
        print("control topic:", {"publish_seconds": publish_seconds, **topic_figures}, flush=True)
    finally:
        broker.stop()

    n = f"{args.values:,}"
    text = "\n".join(
        [
            f"Measured {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} with `make bench-lists` (one list of {n} "
            "values, each way in a fresh process):",
            "",
            "| a list of " + n + " values | time | resident memory it adds |",
            "|---|---:|---:|",
            f"| from a settings file: load and build the rule set | {settings_figures['seconds']:.1f} s | "
            f"{settings_figures['rss_after_mb'] - settings_figures['rss_before_mb']:.0f} MB |",
            f"| `fraudrules lists add big --file` (publish {n} entries) | {publish_seconds:.1f} s | - |",
            f"| from the control topic: an instance's start-up read | {topic_figures['seconds']:.1f} s | "
            f"{topic_figures['rss_after_mb'] - topic_figures['rss_before_mb']:.0f} MB |",
            "",
            f"Looking an order up in the lists: {settings_figures['lookup_us']:.2f} µs per order "
            "(one dict lookup per list whose field the event has, whatever the lists' sizes).",
        ]
    )
    print(text)
    if not args.no_markdown:
        page = MARKDOWN.read_text()
        head, rest = page.split(START)
        _, tail = rest.split(END)
        MARKDOWN.write_text(f"{head}{START}\n{text}\n{END}{tail}")


if __name__ == "__main__":
    main()
