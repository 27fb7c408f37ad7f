"""The ``fraudrules`` command line.

Exit status: 0 success, 1 failure (invalid records, unreachable broker, broken plugin), 2 usage error.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from pathlib import Path
from typing import Any, Literal

import click
from pydantic import ValidationError

from fraudrules import __version__, codec
from fraudrules.backtest.command import backtest as backtest_command
from fraudrules.commandline import fail, settings_from
from fraudrules.operations.commands import LISTS_COMMANDS, RULES_COMMANDS
from fraudrules.operations.commands import top as top_command
from fraudrules.settings import Settings, load_settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fraudrules")
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="FRAUDRULES_CONFIG",
    help="TOML settings file (FRAUDRULES_* environment variables override it).",
)
@click.pass_context
def cli(ctx: click.Context, config: Path | None) -> None:
    """Real-time fraud rules on Kafka: validate, join payments with orders, run rules, emit verdicts."""
    try:
        ctx.obj = {"settings": load_settings(config)}
    except (ValidationError, ValueError, OSError) as exc:
        fail(f"invalid settings: {exc}", 2)


class RunCommand(click.Command):
    """``run``, whose help ends with the settings it would run with (file and variables applied)."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        settings: Settings | None = (ctx.obj or {}).get("settings")
        if settings is None:
            return
        topics = settings.topics
        rows = [
            ("bootstrap servers", settings.kafka.bootstrap_servers, "FRAUDRULES_KAFKA__BOOTSTRAP_SERVERS"),
            ("consumer group", settings.consumer_group, "FRAUDRULES_CONSUMER_GROUP"),
            ("state directory", str(settings.state_dir.resolve()), "FRAUDRULES_STATE_DIR"),
            ("guarantee", settings.processing_guarantee, "FRAUDRULES_PROCESSING_GUARANTEE"),
            ("inputs", f"{topics.payment}, {topics.order}", "FRAUDRULES_TOPICS__PAYMENT, __ORDER"),
            ("outputs", f"{topics.sink}, {topics.deadletter}", "FRAUDRULES_TOPICS__SINK, __DEADLETTER"),
        ]
        with formatter.section("Effective settings (defaults < --config/FRAUDRULES_CONFIG file < FRAUDRULES_*)"):
            formatter.write_dl([(name, f"{value}  [{env}]") for name, value, env in rows])
        formatter.write_paragraph()
        formatter.write_text(
            "Every setting has a FRAUDRULES_* variable, nested with __ (FRAUDRULES_KAFKA__SASL_PASSWORD, "
            "FRAUDRULES_LOG_LEVEL, ...): see the Settings table in the README."
        )


@cli.command(cls=RunCommand)
@click.option("--bootstrap-servers", help="Kafka bootstrap servers (overrides the settings; effective value below).")
@click.option("--exactly-once", is_flag=True, help="Use exactly-once processing (default: at-least-once).")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus metrics at http://HOST:PORT/metrics (e.g. 9464; default: off, or metrics_port).",
)
@click.pass_context
def run(ctx: click.Context, bootstrap_servers: str | None, exactly_once: bool, metrics_port: int | None) -> None:
    """Run the pipeline until interrupted."""
    from fraudrules.runner import run_pipeline

    settings = settings_from(ctx)
    overrides: dict[str, Any] = {}
    if bootstrap_servers:
        overrides["kafka"] = settings.kafka.model_copy(update={"bootstrap_servers": bootstrap_servers})
    if exactly_once:
        overrides["processing_guarantee"] = "exactly-once"
    if metrics_port is not None:
        overrides["metrics_port"] = metrics_port
    sys.exit(run_pipeline(settings.model_copy(update=overrides)))


