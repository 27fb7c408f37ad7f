"""``fraudrules backtest --html``: the page has the plots and tables, escapes what it shows, needs nothing outside
itself, and renders in a real headless Chromium without errors."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import cast

import pytest

from fraudrules import backtest
from fraudrules.backtest import BacktestResult, Comparison
from fraudrules.backtest.html import CHANGES_SHOWN, render_html, write_html
from fraudrules.backtest.report import Tally
from fraudrules.generate.data import Generator, GeneratorConfig
from fraudrules.generate.output import write_files
from fraudrules.pipeline.model import DeadLetter, Verdict
from fraudrules.settings import RuleSettings, Settings

START_MS = 1_700_000_000_000
HEADINGS = [
    "Overview",
    "Decisions",
    "Over event time",
    "Scores by label",
    "Rules: precision and recall",
    "Scenarios, bursts and controls",
    "Dead letters",
    "Speed",
]
#: decisions over time, rule hits over time, score histogram, rule precision/recall; the A/B adds recall A vs B.
PLOTS = 4


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("data")
    write_files(Generator(GeneratorConfig(count=3000, seed=1, start_ms=START_MS, interval_ms=500)), directory)
    return directory


@pytest.fixture(scope="module")
def result(data: Path) -> BacktestResult:
    return backtest.run(data / "payment.jsonl", data / "order.jsonl", data / "labels.jsonl")


@pytest.fixture(scope="module")
def ab(data: Path) -> tuple[BacktestResult, BacktestResult, Comparison]:
    records = backtest.read_files(data / "payment.jsonl", data / "order.jsonl")
    labels = backtest.read_labels(data / "labels.jsonl")
    other = Settings(rules={"province_velocity": RuleSettings(enabled=False)})
    return backtest.compare(records, labels, Settings(), other)


def svgs(page: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", page, flags=re.DOTALL)


def assert_self_contained(page: str) -> None:
    assert "<script" not in page
    assert "http:" not in page
    assert "https:" not in page
    assert not re.search(r"\b(src|srcset|xlink:href|action)\s*=", page)
    assert not re.search(r"url\(|@import|@font-face", page)
    assert all(target.startswith("#") for target in re.findall(r'href="([^"]*)"', page))


# --- without a browser -------------------------------------------------------------------------------------------


def test_page_has_every_section_plot_and_table(result: BacktestResult, tmp_path: Path) -> None:
    path = tmp_path / "report.html"

    write_html(path, result, None, None)

    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert re.findall(r"<h2>(.*?)</h2>", page) == HEADINGS
    plots = svgs(page)
    assert len(plots) == PLOTS
    assert re.findall(r'<svg [^>]*aria-label="([^"]*)"', page) == [
        "decisions over event time",
        "rule hits over event time",
        "score histogram by label",
        "shares per rule",
    ]
    for svg in plots:
        assert len(re.findall(r"<(rect|polyline|circle)\b", svg)) >= 4, svg[:200]
        assert "<text" in svg
    assert "normalised separately" in page
    for rule, figures in result.summary["rules"].items():
        assert f"<td>{rule}</td>" in page
        assert f"{figures['hits']:,}" in page
    for scenario in result.summary["scenarios"]:
        assert f"<td>{scenario}</td>" in page
    for table in ("Decisions", "Join statuses", "Good orders", "Scenarios (fraud-labelled orders)", "Bursts"):
        assert f"<h3>{table}</h3>" in page
    assert "Labels were not given" not in page
    assert_self_contained(page)


def test_recall_of_a_rule_is_its_fraud_hits_over_all_fraud_labelled_orders(result: BacktestResult) -> None:
    tally = result.tally
    assert tally is not None
    fraud = sum(tally.scenario_labelled.values())
    rule = "province_velocity"
    recall = tally.rule_fraud_hits[rule] / fraud

    page = render_html(result)

    row = re.search(rf"<tr><td>{rule}</td>(.*?)</tr>", page)
    assert row is not None
    assert f"{recall * 100:.2f}%" in row.group(1)


def test_without_labels_it_says_so_instead_of_empty_plots(data: Path) -> None:
    unlabelled = backtest.run(data / "payment.jsonl", data / "order.jsonl")

    page = render_html(unlabelled)

    assert "Labels were not given" in page
    labels = re.findall(r'aria-label="([^"]*)"', page)
    assert labels == ["decisions over event time", "rule hits over event time", "score histogram by label"]
    assert ">fraud<" not in " ".join(svgs(page))
    assert "<h3>Scenarios" not in page
    assert_self_contained(page)


def test_a_result_without_a_tally_gets_tables_and_the_rule_chart(result: BacktestResult) -> None:
    bare = BacktestResult(summary=result.summary, verdicts=result.verdicts)

    page = render_html(bare)

    assert re.findall(r'aria-label="([^"]*)"', page) == ["shares per rule"]
    assert page.count("carries no tally") == 2
    assert (
        render_html(result).split('aria-label="shares per rule"')[1].split("</svg>")[0]
        == page.split('aria-label="shares per rule"')[1].split("</svg>")[0]
    )


def test_text_from_the_data_is_escaped() -> None:
    evil = '<img src=x onerror="alert(1)">&'
    tally = Tally({1: {"scenario": evil}})
    verdict = cast(
        Verdict,
        {
            "orderId": 1,
            "decision": "review",
            "score": 55,
            "hits": [{"rule": evil}],
            "join": {"status": evil},
            "eventTime": "2023-11-14 22:13:20.000",
        },
    )
    tally.add(verdict)
    tally.add({**verdict, "orderId": 2, "hits": [], "decision": "approve", "join": {"status": "joined"}})
    tally.add_deadletter(cast(DeadLetter, {"reason": evil}))
    summary = tally.summary(1.0, True)
    comparison = Comparison(
        orders=2,
        changed=1,
        transitions=Counter({"review -> approve": 1}),
        scenarios=Counter({evil: 1}),
        changes=[
            {
                "verdictId": evil,
                "orderId": 1,
                "from": "review",
                "to": "approve",
                "scenario": evil,
                "rulesAdded": [],
                "rulesRemoved": [evil],
            }
        ],
    )
    comparison.rules_removed[evil] = 1
    result = BacktestResult(summary, [], tally=tally)

    page = render_html(result, result, comparison, title=evil)

    assert "<img" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;" in page
    assert page.count("&lt;img") >= 8
    assert len(svgs(page)) == PLOTS + 1


def test_comparison_section(ab: tuple[BacktestResult, BacktestResult, Comparison]) -> None:
    base, other, comparison = ab
    assert comparison.changed > 0

    page = render_html(base, other, comparison)

    section = page.split('<section id="compare">')[1]
    assert "<h2>A/B comparison</h2>" in section
    assert f"<strong>{comparison.changed:,}</strong> of {comparison.orders:,} orders" in section
    for heading in ("Transitions", "Rules on changed orders", "Changed orders by label", "Before → after"):
        assert f"<h3>{heading}" in section
    for transition in comparison.transitions:
        assert f"<td>{transition.replace('>', '&gt;')}</td>" in section
    assert "<td>province_velocity</td>" in section
    assert "recall province_burst" in section
    assert "good sent to review" in section
    rows = section.split("<h3>Changed orders</h3>")[1].count("<tr><td>")
    assert rows == min(CHANGES_SHOWN, len(comparison.changes))
    assert len(svgs(page)) == PLOTS + 1
    assert_self_contained(page)


def test_at_most_200_changed_orders_are_listed(result: BacktestResult) -> None:
    change = {"orderId": 1, "from": "approve", "to": "review", "scenario": "good", "rulesAdded": ["x"]}
    changes = [{**change, "verdictId": f"payment/0/{i}", "rulesRemoved": []} for i in range(450)]
    comparison = Comparison(orders=450, changed=450, changes=changes)

    page = render_html(result, result, comparison)

    assert "the first 200 of 450" in page
    assert page.split("<h3>Changed orders (")[1].count("<tr><td>") == 200
    assert "payment/0/199<" in page
    assert "payment/0/200<" not in page


# --- in a real browser -------------------------------------------------------------------------------------------

#: Injected into a copy of the page: records errors (script and resource), then, once loaded, what was drawn and
#: every resource the page fetched, in a <pre id="probe"> that --dump-dom shows.
PROBE = """<script>
window.__errors = [];
window.addEventListener(
  "error", e => window.__errors.push(String(e.message || (e.target && e.target.outerHTML))), true
);
for (const level of ["error", "warn"]) {
  const original = console[level];
  console[level] = (...args) => { window.__errors.push(level + ": " + args.join(" ")); original(...args); };
}
window.addEventListener("load", () => {
  const plots = [...document.querySelectorAll("svg")];
  const drawn = plots.filter(svg => {
    const box = svg.getBBox();
    return box.width > 300 && box.height > 100 && svg.querySelectorAll("rect, polyline, circle").length >= 4;
  });
  const out = {
    plots: plots.length,
    drawn: drawn.length,
    headings: [...document.querySelectorAll("h2")].map(h => h.textContent),
    tables: document.querySelectorAll("table").length,
    resources: performance.getEntriesByType("resource").map(r => r.name),
    overflow: document.documentElement.scrollWidth - window.innerWidth,
    errors: window.__errors,
  };
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
  console.log("fraudrules-probe-done");
});
</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(
        "Chromium is needed to check the --html report in a real browser and was not found on PATH: "
        "`make browser` installs it (apt-get install chromium)",
        pytrace=False,
    )


