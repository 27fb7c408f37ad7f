"""The operators' commands: ``fraudrules rules show|set|mode|enable|disable`` and ``fraudrules top``."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import click

from fraudrules import codec
from fraudrules.commandline import fail, settings_from
from fraudrules.rules.registry import RegisteredRule
from fraudrules.settings import Settings

if TYPE_CHECKING:
    from fraudrules.operations.control import RulesetRecord, TopicView


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


#: A change: from the configuration in force and the topic's view, the next configuration and list entries.
Edit = Callable[["RulesetRecord", "TopicView"], tuple["RulesetRecord", list[dict[str, Any]]]]


def _change(ctx: click.Context, edit: Edit, change: str, wait: float, instances: int | None) -> None:
    """Publish the configuration in force, edited, as the next version; report what the instances made of it.
    A change that does not build here is refused, kept in the audit trail, and the command exits 2."""
    from confluent_kafka import KafkaException

    from fraudrules.operations import control
    from fraudrules.settings import ConfigError

    settings = settings_from(ctx)
    registered = _registered(settings)
    try:
        view = control.view(settings, registered)
        try:
            config, entries = edit(control.current(settings, view.record), view)
            record, ruleset_id = control.publish(settings, registered, config, view.highest + 1, change, entries)
        except ConfigError as exc:
            control.refused(settings, change, str(exc))
            fail(f"rule change refused, nothing published: {exc}", 2)
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


def _assign(assignments: list[tuple[str, Any]]) -> Edit:
    from fraudrules.operations import control

    return lambda config, view: (control.apply_assignments(config, assignments), [])


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
    _change(ctx, _assign(parsed), " ".join(assignments), wait, instances)


@click.command()
@click.argument("rule")
@click.argument("mode", type=click.Choice(["enforce", "shadow"]))
@_wait
@_instances
@click.pass_context
def mode(ctx: click.Context, rule: str, mode: str, wait: float, instances: int | None) -> None:
    """Set RULE to enforce (counts in the score) or shadow (reported in shadowHits only)."""
    _change(ctx, _assign([(f"{rule}.mode", mode)]), f"{rule}.mode={mode}", wait, instances)


def _switch(enabled: bool, help_text: str) -> click.Command:
    """``rules enable`` / ``rules disable``: the same change with the opposite value."""

    @click.argument("rule")
    @_wait
    @_instances
    @click.pass_context
    def switch(ctx: click.Context, rule: str, wait: float, instances: int | None) -> None:
        word = "true" if enabled else "false"
        _change(ctx, _assign([(f"{rule}.enabled", enabled)]), f"{rule}.enabled={word}", wait, instances)

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
    in_force = control.current(settings, view.record)
    scoring = in_force.scoring
    built = control.build(in_force.model_copy(update={"version": max(in_force.version, 1)}), settings, registered, None)
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
    for name, expression in sorted(built.settings.expressions.items()):
        active = next((r for r in built.ruleset.rules if r.id == name), None)
        rows.append(
            {
                "id": name,
                "version": active.rule.version if active else "-",
                "enabled": expression.enabled,
                "mode": expression.mode,
                "key": None,
                "config": expression.model_dump(mode="json", exclude={"enabled", "mode"}),
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


@click.command()
@click.argument("name")
@click.option("--when", "when", required=True, help='The CEL expression, e.g. "event.payAmount > 50000.0".')
@click.option("--score", type=click.FloatRange(0, 100), required=True, help="Its score when it is true.")
@click.option("--reason", default="", help="Why, in words (the verdict's hit reason).")
@click.option("--mode", "mode_", type=click.Choice(["enforce", "shadow"]), default="enforce", show_default=True)
@_wait
@_instances
@click.pass_context
def define(
    ctx: click.Context, name: str, when: str, score: float, reason: str, mode_: str, wait: float, instances: int | None
) -> None:
    """Define (or redefine) expression rule NAME on running pipelines: a CEL condition with a score."""
    from fraudrules.settings import ExpressionSettings

    expression = ExpressionSettings(when=when, score=score, reason=reason, mode=mode_)  # type: ignore[arg-type]

    def edit(config: RulesetRecord, view: TopicView) -> tuple[RulesetRecord, list[dict[str, Any]]]:
        return config.model_copy(update={"expressions": {**config.expressions, name: expression}}), []

    _change(
        ctx,
        edit,
        f"define {name}: when {when} score {score:g}" + (" (shadow)" if mode_ == "shadow" else ""),
        wait,
        instances,
    )


@click.command()
@click.argument("name")
@_wait
@_instances
@click.pass_context
def undefine(ctx: click.Context, name: str, wait: float, instances: int | None) -> None:
    """Remove expression rule NAME from running pipelines."""
    from fraudrules.settings import ConfigError

    def edit(config: RulesetRecord, view: TopicView) -> tuple[RulesetRecord, list[dict[str, Any]]]:
        if name not in config.expressions:
            raise ConfigError(f"no expression rule named {name!r} (defined: {', '.join(config.expressions) or 'none'})")
        expressions = {key: value for key, value in config.expressions.items() if key != name}
        return config.model_copy(update={"expressions": expressions}), []

    _change(ctx, edit, f"undefine {name}", wait, instances)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def history(ctx: click.Context, as_json: bool) -> None:
    """Every change made at runtime (rules, modes, settings, expressions, lists): when, by whom, what, and the
    ruleset id verdicts decided under it carry; refused changes too."""
    from confluent_kafka import KafkaException

    from fraudrules.operations import control

    settings = settings_from(ctx)
    try:
        view = control.view(settings, _registered(settings))
    except KafkaException as exc:
        fail(f"cannot reach Kafka at {settings.kafka.bootstrap_servers}: {exc}")
    entries = sorted(view.audit, key=lambda entry: str(entry.get("at")))
    if as_json:
        click.echo(codec.dumps_str(entries))
        return
    if not entries:
        click.echo(f"{settings.topics.rules}: no change made at runtime")
    for entry in entries:
        if entry.get("status") == "refused":
            click.echo(f"{entry.get('at')}  refused  {entry.get('by')}: {entry.get('change')} ({entry.get('error')})")
        else:
            click.echo(
                f"{entry.get('at')}  version {entry.get('version')} ({entry.get('rulesetId')})  {entry.get('by')}: "
                f"{entry.get('change')}"
            )


RULES_COMMANDS = (show, set_, mode, enable, disable, define, undefine, history)


# --- fraudrules lists add|remove|show ------------------------------------------------------------------------

_UNITS_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_ttl(text: str) -> int:
    """``90s``, ``30m``, ``24h``, ``7d``, ``2w`` in ms."""
    number, unit = text[:-1], text[-1:].lower()
    try:
        amount = float(number)
    except ValueError:
        amount = -1
    if unit not in _UNITS_MS or amount <= 0:
        raise click.BadParameter(f"expected a number and s, m, h, d or w (7d, 24h), got {text!r}", param_hint="--ttl")
    return round(amount * _UNITS_MS[unit])


@click.command("add")
@click.argument("name")
@click.argument("values", nargs=-1)
@click.option(
    "--file",
    "values_file",
    type=click.File("r"),
    default=None,
    help="Values one per line, besides VALUES ('-': standard input): for long lists.",
)
@click.option("--field", "field_", default=None, help="The event field the list holds (required for a new list).")
@click.option(
    "--action", type=click.Choice(["approve", "review", "decline"]), default=None, help="Required for a new list."
)
@click.option("--ttl", default=None, help="Entries expire after this long: 90s, 30m, 24h, 7d, 2w (default: never).")
@click.option("--reason", default="", help="Why these values are listed (shown in verdicts).")
@_wait
@_instances
@click.pass_context
def lists_add(
    ctx: click.Context,
    name: str,
    values: tuple[str, ...],
    values_file: Any,
    field_: str | None,
    action: str | None,
    ttl: str | None,
    reason: str,
    wait: float,
    instances: int | None,
) -> None:
    """Add VALUES to list NAME on running pipelines (creating it with --field and --action)."""
    from fraudrules.operations import control
    from fraudrules.settings import ConfigError

    ttl_ms = parse_ttl(ttl) if ttl else None
    from_file = [line.strip() for line in values_file if line.strip()] if values_file is not None else []
    if not values and not from_file:
        raise click.UsageError("give VALUES or --file")
    shown = " ".join(values) if not from_file else f"{' '.join(values)} and {len(from_file):,} from {values_file.name}"
    values = (*values, *from_file)

    def edit(config: RulesetRecord, view: TopicView) -> tuple[RulesetRecord, list[dict[str, Any]]]:
        settings = settings_from(ctx)
        existing = control.list_definition(settings, config, name)
        if existing is None:
            if field_ is None or action is None:
                raise ConfigError(f"list {name!r} does not exist: give --field and --action to create it")
            definition = control.ListDefinition(field=field_, action=action)  # type: ignore[arg-type]
            config = config.model_copy(update={"lists": {**config.lists, name: definition}})
        elif (field_ or existing.field, action or existing.action) != (existing.field, existing.action):
            raise ConfigError(f"list {name!r} holds {existing.field} values with action {existing.action}")
        now_ms = int(time.time() * 1000)
        expires = now_ms + ttl_ms if ttl_ms is not None else None
        added = {"reason": reason, "expiresAt": expires, "addedAt": control.now_iso(), "addedBy": control.who()}
        return config, [{"list": name, "value": value, **added} for value in dict.fromkeys(values)]

    change = f"lists add {name} {shown.strip()}" + (f" (ttl {ttl})" if ttl else "") + (f": {reason}" if reason else "")
    _change(ctx, edit, change, wait, instances)


@click.command("remove")
@click.argument("name")
@click.argument("values", nargs=-1, required=True)
@_wait
@_instances
@click.pass_context
def lists_remove(ctx: click.Context, name: str, values: tuple[str, ...], wait: float, instances: int | None) -> None:
    """Remove VALUES from list NAME on running pipelines (settings-file values included)."""
    from fraudrules.operations import control
    from fraudrules.settings import ConfigError

    def edit(config: RulesetRecord, view: TopicView) -> tuple[RulesetRecord, list[dict[str, Any]]]:
        if control.list_definition(settings_from(ctx), config, name) is None:
            raise ConfigError(f"list {name!r} does not exist")
        removed = {"removed": True, "at": control.now_iso(), "by": control.who()}
        return config, [{"list": name, "value": value, **removed} for value in dict.fromkeys(values)]

    _change(ctx, edit, f"lists remove {name} {' '.join(values)}", wait, instances)


@click.command("show")
@click.argument("name", required=False)
@click.option("--limit", type=click.IntRange(min=0), default=1000, show_default=True, help="Entries shown per list.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def lists_show(ctx: click.Context, name: str | None, limit: int, as_json: bool) -> None:
    """The lists in force on running pipelines: field, action, entries (with NAME: its entries)."""
    from confluent_kafka import KafkaException

    from fraudrules.operations import control

    settings = settings_from(ctx)
    try:
        view = control.view(settings, _registered(settings))
    except KafkaException as exc:
        fail(f"cannot reach Kafka at {settings.kafka.bootstrap_servers}: {exc}")
    shown = control.lists_in_force(settings, view, int(time.time() * 1000))
    if name is not None:
        if name not in shown:
            fail(f"no list named {name!r} (lists: {', '.join(shown) or 'none'})")
        shown = {name: shown[name]}
    for listed in shown.values():
        listed["entries"] = listed["entries"][: limit if name is not None else 0]
    if as_json:
        click.echo(codec.dumps_str(shown))
        return
    if not shown:
        click.echo(
            "no lists: [lists.NAME] in the settings file, or fraudrules lists add NAME VALUE --field F --action A"
        )
    for list_name, listed in shown.items():
        click.echo(f"{list_name}: {listed['field']} -> {listed['action']}, {listed['size']} entries in force")
        for entry in listed["entries"]:
            expiry = f" until {entry['expiresAt']}" if entry.get("expiresAt") else ""
            by = f" ({entry['addedBy']}, {entry['addedAt']})" if entry.get("addedBy") else ""
            click.echo(f"  {entry['value']}{expiry}: {entry['reason']}{by}")


LISTS_COMMANDS = (lists_add, lists_remove, lists_show)


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