@cli.command()
@click.option(
    "--schema",
    "--topic",
    "kind",
    type=click.Choice(["payment", "order"]),
    required=True,
    help="Which schema to check against (--topic is the old name).",
)
@click.argument("file", type=click.File("rb"))
def validate(kind: str, file: Any) -> None:
    """Check a JSON-lines FILE against the schemas, without Kafka: one JSON result per line."""
    from fraudrules.pipeline.decode import RecordDecoder

    decoder = RecordDecoder(kind)  # type: ignore[arg-type]
    invalid = 0
    for number, line in enumerate(file, start=1):
        decoded = decoder(line.rstrip(b"\r\n"))
        result: dict[str, Any] = {"line": number, "ok": decoded.ok}
        if not decoded.ok:
            invalid += 1
            result.update(reason=decoded.reason, error=decoded.error)
        click.echo(codec.dumps_str(result))
    sys.exit(1 if invalid else 0)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def plugins(ctx: click.Context, as_json: bool) -> None:
    """List installed rule plugins: name, version, hooks and rules."""
    from fraudrules.rules.registry import PluginError, discover_configured

    plugin_settings = settings_from(ctx).plugins
    try:
        registry = discover_configured(plugin_settings)
        infos = registry.plugins()
    except PluginError as exc:
        fail(str(exc))
    rows = [{"name": i.name, "version": i.version, "hooks": list(i.hooks), "rules": list(i.rules)} for i in infos]
    skipped = [{"name": name, "error": error} for name, error in sorted(registry.skipped.items())]
    if as_json:
        click.echo(codec.dumps_str({"plugins": rows, "skipped": skipped}))
        return
    for row in rows:
        click.echo(
            f"{row['name']} {row['version']}  hooks: {', '.join(row['hooks'])}  rules: {', '.join(row['rules'])}"
        )
    for skip in skipped:
        click.echo(f"{skip['name']} SKIPPED: {skip['error']}")


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def rules(ctx: click.Context, as_json: bool) -> None:
    """List rules: id, version, plugin, enabled, mode and config (of the settings).

    The subcommands read and change the rule set in force on running pipelines (the control topic).
    """
    if ctx.invoked_subcommand is not None:
        return
    from fraudrules.rules.engine import RuleSet
    from fraudrules.rules.registry import PluginError, discover_configured
    from fraudrules.settings import ConfigError

    settings = settings_from(ctx)
    try:
        registry = discover_configured(settings.plugins)
        registered = registry.rules(strict=settings.plugins.strict)
        active = {r.id: r for r in RuleSet.build(registered, settings).rules}
    except (PluginError, ConfigError) as exc:
        fail(str(exc))
    rows = []
    for rule_id, reg in registered.items():
        rule_settings = settings.rule(rule_id)
        config = active[rule_id].config if rule_id in active else reg.rule.config_model(**rule_settings.config)
        rows.append(
            {
                "id": rule_id,
                "version": reg.rule.version,
                "plugin": reg.plugin,
                "enabled": rule_settings.enabled,
                "mode": rule_settings.mode,
                "key": reg.rule.key,
                "description": reg.rule.description,
                "config": config.model_dump(mode="json"),
            }
        )
    for name, expression in sorted(settings.expressions.items()):
        rows.append(
            {
                "id": name,
                "version": active[name].rule.version if name in active else "-",
                "plugin": "expressions",
                "enabled": expression.enabled,
                "mode": expression.mode,
                "key": None,
                "description": f"when {expression.when}",
                "config": expression.model_dump(mode="json", exclude={"enabled", "mode"}),
            }
        )
    if as_json:
        click.echo(codec.dumps_str(rows))
        return
    for row in rows:
        state = "enabled" if row["enabled"] else "disabled"
        click.echo(f"{row['id']} {row['version']} ({row['plugin']}) {state} {row['mode']}: {row['description']}")
        click.echo(f"    config: {codec.dumps_str(row['config'])}")


