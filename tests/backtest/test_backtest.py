"""The backtest without Kafka: files in, the same verdicts every time, figures, A/B, the command line."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest
from click.testing import CliRunner

from fraudrules import backtest, codec
from fraudrules.cli import cli
from fraudrules.generate.data import Generator, GeneratorConfig
from fraudrules.generate.output import write_files
from fraudrules.pipeline.model import Source
from fraudrules.validation import validator

START_MS = 1_700_000_000_000


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("data")
    config = GeneratorConfig(
        count=2000, seed=4, start_ms=START_MS, duplicate_rate=0.01, malformed_rate=0.01, order_first_rate=0.3
    )
    write_files(Generator(config), directory)
    return directory


def run(data: Path) -> backtest.BacktestResult:
    return backtest.run(data / "payment.jsonl", data / "order.jsonl", data / "labels.jsonl")


def test_the_same_files_give_the_same_verdicts_every_time(data: Path) -> None:
    first, second = run(data), run(data)

    def decided(result: backtest.BacktestResult) -> list[tuple[str, str, int, list[str]]]:
        return [(v["verdictId"], v["decision"], v["score"], [h["rule"] for h in v["hits"]]) for v in result.verdicts]

    assert decided(first) == decided(second)
    assert len(first.verdicts) == 2000
    assert all(validator("verdict").is_valid(v) for v in first.verdicts[:200])


def test_every_line_ends_in_a_verdict_or_a_dead_letter(data: Path) -> None:
    result = run(data)
    lines = {
        kind: sum(1 for line in (data / f"{kind}.jsonl").read_bytes().splitlines() if line.strip())
        for kind in ("payment", "order")
    }

    for kind in ("payment", "order"):
        # (cast: mypy does not narrow v["provenance"][kind] by the "is not None" test, its key being a variable)
        used = {
            cast(Source, v["provenance"][kind])["offset"] for v in result.verdicts if v["provenance"][kind] is not None
        }
        refused = {d["source"]["offset"] for d in result.deadletters if d["source"]["topic"] == kind}
        assert used.isdisjoint(refused)
        assert len(used) + len(refused) == lines[kind]
    assert set(result.summary["deadlettered"]) >= {"duplicate"}


def test_the_figures_have_every_documented_key(data: Path) -> None:
    summary = run(data).summary

    assert summary["orders"] == sum(summary["decisions"].values()) == 2000
    assert set(summary["decisions"]) == {"approve", "review", "decline"}
    assert summary["scenarios"]["orphan_payment"] == {
        "labelled": summary["scenarios"]["orphan_payment"]["labelled"],
        "flagged": summary["scenarios"]["orphan_payment"]["labelled"],
        "recall": 1.0,
    }
    assert all(set(f) == {"hits", "precision"} for f in summary["rules"].values())
    assert set(summary["good"]) == {"orders", "review_rate", "decline_rate"}
    assert summary["orders_per_second"] > 0


def test_compare_reports_the_orders_a_threshold_change_flips(data: Path, tmp_path: Path) -> None:
    from fraudrules.app import load_ruleset
    from fraudrules.settings import RuleSettings, Settings

    base = Settings()
    # every rule in shadow mode: reported, never scored, so nothing can be flagged
    shadow = Settings(rules={rule: RuleSettings(mode="shadow") for rule in load_ruleset(base).versions})
    records = list(backtest.read_files(data / "payment.jsonl", data / "order.jsonl"))
    labels = backtest.read_labels(data / "labels.jsonl")

    first, second, comparison = backtest.compare(records, labels, base, shadow)

    flagged = first.summary["decisions"]["review"] + first.summary["decisions"]["decline"]
    assert flagged > 0
    assert comparison.changed == flagged
    assert set(comparison.transitions) <= {"review -> approve", "decline -> approve"}
    assert second.summary["decisions"]["approve"] == 2000
    assert sum(comparison.scenarios.values()) == flagged


def test_the_command_writes_figures_and_verdicts_exactly_as_on_sink(data: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.toml"
    other.write_text("[rules.province_velocity]\nenabled = false\n")

    result = CliRunner().invoke(
        cli,
        [
            "backtest",
            str(data),
            "--json",
            str(tmp_path / "figures.json"),
            "--verdicts",
            str(tmp_path / "verdicts.jsonl"),
            "--compare",
            str(other),
            "--no-progress",
        ],
    )

    assert result.exit_code == 0, result.output
    assert "scenarios:" in result.output
    assert "orders change decision" in result.output
    figures = codec.loads((tmp_path / "figures.json").read_bytes())
    keys = {"orders", "decisions", "rules", "scenarios", "good", "deadlettered", "orders_per_second", "compare"}
    assert keys <= set(figures)
    verdicts = [codec.loads(line) for line in (tmp_path / "verdicts.jsonl").read_bytes().splitlines()]
    assert len(verdicts) == figures["orders"]
    assert all(validator("verdict").is_valid(v) for v in verdicts)


def test_the_command_explains_missing_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["backtest", str(tmp_path)])

    assert result.exit_code == 2
    assert "payment.jsonl" in result.output