def browse(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            chromium(),
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            f"--user-data-dir={profile}",
            "--window-size=1280,2400",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_page_renders_in_headless_chromium(
    ab: tuple[BacktestResult, BacktestResult, Comparison], tmp_path: Path
) -> None:
    base, other, comparison = ab
    report = tmp_path / "report.html"
    write_html(report, base, other, comparison)
    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text(encoding="utf-8").replace("<head>", "<head>\n" + PROBE, 1), encoding="utf-8")

    shown = browse(probed, tmp_path / "profile", "--enable-logging=stderr", "--v=0", "--dump-dom")
    picture = browse(report, tmp_path / "profile", f"--screenshot={tmp_path / 'report.png'}")

    assert shown.returncode == 0, shown.stderr[-3000:]
    match = re.search(r'<pre id="probe">(.*?)</pre>', shown.stdout, flags=re.DOTALL)
    assert match, f"the probe did not run: {shown.stdout[-2000:]}\n{shown.stderr[-3000:]}"
    probe = json.loads(match.group(1).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    assert probe["errors"] == []
    assert probe["plots"] == PLOTS + 1
    assert probe["drawn"] == PLOTS + 1
    assert probe["headings"] == [*HEADINGS, "A/B comparison"]
    assert probe["tables"] >= 12
    assert probe["resources"] == []  # nothing fetched: no network, not even a file
    assert probe["overflow"] <= 0  # no horizontal scrolling at 1280 px
    console = [line for line in shown.stderr.splitlines() if ":CONSOLE" in line]
    assert any("fraudrules-probe-done" in line for line in console), shown.stderr[-3000:]
    assert not [line for line in console if "fraudrules-probe-done" not in line], console
    assert "Uncaught" not in shown.stderr
    assert picture.returncode == 0, picture.stderr[-3000:]
    png = (tmp_path / "report.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert len(png) > 50_000
