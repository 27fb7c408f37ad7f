"""``fraudrules backtest --html FILE``: one self-contained report page.

Everything is inline: the CSS, and the plots as SVG drawn here (no script, no font, no image, no link to
anything outside the page), so the file can be mailed, attached to a ticket or opened offline. Every piece
of text that comes from the data goes through :func:`html.escape`.

The plots need the per-minute and per-score counts of the :class:`~fraudrules.backtest.report.Tally`; a result
without one (built from a ``--json`` summary, say) gets the tables and the precision/recall chart only.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fraudrules.backtest.compare import Comparison
from fraudrules.backtest.report import DECISIONS, Tally

if TYPE_CHECKING:
    from fraudrules.backtest import BacktestResult

__all__ = ["render_html", "write_html"]

#: Changed orders listed in the A/B section (all of them are in ``--json``).
CHANGES_SHOWN = 200

DECISION_COLOURS = {"approve": "#b5cda3", "review": "#e3a53c", "decline": "#c0504d"}
LABEL_COLOURS = {"fraud": "#c0504d", "good": "#4f7cac", "all orders": "#4f7cac"}
#: Colour-blind-friendly, one per rule (Tableau 10), reused in order if there are more rules.
SERIES_COLOURS = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#b07aa1",
    "#edc948",
    "#ff9da7",
    "#9c755f",
    "#7f7f7f",
)
PRECISION_COLOUR = "#4f7cac"
RECALL_COLOUR = "#e3a53c"
BEFORE_COLOUR = "#9fb3c8"
AFTER_COLOUR = "#2f5d8a"

WIDTH = 920
DASH = "\u2013"  # en dash: ranges, and "no value"
CHAR_WIDTH = 7.2  # of the 12 px labels, roughly: enough to lay out legends and margins
MAX_BINS = 240
BIN_MINUTES = (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440)
TICK_MINUTES = (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080, 20160, 43200)


def write_html(
    path: Path,
    result: BacktestResult,
    other: BacktestResult | None = None,
    comparison: Comparison | None = None,
) -> None:
    """Write the report of ``result`` (and of the A/B against ``other``, when given) to ``path``."""
    path.write_text(render_html(result, other, comparison), encoding="utf-8")


def render_html(
    result: BacktestResult,
    other: BacktestResult | None = None,
    comparison: Comparison | None = None,
    title: str = "fraudrules backtest",
) -> str:
    """The page, as a string."""
    summary = result.summary
    tally = result.tally
    labelled = _labelled(summary, tally)
    sections = [
        ("overview", "Overview", _overview(result, labelled)),
        ("decisions", "Decisions", _decisions(summary, labelled)),
        ("timeline", "Over event time", _timeline(tally)),
        ("scores", "Scores by label", _scores(tally, labelled)),
        ("rules", "Rules: precision and recall", _rules(result, labelled)),
        ("scenarios", "Scenarios, bursts and controls", _scenarios(summary, labelled)),
        ("deadletters", "Dead letters", _deadletters(summary)),
        ("speed", "Speed", _speed(summary)),
    ]
    if other is not None and comparison is not None:
        sections.append(("compare", "A/B comparison", _compare(result, other, comparison, labelled)))
    nav = " · ".join(f'<a href="#{key}">{_e(heading)}</a>' for key, heading, _ in sections)
    body = "\n".join(
        f'<section id="{key}">\n<h2>{_e(heading)}</h2>\n{content}\n</section>' for key, heading, content in sections
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
        f'<header><h1>{_e(title)}</h1>\n<p class="sub">{_e(_period(result))}</p>\n<nav>{nav}</nav></header>\n'
        f"{body}\n"
        "<footer>Written by <code>fraudrules backtest --html</code>. Self-contained: no script, font, image or "
        "link outside this file.</footer>\n"
        "</main>\n</body>\n</html>\n"
    )


CSS = """
:root { color-scheme: light; --ink: #1f2933; --muted: #616e7c; --rule: #d9e2ec; --bg: #f7f9fb; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 980px; margin: 0 auto; padding: 24px 28px 48px; }
header { margin-bottom: 8px; }
h1 { font-size: 24px; font-weight: 600; margin: 0 0 2px; }
h2 { font-size: 18px; font-weight: 600; margin: 0 0 12px; padding-bottom: 6px; border-bottom: 1px solid var(--rule); }
h3 { font-size: 14px; font-weight: 600; margin: 18px 0 6px; color: var(--ink); }
p { margin: 6px 0; }
.sub, .note, figcaption, footer { color: var(--muted); }
.note { font-size: 13px; }
nav { font-size: 13px; margin-top: 8px; }
nav a { color: #2f5d8a; text-decoration: none; }
nav a:hover { text-decoration: underline; }
section { background: #fff; border: 1px solid var(--rule); border-radius: 6px; padding: 16px 20px 18px;
  margin: 16px 0; }
table { border-collapse: collapse; margin: 4px 0 8px; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 12px 3px 0; border-bottom: 1px solid #eef2f6; text-align: left; vertical-align: top; }
th { font-weight: 600; color: var(--muted); font-size: 12px; border-bottom: 1px solid var(--rule); }
td.num, th.num { text-align: right; padding-left: 12px; }
tbody tr:hover { background: #f5f8fb; }
.tables { display: flex; flex-wrap: wrap; gap: 8px 40px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid var(--rule); border-radius: 6px; padding: 8px 14px; min-width: 130px; background: #fbfcfd; }
.card .value { font-size: 20px; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .label { font-size: 12px; color: var(--muted); }
figure { margin: 10px 0 16px; }
figcaption { font-size: 13px; margin-top: 2px; }
svg.plot { display: block; max-width: 100%; height: auto; font-family: inherit; }
svg.plot text { fill: #3e4c59; font-size: 12px; }
svg.plot .axis { stroke: #9aa5b1; stroke-width: 1; }
svg.plot .grid { stroke: #e4e7eb; stroke-width: 1; }
svg.plot .title { font-weight: 600; }
svg.plot text.val { font-size: 11px; fill: #52606d; }
code { font-size: 12px; background: #eef2f6; padding: 1px 4px; border-radius: 3px; }
.up { color: #2f7d32; } .down { color: #b23b3b; }
footer { font-size: 12px; margin-top: 24px; }
"""


# --- text and tables ---------------------------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _pct(value: float | None, digits: int = 2) -> str:
    return DASH if value is None else f"{value * 100:.{digits}f}%"


def _rate(part: float, whole: float) -> float | None:
    return None if whole == 0 else part / whole


@dataclass(frozen=True)
class _Pct:
    """A share in [0, 1] (or None) in a table cell."""

    value: float | None


Cell = str | int | _Pct | None


def _table(head: Sequence[str], rows: Iterable[Sequence[Cell]], caption: str | None = None) -> str:
    """A table; a column with any number (or share, or no value) in it is right-aligned, heading included."""
    rows = list(rows)
    numeric = [any(row[c] is None or isinstance(row[c], int | _Pct) for row in rows) for c in range(len(head))]

    def cell(tag: str, column: int, value: Cell) -> str:
        css = ' class="num"' if numeric[column] else ""
        if value is None:
            text = DASH
        elif isinstance(value, bool):
            text = _e(value)
        elif isinstance(value, int):
            text = f"{value:,}"
        elif isinstance(value, _Pct):
            text = _pct(value.value)
        else:
            text = _e(value)
        return f"<{tag}{css}>{text}</{tag}>"

    lines = [f"<h3>{_e(caption)}</h3>" if caption else "", "<table>"]
    lines.append("<thead><tr>" + "".join(cell("th", c, h) for c, h in enumerate(head)) + "</tr></thead><tbody>")
    lines.extend("<tr>" + "".join(cell("td", c, value) for c, value in enumerate(row)) + "</tr>" for row in rows)
    lines.append("</tbody></table>")
    return "\n".join(line for line in lines if line)


def _block(*parts: str) -> str:
    return '<div class="tables">' + "\n".join(f"<div>{part}</div>" for part in parts if part) + "</div>"


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{_e(caption)}</figcaption></figure>"


# --- the figures -------------------------------------------------------------------------------------------------


def _labelled(summary: dict[str, Any], tally: Tally | None) -> bool:
    if tally is not None:
        return bool(tally.labels)
    return bool(summary["scenarios"] or summary["controls"]) or any(
        figures.get("precision") is not None for figures in summary["rules"].values()
    )


def _fraud_orders(summary: dict[str, Any]) -> int:
    return sum(figures["labelled"] for figures in summary["scenarios"].values())


def _rule_figures(result: BacktestResult, labelled: bool) -> list[tuple[str, int, int | None, float | None]]:
    """(rule, hits, hits on fraud-labelled orders, recall) per rule that hit."""
    fraud = _fraud_orders(result.summary)
    rows: list[tuple[str, int, int | None, float | None]] = []
    for rule, figures in result.summary["rules"].items():
        hits = figures["hits"]
        fraud_hits: int | None
        if not labelled:
            fraud_hits = None
        elif result.tally is not None:
            fraud_hits = result.tally.rule_fraud_hits[rule]
        else:
            fraud_hits = None if figures["precision"] is None else round(figures["precision"] * hits)
        rows.append((rule, hits, fraud_hits, None if fraud_hits is None else _rate(fraud_hits, fraud)))
    return rows


def _period(result: BacktestResult) -> str:
    parts = []
    if result.tally is not None and result.tally.timeline:
        first, last = min(result.tally.timeline), max(result.tally.timeline)
        parts.append(f"event time {_clock(first, True)} {DASH} {_clock(last + 1, True)} UTC")
    parts.append(f"{result.summary['orders']:,} orders")
    rulesets = sorted({verdict["ruleset"]["id"] for verdict in result.verdicts})
    if rulesets:
        parts.append("rule set " + ", ".join(rulesets))
    return " · ".join(parts)


def _card(value: str, label: str) -> str:
    return f'<div class="card"><div class="value">{_e(value)}</div><div class="label">{_e(label)}</div></div>'


def _overview(result: BacktestResult, labelled: bool) -> str:
    summary = result.summary
    orders = summary["orders"]
    decisions = summary["decisions"]
    flagged = decisions["review"] + decisions["decline"]
    cards = [
        _card(f"{orders:,}", "orders"),
        _card(_pct(_rate(flagged, orders)), f"flagged ({flagged:,} sent to review or declined)"),
    ]
    if labelled:
        confusion = summary["confusion"]
        fraud = confusion["fraud_flagged"] + confusion["fraud_approved"]
        cards.append(_card(_pct(_rate(confusion["fraud_flagged"], fraud)), f"recall ({fraud:,} fraud-labelled)"))
        cards.append(_card(_pct(summary["good"]["review_rate"]), "good orders sent to review"))
        cards.append(_card(_pct(summary["good"]["decline_rate"]), "good orders declined"))
    cards.append(_card(f"{sum(summary['deadlettered'].values()):,}", "dead-lettered records"))
    cards.append(_card(f"{summary['orders_per_second'] or 0:,}/s", "replay speed"))
    text = '<div class="cards">' + "".join(cards) + "</div>"
    if not labelled:
        text += _note(
            "Labels were not given: every order counts as good, and precision, recall, the score histogram by "
            "label and the scenario figures need a labels file (labels.jsonl)."
        )
    return text


def _decisions(summary: dict[str, Any], labelled: bool) -> str:
    orders = summary["orders"]
    decisions = _table(
        ["decision", "orders", "share"],
        [(d, summary["decisions"][d], _Pct(_rate(summary["decisions"][d], orders))) for d in DECISIONS],
        "Decisions",
    )
    join = _table(
        ["join status", "orders", "share"],
        [(status, count, _Pct(_rate(count, orders))) for status, count in summary["join"].items()],
        "Join statuses",
    )
    good = summary["good"]
    good_table = _table(
        ["good orders", "orders", "review rate", "decline rate"],
        [
            (
                "not labelled fraud" if labelled else "all (no labels)",
                good["orders"],
                _Pct(good["review_rate"]),
                _Pct(good["decline_rate"]),
            )
        ],
        "Good orders",
    )
    parts = [decisions, join, good_table]
    if labelled:
        c = summary["confusion"]
        parts.append(
            _table(
                ["label", "flagged", "approved"],
                [("fraud", c["fraud_flagged"], c["fraud_approved"]), ("good", c["good_flagged"], c["good_approved"])],
                "Confusion",
            )
        )
    return _block(*parts) + _note('"Flagged" means sent to review or declined; controls count as good orders.')


def _timeline(tally: Tally | None) -> str:
    if tally is None:
        return _note("Per-minute figures are not available: this result carries no tally (only the summary).")
    if not tally.timeline:
        return _note("No verdict carried an event time: nothing to plot over time.")
    bins = _Bins.of(tally.timeline)
    rules = sorted({key[5:] for slot in tally.timeline.values() for key in slot if key.startswith("rule:")})
    parts = [
        _figure(
            _decisions_svg(bins),
            f"Decisions per {bins.describe()} of event time (UTC): all orders above; below, only those sent to "
            "review or declined, on their own scale so that they show next to the approvals.",
        )
    ]
    if rules:
        parts.append(
            _figure(
                _rules_svg(bins, rules),
                f"Orders hit per rule, per {bins.describe()} of event time (UTC). Shadow hits are not counted.",
            )
        )
    else:
        parts.append(_note("No rule hit any order."))
    return "\n".join(parts)


def _scores(tally: Tally | None, labelled: bool) -> str:
    if tally is None:
        return _note("Score histograms are not available: this result carries no tally (only the summary).")
    if labelled:
        series = {"fraud": tally.scores["fraud"], "good": tally.scores["good"]}
        counts = ", ".join(f"{name} {sum(c.values()):,} orders" for name, c in series.items())
        caption = (
            f"Score of each order in buckets of 5, as a share of its label's orders ({counts}): the two are "
            "normalised separately since their counts differ by orders of magnitude."
        )
    else:
        series = {"all orders": tally.scores["fraud"] + tally.scores["good"]}
        caption = "Score of each order in buckets of 5, as a share of all orders."
    if not any(sum(c.values()) for c in series.values()):
        return _note("No verdicts: no scores to plot.")
    text = _figure(_histogram_svg(series), caption)
    if not labelled:
        text += _note("Labels were not given: the histogram cannot be split into fraud and good orders.")
    return text


def _rules(result: BacktestResult, labelled: bool) -> str:
    figures = _rule_figures(result, labelled)
    in_force = sorted({rule for verdict in result.verdicts[:1] for rule in verdict["ruleset"]["rules"]})
    quiet = [rule for rule in in_force if rule not in result.summary["rules"]]
    parts = []
    fraud = _fraud_orders(result.summary)
    if not figures:
        parts.append(_note("No rule hit any order."))
    elif not labelled:
        parts.append(_note("Labels were not given: precision and recall need labels. Hits only:"))
    elif fraud == 0:
        parts.append(_note("No order is labelled fraud: recall is undefined; precision is shown."))
    if figures and labelled:
        bars = [
            (rule, [(prec, PRECISION_COLOUR), (recall, RECALL_COLOUR)])
            for (rule, _, _, recall), prec in zip(
                figures, (result.summary["rules"][f[0]]["precision"] for f in figures), strict=True
            )
        ]
        parts.append(
            _figure(
                _hbars_svg(bars, [("precision", PRECISION_COLOUR), ("recall", RECALL_COLOUR)]),
                f"Precision: the share of a rule's hits that are on fraud-labelled orders. Recall: the rule's hits on "
                f"fraud-labelled orders over all {fraud:,} fraud-labelled orders (rules overlap, so recalls do not "
                "add up).",
            )
        )
    if figures:
        parts.append(
            _table(
                ["rule", "hits", "on fraud", "precision", "recall"],
                [
                    (rule, hits, fraud_hits, _Pct(result.summary["rules"][rule]["precision"]), _Pct(recall))
                    for rule, hits, fraud_hits, recall in figures
                ],
            )
        )
    if quiet:
        parts.append(_note("Rules in force that hit no order (shadow hits are not counted): " + ", ".join(quiet)))
    return "\n".join(parts)


def _scenarios(summary: dict[str, Any], labelled: bool) -> str:
    if not labelled:
        return _note("Labels were not given: no scenarios, bursts or controls to report.")
    parts = []
    if summary["scenarios"]:
        parts.append(
            _table(
                ["scenario", "labelled", "flagged", "recall"],
                [(name, f["labelled"], f["flagged"], _Pct(f["recall"])) for name, f in summary["scenarios"].items()],
                "Scenarios (fraud-labelled orders)",
            )
        )
    else:
        parts.append(_note("No order is labelled fraud."))
    bursts = summary["bursts"]
    parts.append(
        _table(
            ["bursts", "total", "caught", "share"],
            [("bursts", bursts["total"], bursts["caught"], _Pct(_rate(bursts["caught"], bursts["total"])))],
            "Bursts",
        )
    )
    if summary["controls"]:
        parts.append(
            _table(
                ["control", "orders", "review rate", "decline rate"],
                [
                    (name, f["orders"], _Pct(f["review_rate"]), _Pct(f["decline_rate"]))
                    for name, f in summary["controls"].items()
                ],
                "Controls (legitimate look-alikes)",
            )
        )
    text = _block(*parts)
    text += _note(
        "A burst counts as caught when at least one of its orders is flagged. Controls are labelled legitimate "
        "orders that look like fraud; they count as good orders."
    )
    if not summary["controls"]:
        text += _note("No control orders were labelled.")
    return text


def _deadletters(summary: dict[str, Any]) -> str:
    letters = summary["deadlettered"]
    if not letters:
        return _note("No record was dead-lettered.")
    total = sum(letters.values())
    return _table(
        ["reason", "records", "share"],
        [*((reason, n, _Pct(_rate(n, total))) for reason, n in letters.items()), ("total", total, _Pct(1.0))],
    )


def _speed(summary: dict[str, Any]) -> str:
    return _table(
        ["", "value"],
        [
            ("orders", summary["orders"]),
            ("replay time", f"{summary['seconds']:,} s"),
            ("orders per second", summary["orders_per_second"]),
        ],
    )


def _compare(result: BacktestResult, other: BacktestResult, comparison: Comparison, labelled: bool) -> str:
    base, changed = result.summary, other.summary
    parts = [
        f"<p><strong>{comparison.changed:,}</strong> of {comparison.orders:,} orders "
        f"({_e(_pct(_rate(comparison.changed, comparison.orders)))}) change decision from A (the settings) to B "
        "(<code>--compare</code>).</p>"
    ]
    ids = [sorted({v["ruleset"]["id"] for v in r.verdicts}) for r in (result, other)]
    if all(ids):
        parts.append(_note(f"Rule set A: {', '.join(ids[0])}; rule set B: {', '.join(ids[1])}."))
    tables = []
    if comparison.transitions:
        tables.append(_table(["transition", "orders"], sorted(comparison.transitions.items()), "Transitions"))
    rules = sorted(comparison.rules_added.keys() | comparison.rules_removed.keys())
    if rules:
        tables.append(
            _table(
                ["rule", "hits added", "hits removed"],
                [(rule, comparison.rules_added[rule], comparison.rules_removed[rule]) for rule in rules],
                "Rules on changed orders",
            )
        )
    if comparison.scenarios:
        tables.append(
            _table(["scenario", "changed orders"], sorted(comparison.scenarios.items()), "Changed orders by label")
        )
    if tables:
        parts.append(_block(*tables))
    parts.append(_before_after(base, changed, labelled))
    names = sorted(base["scenarios"].keys() | changed["scenarios"].keys())
    if labelled and names:
        bars = [
            (
                name,
                [
                    (base["scenarios"].get(name, {}).get("recall"), BEFORE_COLOUR),
                    (changed["scenarios"].get(name, {}).get("recall"), AFTER_COLOUR),
                ],
            )
            for name in names
        ]
        parts.append(
            _figure(
                _hbars_svg(bars, [("A", BEFORE_COLOUR), ("B", AFTER_COLOUR)]),
                "Recall per scenario, A against B.",
            )
        )
    if comparison.changes:
        shown = comparison.changes[:CHANGES_SHOWN]
        caption = (
            f"Changed orders (the first {len(shown):,} of {len(comparison.changes):,}; --json has them all)"
            if len(comparison.changes) > len(shown)
            else "Changed orders"
        )
        parts.append(
            _table(
                ["orderId", "verdictId", "A", "B", "label", "rules added", "rules removed"],
                [
                    (
                        str(c["orderId"]),
                        str(c["verdictId"]),
                        str(c["from"]),
                        str(c["to"]),
                        str(c["scenario"]),
                        ", ".join(c["rulesAdded"]),
                        ", ".join(c["rulesRemoved"]),
                    )
                    for c in shown
                ],
                caption,
            )
        )
    else:
        parts.append(_note("No order changes decision."))
    return "\n".join(parts)


def _before_after(base: dict[str, Any], changed: dict[str, Any], labelled: bool) -> str:
    rows: list[tuple[str, str, str, str]] = []

    def count(name: str, a: int, b: int) -> None:
        rows.append((name, f"{a:,}", f"{b:,}", f"{b - a:+,}"))

    def share(name: str, a: float | None, b: float | None) -> None:
        delta = DASH if a is None or b is None else f"{(b - a) * 100:+.2f} pp"
        rows.append((name, _pct(a), _pct(b), delta))

    for decision in DECISIONS:
        count(decision, base["decisions"][decision], changed["decisions"][decision])
    if labelled:
        for name in sorted(base["scenarios"].keys() | changed["scenarios"].keys()):
            share(
                f"recall {name}",
                base["scenarios"].get(name, {}).get("recall"),
                changed["scenarios"].get(name, {}).get("recall"),
            )
    share("good sent to review", base["good"]["review_rate"], changed["good"]["review_rate"])
    share("good declined", base["good"]["decline_rate"], changed["good"]["decline_rate"])
    body = "".join(
        f"<tr><td>{_e(name)}</td>" + "".join(f'<td class="num">{_e(value)}</td>' for value in values) + "</tr>"
        for name, *values in rows
    )
    return (
        '<h3>Before → after</h3><table><thead><tr><th></th><th class="num">A</th><th class="num">B</th>'
        f'<th class="num">change</th></tr></thead><tbody>{body}</tbody></table>'
    )


# --- SVG ---------------------------------------------------------------------------------------------------------


def _svg(width: int, height: int, label: str, content: Iterable[str]) -> str:
    return (
        f'<svg class="plot" role="img" aria-label="{_e(label)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">' + "".join(content) + "</svg>"
    )


def _f(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _text(x: float, y: float, text: str, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{_f(x)}" y="{_f(y)}" text-anchor="{anchor}"{extra}>{_e(text)}</text>'


def _line(x1: float, y1: float, x2: float, y2: float, css: str) -> str:
    return f'<line class="{css}" x1="{_f(x1)}" y1="{_f(y1)}" x2="{_f(x2)}" y2="{_f(y2)}"/>'


def _rect(x: float, y: float, w: float, h: float, fill: str) -> str:
    return f'<rect x="{_f(x)}" y="{_f(y)}" width="{_f(max(w, 0))}" height="{_f(max(h, 0))}" fill="{fill}"/>'


def _nice_ticks(maximum: float, count: int = 4, integer: bool = True) -> list[float]:
    """0 and evenly spaced round values up to at least ``maximum``."""
    if maximum <= 0:
        return [0, 1]
    raw = maximum / count
    magnitude = 10 ** math.floor(math.log10(raw))
    steps = (1, 2, 5, 10) if integer else (1, 2, 2.5, 5, 10)
    step = next(m * magnitude for m in steps if m * magnitude >= raw)
    if integer:
        step = max(step, 1)
    top = math.ceil(maximum / step - 1e-9) * step
    return [i * step for i in range(round(top / step) + 1)]


def _tick_label(value: float, percent: bool = False) -> str:
    if percent:
        return f"{value * 100:g}%"
    return f"{value:,.0f}" if value == int(value) else f"{value:g}"


def _y_axis(ticks: list[float], left: float, right: float, top: float, height: float, percent: bool = False) -> str:
    out = []
    for tick in ticks:
        y = top + height - tick / ticks[-1] * height
        out.append(_line(left, y, right, y, "grid" if tick else "axis"))
        out.append(_text(left - 6, y + 4, _tick_label(tick, percent), "end"))
    return "".join(out)


def _legend(items: Sequence[tuple[str, str]], x: float, y: float, width: float, line: bool = False) -> tuple[str, int]:
    """Swatches and names from (x, y), wrapping at ``width``; the SVG and the rows used."""
    out = []
    cx, rows = x, 1
    for name, colour in items:
        size = 18 + len(name) * CHAR_WIDTH + 16
        if cx + size > x + width and cx > x:
            cx, rows = x, rows + 1
        cy = y + (rows - 1) * 18
        if line:
            out.append(f'<line x1="{_f(cx)}" y1="{_f(cy - 4)}" x2="{_f(cx + 13)}" y2="{_f(cy - 4)}" ')
            out.append(f'stroke="{colour}" stroke-width="2.5"/>')
        else:
            out.append(_rect(cx, cy - 10, 12, 12, colour))
        out.append(_text(cx + 18, cy, name))
        cx += size
    return "".join(out), rows


def _clock(minute: int, full: bool = False) -> str:
    moment = datetime.fromtimestamp(minute * 60, UTC)
    return moment.strftime("%Y-%m-%d %H:%M" if full else "%H:%M")


@dataclass
class _Bins:
    """The timeline cut into at most MAX_BINS equal bins of whole minutes."""

    start: int  # minute since the epoch
    minutes: int  # per bin
    slots: list[Counter[str]]

    @classmethod
    def of(cls, timeline: dict[int, Counter[str]]) -> _Bins:
        first, last = min(timeline), max(timeline)
        span = last - first + 1
        minutes = (
            next((m for m in BIN_MINUTES if span / m <= MAX_BINS), None) or math.ceil(span / MAX_BINS / 1440) * 1440
        )
        start = first - first % minutes
        slots: list[Counter[str]] = [Counter() for _ in range((last - start) // minutes + 1)]
        for minute, counts in timeline.items():
            slots[(minute - start) // minutes].update(counts)
        return cls(start, minutes, slots)

    @property
    def end(self) -> int:
        return self.start + self.minutes * len(self.slots)

    def describe(self) -> str:
        if self.minutes == 1:
            return "minute"
        if self.minutes % 1440 == 0:
            return f"{self.minutes // 1440} days" if self.minutes > 1440 else "day"
        if self.minutes % 60 == 0:
            return f"{self.minutes // 60} hours" if self.minutes > 60 else "hour"
        return f"{self.minutes} minutes"

    def label(self, index: int) -> str:
        first = self.start + index * self.minutes
        if self.minutes == 1:
            return _clock(first, True)
        return f"{_clock(first, True)}{DASH}{_clock(first + self.minutes)}"

    def x_axis(self, left: float, width: float, y: float) -> str:
        """Time ticks along y, labelled HH:MM (with the date where the day changes)."""
        span = self.end - self.start
        step = next((m for m in TICK_MINUTES if span / m <= 8), TICK_MINUTES[-1])
        out = [_line(left, y, left + width, y, "axis")]
        tick = math.ceil(self.start / step) * step
        last_day = None
        while tick <= self.end:
            x = left + (tick - self.start) / span * width
            day = _clock(tick, True)[:10]
            label = _clock(tick) if day == last_day else f"{day[5:]} {_clock(tick)}"
            last_day = day
            out.append(_line(x, y, x, y + 4, "axis"))
            out.append(_text(x, y + 17, label, "middle"))
            tick += step
        return "".join(out)


def _decisions_svg(bins: _Bins) -> str:
    left, right = 64, 16
    plot_w = WIDTH - left - right
    top1, h1 = 34, 170
    top2, h2 = top1 + h1 + 34, 90
    height = top2 + h2 + 44
    n = len(bins.slots)
    bar = plot_w / n
    gap = min(1.0, bar * 0.2) if bar > 2 else 0.0
    totals = [sum(slot[d] for d in DECISIONS) for slot in bins.slots]
    flagged = [slot["review"] + slot["decline"] for slot in bins.slots]
    ticks1 = _nice_ticks(max(totals))
    ticks2 = _nice_ticks(max(flagged))
    out = [
        _legend([(d, DECISION_COLOURS[d]) for d in DECISIONS], left, 16, plot_w)[0],
        _y_axis(ticks1, left, left + plot_w, top1, h1),
        _y_axis(ticks2, left, left + plot_w, top2, h2),
        _text(left + plot_w, top2 - 10, "review and decline only", "end", ' class="title"'),
        _text(16, top1 + h1 / 2, "orders", "middle", f' transform="rotate(-90 16 {_f(top1 + h1 / 2)})"'),
        _text(16, top2 + h2 / 2, "orders", "middle", f' transform="rotate(-90 16 {_f(top2 + h2 / 2)})"'),
    ]
    for i, slot in enumerate(bins.slots):
        x = left + i * bar + gap / 2
        y1: float = top1 + h1
        y2: float = top2 + h2
        rects = []
        for decision in DECISIONS:
            count = slot[decision]
            if count:
                size1 = count / ticks1[-1] * h1
                y1 -= size1
                rects.append(_rect(x, y1, bar - gap, size1, DECISION_COLOURS[decision]))
                if decision != "approve":
                    size2 = count / ticks2[-1] * h2
                    y2 -= size2
                    rects.append(_rect(x, y2, bar - gap, size2, DECISION_COLOURS[decision]))
        if rects:
            tip = f"{bins.label(i)} UTC: " + ", ".join(f"{d} {slot[d]:,}" for d in DECISIONS)
            out.append(f"<g><title>{_e(tip)}</title>{''.join(rects)}</g>")
    out.append(bins.x_axis(left, plot_w, top2 + h2))
    out.append(_text(left + plot_w / 2, height - 6, f"event time (UTC), per {bins.describe()}", "middle"))
    return _svg(WIDTH, height, "decisions over event time", out)


def _rules_svg(bins: _Bins, rules: Sequence[str]) -> str:
    left, right = 64, 16
    plot_w = WIDTH - left - right
    colours = {rule: SERIES_COLOURS[i % len(SERIES_COLOURS)] for i, rule in enumerate(rules)}
    legend, rows = _legend([(rule, colours[rule]) for rule in rules], left, 16, plot_w, line=True)
    top = 16 + rows * 18 + 8
    plot_h = 200
    height = top + plot_h + 44
    n = len(bins.slots)
    ticks = _nice_ticks(max(slot["rule:" + rule] for slot in bins.slots for rule in rules))
    out = [
        legend,
        _y_axis(ticks, left, left + plot_w, top, plot_h),
        _text(16, top + plot_h / 2, "orders hit", "middle", f' transform="rotate(-90 16 {_f(top + plot_h / 2)})"'),
    ]
    step = plot_w / n
    for rule in rules:
        values = [slot["rule:" + rule] for slot in bins.slots]
        points = [(left + (i + 0.5) * step, top + plot_h - v / ticks[-1] * plot_h) for i, v in enumerate(values)]
        path = " ".join(f"{_f(x)},{_f(y)}" for x, y in points)
        total = sum(values)
        out.append(
            f'<g><title>{_e(rule)}: {total:,} orders hit</title><polyline points="{path}" fill="none" '
            f'stroke="{colours[rule]}" stroke-width="1.8" stroke-linejoin="round"/></g>'
        )
        if n <= 60:
            for i, ((x, y), v) in enumerate(zip(points, values, strict=True)):
                if v:
                    tip = f"{rule}, {bins.label(i)} UTC: {v:,}"
                    out.append(
                        f'<circle cx="{_f(x)}" cy="{_f(y)}" r="2.6" fill="{colours[rule]}"><title>{_e(tip)}</title>'
                        "</circle>"
                    )
    out.append(bins.x_axis(left, plot_w, top + plot_h))
    out.append(_text(left + plot_w / 2, height - 6, f"event time (UTC), per {bins.describe()}", "middle"))
    return _svg(WIDTH, height, "rule hits over event time", out)


def _histogram_svg(series: dict[str, Counter[int]]) -> str:
    left, right, top, plot_h = 64, 16, 34, 220
    plot_w = WIDTH - left - right
    height = top + plot_h + 46
    buckets = 21  # scores 0-4, 5-9, ..., 95-99 and 100 (the Tally caps the bucket at 20)
    totals = {name: sum(counts.values()) for name, counts in series.items()}
    shares = {
        name: [(counts[b] / totals[name] if totals[name] else 0.0) for b in range(buckets)]
        for name, counts in series.items()
    }
    ticks = _nice_ticks(max(max(s) for s in shares.values()), integer=False)
    slot = plot_w / buckets
    bar = (slot - 4) / len(series)
    out = [
        _legend([(name, LABEL_COLOURS[name]) for name in series], left, 16, plot_w)[0],
        _y_axis(ticks, left, left + plot_w, top, plot_h, percent=True),
        _text(16, top + plot_h / 2, "share of orders", "middle", f' transform="rotate(-90 16 {_f(top + plot_h / 2)})"'),
    ]
    for b in range(buckets):
        scores = "100" if b == 20 else f"{b * 5}{DASH}{b * 5 + 4}"
        for k, name in enumerate(series):
            share = shares[name][b]
            if not share:
                continue
            h = share / ticks[-1] * plot_h
            x = left + b * slot + 2 + k * bar
            tip = f"{name}, score {scores}: {series[name][b]:,} orders ({_pct(share, 1)} of {name})"
            out.append(f"<g><title>{_e(tip)}</title>{_rect(x, top + plot_h - h, bar, h, LABEL_COLOURS[name])}</g>")
    for b in range(0, buckets, 2):
        x = left + (b + 0.5) * slot
        out.append(_line(x, top + plot_h, x, top + plot_h + 4, "axis"))
        out.append(_text(x, top + plot_h + 17, "100" if b == 20 else f"{b * 5}{DASH}{b * 5 + 4}", "middle"))
    out.append(_line(left, top + plot_h, left + plot_w, top + plot_h, "axis"))
    out.append(_text(left + plot_w / 2, height - 6, "score", "middle"))
    return _svg(WIDTH, height, "score histogram by label", out)


def _hbars_svg(
    rows: Sequence[tuple[str, Sequence[tuple[float | None, str]]]], legend: Sequence[tuple[str, str]]
) -> str:
    """Horizontal bars of shares in [0, 1]: a group of bars per row, the row's name on the left."""
    longest = max(len(name) for name, _ in rows)
    left = math.ceil(min(max(longest * CHAR_WIDTH + 20, 90), 280))
    right = 64
    plot_w = WIDTH - left - right
    bars = max(len(values) for _, values in rows)
    bar_h = 11
    row_h = bars * bar_h + 14
    top = 34
    plot_h = row_h * len(rows)
    height = top + plot_h + 40
    out = [_legend(legend, left, 16, plot_w)[0]]
    for tick in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        x = left + tick * plot_w
        out.append(_line(x, top, x, top + plot_h, "grid" if tick else "axis"))
        out.append(_text(x, top + plot_h + 16, _tick_label(tick, True), "middle"))
    for i, (name, values) in enumerate(rows):
        y = top + i * row_h + 7
        shown = name if len(name) * CHAR_WIDTH + 20 <= left else name[: int((left - 20) / CHAR_WIDTH) - 1] + "…"
        out.append(f"<g><title>{_e(name)}</title>{_text(left - 8, y + bars * bar_h / 2 + 4, shown, 'end')}</g>")
        for k, (value, colour) in enumerate(values):
            top_k = y + k * bar_h
            label = _pct(value, 1)
            if value is not None:
                out.append(_rect(left, top_k + 1, value * plot_w, bar_h - 2, colour))
            out.append(_text(left + (value or 0) * plot_w + 4, top_k + bar_h - 1, label, extra=' class="val"'))
    out.append(_line(left, top + plot_h, left + plot_w, top + plot_h, "axis"))
    out.append(_text(left + plot_w / 2, height - 4, "share", "middle"))
    return _svg(WIDTH, height, "shares per " + ("rule" if legend[0][0] == "precision" else "scenario"), out)
