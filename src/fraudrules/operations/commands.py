"""The operators' commands: ``fraudrules rules show|set|mode|enable|disable`` and ``fraudrules top``."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any

import click

from fraudrules import codec
from fraudrules.commandline import fail, settings_from
from fraudrules.rules.registry import RegisteredRule
from fraudrules.settings import Settings


def _registered(settings: Settings) -> Mapping[str, RegisteredRule]:
    from fraudrules.rules.registry import PluginError, discover_configured

    try:
        return discover_configured(settings.plugins).rules(strict=settings.plugins.strict)
    except PluginError as exc:
        fail(str(exc))


def _value(text: str) -> Any:
    """A JSON value (5, 2.5, true, ["travel"]), else the text as a string (shadow)."""
    try:
        return codec.loads(text)
    except ValueError:
        return text


def _change(
    ctx: click.Context, assignments: list[tuple[str, Any]], change: str, wait: float, instances: int | None
) -> None:
    """Publish the rule set in force with ``assignments`` applied as the next version; report the instances."""
    from confluent_kafka import KafkaException

    from fraudrules.operations import control
    from fraudrules.settings import ConfigError

    settings = settings_from(ctx)
    registered = _registered(settings)
    try:
        view = control.view(settings, registered)
        rules, scoring = control.current_rules(settings, view.record)
        rules, scoring = control.apply_assignments(rules, scoring, assignments)
        version = view.highest + 1
        record, ruleset_id = control.publish(settings, registered, rules, scoring, version, change)
    except ConfigError as exc:
        fail(f"rule change refused, nothing published: {exc}")
    except KafkaException as exc:
        fail(f"cannot reach Kafka at {settings.kafka.bootstrap_servers}: {exc}")
    click.echo(f"published rule set version {record.version} ({ruleset_id}) to {settings.topics.rules}: {change}")
    if wait <= 0:
        return
    answers = control.wait_for_statuses(settings, record.version, view.end, instances, wait)
    for instance, status in sorted(answers.items()):
        detail = status.get("rulesetId") if status.get("status") == "applied" else status.get("error")
        click.echo(f"  {instance}: {status.get('status')} {detail}")
    if not answers:
        click.echo(f"  no running instance answered within {wait:g} s")
    if any(status.get("status") != "applied" for status in answers.values()):
        sys.exit(1)


_wait = click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=3.0,
    show_default=True,
    help="Seconds to wait for running instances to report the change (0: do not wait).",
)
_instances = click.option("--instances", type=click.IntRange(min=1), default=None, help="Stop waiting once N answered.")


@click.command("set")
@click.argument("assignments", nargs=-1, required=True, metavar="RULE.FIELD=VALUE...")
@_wait
@_instances
@click.pass_context
def set_(ctx: click.Context, assignments: tuple[str, ...], wait: float, instances: int | None) -> None:
    """Change rules on running pipelines: RULE.CONFIG_KEY=VALUE, RULE.enabled=false, RULE.mode=shadow,
    scoring.review_at=50 (values are JSON, else text). One new version of the rule set for all of them."""
    parsed = []
    for spec in assignments:
        path, sep, value = spec.partition("=")
        if not sep:
            raise click.BadParameter(f"expected RULE.FIELD=VALUE, got {spec!r}", param_hint="ASSIGNMENTS")
        parsed.append((path.strip(), _value(value)))
    _change(ctx, parsed, " ".join(assignments), wait, instances)


@click.command()
@click.argument("rule")
@click.argument("mode", type=click.Choice(["enforce", "shadow"]))
@_wait
@_instances
@click.pass_context
def mode(ctx: click.Context, rule: str, mode: str, wait: float, instances: int | None) -> None:
    """Set RULE to enforce (counts in the score) or shadow (reported in shadowHits only)."""
    _change(ctx, [(f"{rule}.mode", mode)], f"{rule}.mode={mode}", wait, instances)


def _switch(enabled: bool, help_text: str) -> click.Command:
    """``rules enable`` / ``rules disable``: the same change with the opposite value."""

    @click.argument("rule")
    @_wait
    @_instances
    @click.pass_context
    def switch(ctx: click.Context, rule: str, wait: float, instances: int | None) -> None:
        word = "true" if enabled else "false"
        _change(ctx, [(f"{rule}.enabled", enabled)], f"{rule}.enabled={word}", wait, instances)

    switch.__doc__ = help_text
    return click.command("enable" if enabled else "disable")(switch)


enable = _switch(True, "Enable RULE on running pipelines.")
disable = _switch(False, "Disable RULE on running pipelines (its state is kept for when it comes back).")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def show(ctx: click.Context, as_json: bool) -> None:
    """The rule set in force on running pipelines (the control topic's), and each instance's last answer."""
    from confluent_kafka import KafkaException

    from fraudrules.operations import control

    settings = settings_from(ctx)
    registered = _registered(settings)
    try:
        view = control.view(settings, registered)
    except KafkaException as exc:
        fail(f"cannot reach Kafka at {settings.kafka.bootstrap_servers}: {exc}")
    rules, scoring = control.current_rules(settings, view.record)
    built = control.build(
        control.RulesetRecord(version=view.record.version if view.record else 1, rules=rules, scoring=scoring),
        settings,
        registered,
        None,
    )
    rows = []
    for rule_id, reg in registered.items():
        rule_settings = built.settings.rule(rule_id)
        active = next((r for r in built.ruleset.rules if r.id == rule_id), None)
        config = active.config if active else reg.rule.config_model(**rule_settings.config)
        rows.append(
            {
                "id": rule_id,
                "version": reg.rule.version,
                "enabled": rule_settings.enabled,
                "mode": rule_settings.mode,
                "key": reg.rule.key,
                "config": config.model_dump(mode="json"),
            }
        )
    shown = {
        "topic": settings.topics.rules,
        "version": view.record.version if view.record else None,
        "rulesetId": built.ruleset.ruleset_id(built.settings.scoring),
        "setAt": view.record.setAt if view.record else None,
        "setBy": view.record.setBy if view.record else None,
        "change": view.record.change if view.record else None,
        "scoring": scoring.model_dump(mode="json"),
        "rules": rows,
        "instances": view.statuses,
    }
    if as_json:
        click.echo(codec.dumps_str(shown))
        return
    if view.record is None:
        click.echo(f"{settings.topics.rules}: no rule set published; running instances use their settings' rules")
    else:
        click.echo(
            f"{settings.topics.rules}: version {shown['version']} ({shown['rulesetId']}), set {shown['setAt']} "
            f"by {shown['setBy']}: {shown['change']}"
        )
    click.echo(f"scoring: review at {scoring.review_at}, decline at {scoring.decline_at}")
    for row in rows:
        state = "enabled" if row["enabled"] else "disabled"
        click.echo(f"  {row['id']} {row['version']} {state} {row['mode']} (key {row['key'] or '-'})")
        click.echo(f"      config: {codec.dumps_str(row['config'])}")
    for instance, status in sorted(view.statuses.items()):
        detail = status.get("rulesetId") if status.get("status") == "applied" else status.get("error")
        click.echo(f"instance {instance}: version {status.get('version')} {status.get('status')} {detail}")


RULES_COMMANDS = (show, set_, mode, enable, disable)


@click.command()
@click.option(
    "--url", default=None, help="Metrics endpoint (default: http://127.0.0.1:<metrics_port or 9464>/metrics)."
)
@click.option(
    "--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True, help="Seconds between scrapes."
)
@click.option("--once", is_flag=True, help="Print one screen (two scrapes an interval apart) and exit.")
@click.pass_context
def top(ctx: click.Context, url: str | None, interval: float, once: bool) -> None:
    """A live view of a running pipeline (fraudrules run --metrics-port): rates, decisions, rules, latency, lag."""
    from rich.console import Console
    from rich.live import Live

    from fraudrules.operations.top import fetch, render

    settings = settings_from(ctx)
    url = url or f"http://127.0.0.1:{settings.metrics_port or 9464}/metrics"
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # a pipe or a file: wide enough for the rules table
    before = fetch(url)
    if once:
        time.sleep(interval)
        now = fetch(url)
        console.print(render(url, now, before))
        sys.exit(1 if now.error else 0)
    try:
        with Live(render(url, before, None), console=console, auto_refresh=False, screen=True) as live:
            while True:
                time.sleep(interval)
                now = fetch(url)
                live.update(render(url, now, before if before.error is None else None), refresh=True)
                before = now
    except KeyboardInterrupt:
        pass
