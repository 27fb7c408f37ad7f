"""A small `fraudrules demo` (what `make demo` runs) end to end on the real broker: a verdict per order, a summary."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import Broker

pytestmark = pytest.mark.kafka


def test_small_demo_ends_by_itself_with_a_full_summary(kafka: Broker) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "fraudrules",
            "demo",
            "--bootstrap-servers",
            kafka.bootstrap,
            "--count",
            "1500",
            "--rate",
            "1500",
            "--join-window",
            "10",
            "--timeout",
            "120",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr
    out = completed.stdout
    assert "verdicts:        1500 of 1500 orders" in out
    assert "repeated verdicts read: 0" in out
    for line in ("records in:", "dead-lettered:", "hits per rule:", "orphan_payment", "recall", "throughput:", "p99"):
        assert line in out, line