@cli.command()
@click.option(
    "--profile",
    type=click.Choice(["seed", "labelled", "realistic"]),
    default="labelled",
    show_default=True,
    help="seed: exactly the seed demo's traffic, no fraud; labelled: with labelled fraud scenarios; "
    "realistic: heterogeneous merchants and provinces, ~10 orders/s, scenarios and labelled look-alikes.",
)
@click.option("--count", type=click.IntRange(min=1), default=20000, show_default=True, help="Orders to generate.")
@click.option(
    "--rate",
    default="2",
    show_default=True,
    help="Orders (payment+order pairs) per second, as the seed's 0.5 s sleep; 'max' for as fast as possible.",
)
@click.option("--seed", type=int, default=None, help="Random seed: the same seed gives the same records.")
@click.option("--start", "start_ms", type=int, default=None, help="createTime of the first order, ms since the epoch.")
@click.option("--order-first-rate", type=click.FloatRange(0, 1), default=0.0, help="Share of orders sent first.")
@click.option("--side-delay-ms", type=click.IntRange(min=0), default=0, help="Event-time gap between the two sides.")
@click.option("--duplicate-rate", type=click.FloatRange(0, 1), default=0.0, help="Share of records sent twice.")
@click.option("--malformed-rate", type=click.FloatRange(0, 1), default=0.0, help="Extra broken records per order.")
@click.option(
    "--scenario",
    "scenarios",
    multiple=True,
    metavar="NAME=RATE",
    help="Rate of a fraud scenario per order (repeatable), e.g. --scenario amount_spike=0.01; 'none' for none.",
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write payment.jsonl, order.jsonl and labels.jsonl here instead of Kafka.",
)
@click.option("--bootstrap-servers", default=None, help="Kafka bootstrap servers (default from settings).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
@click.pass_context
def generate(
    ctx: click.Context,
    profile: Literal["seed", "labelled", "realistic"],
    count: int,
    rate: str,
    seed: int | None,
    start_ms: int | None,
    order_first_rate: float,
    side_delay_ms: int,
    duplicate_rate: float,
    malformed_rate: float,
    scenarios: tuple[str, ...],
    output_dir: Path | None,
    bootstrap_servers: str | None,
    progress: bool | None,
) -> None:
    """Generate the seed's payment and order records, with labelled fraud scenarios."""
    import time

    from tqdm import tqdm

    from fraudrules.connect import BrokerUnavailable
    from fraudrules.generate.data import GeneratorConfig, generator
    from fraudrules.generate.output import connect, write_files, write_kafka

    settings = settings_from(ctx)
    try:
        pairs_per_second = 0.0 if rate == "max" else float(rate)
    except ValueError:
        fail(f"--rate must be a number or 'max', got {rate!r}", 2)
    interval_ms = GeneratorConfig(profile=profile).gap_ms
    if start_ms is None:
        now_ms = int(time.time() * 1000)
        start_ms = now_ms if pairs_per_second > 0 else now_ms - count * interval_ms
    extra: dict[str, Any] = {"scenario_rates": parse_scenarios(scenarios)} if scenarios else {}
    try:
        config = GeneratorConfig(
            profile=profile,
            count=count,
            seed=seed,
            start_ms=start_ms,
            interval_ms=interval_ms,
            order_first_rate=order_first_rate,
            side_delay_ms=side_delay_ms,
            duplicate_rate=duplicate_rate,
            malformed_rate=malformed_rate,
            **extra,
        )
    except ValueError as exc:
        fail(str(exc), 2)
    source = generator(config)
    bar = tqdm(total=count, unit="order", disable=not (sys.stderr.isatty() if progress is None else progress))
    if output_dir is not None:
        written = write_files(source, output_dir, bar.update)
        bar.close()
        click.echo(
            f"Wrote {written.payments} payments, {written.orders} orders and {written.labels} labels to {output_dir}"
        )
        return
    kafka = settings.kafka
    if bootstrap_servers:
        kafka = kafka.model_copy(update={"bootstrap_servers": bootstrap_servers})
    topics = settings.topics
    try:
        connect(kafka)
        click.echo("Connected to Kafka")
        click.echo(f"Producing {count} records to payment topic {topics.payment} and order topic {topics.order}")
        written = write_kafka(source, kafka, topics, pairs_per_second, bar.update)
    except BrokerUnavailable as exc:
        bar.close()
        fail(str(exc))
    bar.close()
    click.echo(
        f"Produced {written.payments} payments, {written.orders} orders and {written.labels} labels "
        f"in {written.seconds:.1f}s"
    )


@cli.command()
@click.option("--bootstrap-servers", default=None, help="Kafka bootstrap servers (default from settings).")
@click.option("--count", type=click.IntRange(min=1), default=20000, show_default=True, help="Orders to generate.")
@click.option("--rate", type=click.FloatRange(min=1), default=1000.0, show_default=True, help="Orders per second.")
@click.option("--seed", type=int, default=42, show_default=True, help="Random seed of the generated data.")
@click.option("--join-window", type=click.FloatRange(min=1), default=30.0, show_default=True, help="Join window, s.")
@click.option("--timeout", type=click.FloatRange(min=1), default=300.0, show_default=True, help="Wait for verdicts, s.")
@click.pass_context
def demo(
    ctx: click.Context,
    bootstrap_servers: str | None,
    count: int,
    rate: float,
    seed: int,
    join_window: float,
    timeout: float,
) -> None:
    """Labelled data through the pipeline on a running broker, then a summary (what make demo runs)."""
    from fraudrules.demo import run_demo

    settings = settings_from(ctx)
    if bootstrap_servers:
        settings = settings.model_copy(
            update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": bootstrap_servers})}
        )
    status = run_demo(
        settings,
        count=count,
        rate=rate,
        seed=seed,
        join_window=join_window,
        timeout=timeout,
        echo=click.echo,
        error=lambda line: click.echo(line, err=True),
    )
    sys.exit(status)


def parse_scenarios(specs: tuple[str, ...]) -> dict[str, float]:
    if specs == ("none",):
        return {}
    rates: dict[str, float] = {}
    for spec in specs:
        name, _, value = spec.partition("=")
        try:
            rates[name] = float(value)
        except ValueError:
            raise click.BadParameter(f"expected NAME=RATE, got {spec!r}", param_hint="--scenario") from None
    return rates


cli.add_command(backtest_command, name="backtest")
cli.add_command(top_command, name="top")
for command in RULES_COMMANDS:
    rules.add_command(command)


@cli.group("lists")
def lists_group() -> None:
    """Allow, review and decline lists on running pipelines (the control topic): add, remove, show."""


for command in LISTS_COMMANDS:
    lists_group.add_command(command)


def main() -> None:
    # Quix Streams imports authlib's deprecated httpx integration, and authlib forces its warnings on at
    # import: import it first, then silence that one warning (not ours to fix, nothing the user can do).
    with contextlib.suppress(ImportError):
        import authlib.deprecate  # noqa: F401
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    from fraudrules.rules.registry import PluginError
    from fraudrules.settings import ConfigError

    try:
        cli(prog_name="fraudrules")
    except (ConfigError, PluginError) as exc:  # whichever command met it: a message, never a traceback
        fail(str(exc), 2)
