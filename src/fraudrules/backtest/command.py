"""``fraudrules backtest``: replay recorded traffic offline and report what the rules would have decided."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from fraudrules import codec


def _time_ms(value: str | None) -> int | None:
    """ISO 8601 (UTC unless it says otherwise) or milliseconds since the epoch."""
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected ISO 8601 or epoch milliseconds, got {value!r}") from None
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp() * 1000)


@click.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--payments", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="payment JSON lines.")
@click.option("--orders", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="order JSON lines.")
@click.option("--labels", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="labels JSON lines.")
@click.option("--from-topics", is_flag=True, help="Read the payment and order topics of the settings instead.")
@click.option("--since", help="With --from-topics: first Kafka timestamp (ISO 8601 or epoch ms).")
@click.option("--until", help="With --from-topics: end Kafka timestamp, exclusive (ISO 8601 or epoch ms).")
@click.option("--json", "json_file", type=click.Path(dir_okay=False, path_type=Path), help="Write the figures here.")
@click.option("--verdicts", type=click.Path(dir_okay=False, path_type=Path), help="Write every verdict here.")
@click.option("--html", type=click.Path(dir_okay=False, path_type=Path), help="Write a self-contained report page.")
@click.option(
    "--compare",
    "compare_config",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A second settings file (TOML): replay under both, report the orders that change decision.",
)
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
@click.pass_context
def backtest(
    ctx: click.Context,
    directory: Path | None,
    payments: Path | None,
    orders: Path | None,
    labels: Path | None,
    from_topics: bool,
    since: str | None,
    until: str | None,
    json_file: Path | None,
    verdicts: Path | None,
    html: Path | None,
    compare_config: Path | None,
    progress: bool | None,
) -> None:
    """Replay recorded payments and orders through the pipeline's own code, offline, with the rules of the settings.

    DIRECTORY holds payment.jsonl, order.jsonl and optionally labels.jsonl (what `fraudrules generate
    --output-dir` writes); a label marks its order as fraud unless it says "fraud": false. No broker is needed
    for files. Records are merged in event-time order, so the same input and rules always give the same verdicts.
    """
    from pydantic import ValidationError
    from tqdm import tqdm

    from fraudrules import backtest as bt
    from fraudrules.backtest.compare import render_comparison
    from fraudrules.commandline import settings_from
    from fraudrules.rules.registry import PluginError
    from fraudrules.settings import Settings, load_settings

    settings: Settings = settings_from(ctx)
    if from_topics:
        if directory or payments or orders:
            raise click.UsageError("--from-topics reads Kafka: give no files")
        records: Any = bt.read_topics(
            settings.kafka,
            {"payment": settings.topics.payment, "order": settings.topics.order},
            _time_ms(since),
            _time_ms(until),
        )
        partitions = None
    else:
        if since or until:
            raise click.UsageError("--since/--until select from topics: use them with --from-topics")
        base = directory or Path(".")
        payments = payments or base / "payment.jsonl"
        orders = orders or base / "order.jsonl"
        for path in (payments, orders):
            if not path.is_file():
                raise click.UsageError(f"no such file: {path} (give DIRECTORY, or --payments and --orders)")
        if labels is None and (base / "labels.jsonl").is_file():
            labels = base / "labels.jsonl"
        records = bt.read_files(payments, orders)
        partitions = None
    try:
        label_map = bt.read_labels(labels) if labels else None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    bar = tqdm(unit="side", disable=not (sys.stderr.isatty() if progress is None else progress), file=sys.stderr)
    try:
        if compare_config is None:
            result = bt.run_records(records, label_map, settings, progress=bar.update, partitions=partitions)
            other = comparison = None
        else:
            try:
                other_settings = load_settings(compare_config)
            except (ValidationError, ValueError, OSError) as exc:
                raise click.BadParameter(
                    f"invalid settings in {compare_config}: {exc}", param_hint="--compare"
                ) from None
            result, other, comparison = bt.compare(
                records, label_map, settings, other_settings, progress=bar.update, partitions=partitions
            )
    except PluginError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        bar.close()
    for line in bt.render(result.summary):
        click.echo(line)
    figures: dict[str, Any] = dict(result.summary)
    if other is not None and comparison is not None:
        for line in render_comparison(comparison, result.summary, other.summary):
            click.echo(line)
        figures["compare"] = {**comparison.as_dict(), "other": other.summary, "changes": comparison.changes}
    if json_file is not None:
        json_file.write_bytes(codec.dumps(figures) + b"\n")
    if verdicts is not None:
        with verdicts.open("wb") as out:
            for verdict in result.verdicts:
                out.write(codec.dumps(verdict) + b"\n")
    if html is not None:
        from fraudrules.backtest.html import write_html

        write_html(html, result, other, comparison)
