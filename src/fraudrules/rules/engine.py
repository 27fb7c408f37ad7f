"""The rule set in force and the per-event evaluation of its rules, with isolation.

Built once at start-up from the registry and the settings; the per-event path calls rule functions
directly (never pluggy). Rules are grouped by the event field their state lives under: the pipeline
evaluates each group on the partition that owns that field's value.

Isolation policy: a rule that raises is reported in the verdict's ``errors`` and logged, and the event
goes on without its result (fail open). A call slower than ``isolation.slow_ms`` keeps its result but
counts as a failure. After ``max_consecutive_failures`` failures in a row the rule is suspended for
``suspend_events`` events (reported as an error on each), then tried again: a broken or slow rule
cannot stall every event. Python cannot pre-empt a running call, so a single call that never returns
still blocks its partition; rules must not do blocking I/O.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from pydantic import BaseModel, ValidationError

from fraudrules import codec
from fraudrules.pipeline.model import Enriched, RuleError, RuleHit, RuleResults
from fraudrules.rules import expressions as expression_rules
from fraudrules.rules.expressions import Expressions
from fraudrules.rules.lists import Lists, ListsUpdate
from fraudrules.rules.model import Event, Hit, Rule, RuleState
from fraudrules.rules.registry import RegisteredRule
from fraudrules.settings import ConfigError, IsolationSettings, RuleMode, Settings
from fraudrules.state import KeyState

log = structlog.get_logger(__name__)


class RuleObserver(Protocol):
    """Told about every rule call (metrics). Optional: with none, a call costs one attribute read more."""

    def rule_call(self, rule_id: str, seconds: float) -> None: ...

    def rule_suspended(self, rule_id: str) -> None: ...


#: The one state key under which every rule of a group keeps its state for the group's key (merchantId 7, ...).
RULES_STATE_KEY = "rules"
_ABSENT = object()


class _KeyValues:
    """Every rule's state of one group key as one stored value: read at most once and written at most once per
    event, whatever the number of rules and of their get/set calls (each a store operation otherwise).

    Stored as JSON text and parsed afresh for each event, so the rules work on a copy: a value that cannot be
    stored (a rule's mistake, or a plugin's) is found before anything is written, the rule that set it gets an
    error for the event and its state at the key stays as it was, whatever it changed in place. About 5 µs
    per group and event with the built-in rules (BENCHMARKS "Changes and gains")."""

    __slots__ = ("_dirty", "_state", "_text", "_values")

    def __init__(self, state: KeyState) -> None:
        self._state = state
        self._values: dict[str, Any] | None = None
        self._text: str | None = None
        self._dirty = False

    def values(self) -> dict[str, Any]:
        if self._values is None:
            stored = self._state.get(RULES_STATE_KEY)
            if isinstance(stored, str):
                self._text = stored
                self._values = codec.loads(stored)
            else:  # nothing yet, or stored as a value by fraudrules 0.2
                self._values = dict(stored) if stored else {}
                self._text = None if not stored else _text(stored)
        return self._values

    def changed(self) -> None:
        self._dirty = True

    def save(self, rules: list[ActiveRule]) -> list[ActiveRule]:
        """Store what the rules changed. The rules whose values cannot be stored get their state back as it was
        before the event, and are returned (their errors)."""
        if not self._dirty or self._values is None:
            return []
        values, unstorable = self._values, []
        text = _text(values)
        if text is None:
            unstorable = [active for active in rules if _text(_owned(values, active.id)) is None]
            before = {} if self._text is None else codec.loads(self._text)
            for active in unstorable:
                for name in _owned(values, active.id):
                    del values[name]
                values.update(_owned(before, active.id))
            text = _text(values)
            if text is None:  # under a name no rule owns: nothing of this event is stored
                text, unstorable = self._text, rules
        if text == "{}":
            self._state.delete(RULES_STATE_KEY)
        elif text != self._text:
            self._state.set(RULES_STATE_KEY, text)
        return unstorable


def _text(values: Any) -> str | None:
    try:
        return codec.dumps_strict(values).decode()
    except TypeError:
        return None


def _writable(hit: Any) -> bool:
    """Whether a rule's hit can go into a verdict and into state: a number, a string and JSON values."""
    if not isinstance(hit.reason, str) or not isinstance(hit.score, int | float) or hit.score != hit.score:
        return False
    try:
        codec.dumps_strict(hit.values)
    except TypeError:
        return False
    return isinstance(hit.values, dict)


def _owned(values: dict[str, Any], rule_id: str) -> dict[str, Any]:
    """The values of ``rule_id`` (stored under its prefix)."""
    prefix = rule_id + "."
    return {name: value for name, value in values.items() if name.startswith(prefix)}


class _PrefixedState:
    """A rule's view of the key's state: its keys are prefixed with the rule id."""

    __slots__ = ("_prefix", "_values")

    def __init__(self, values: _KeyValues, rule_id: str) -> None:
        self._values = values
        self._prefix = rule_id + "."

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.values().get(self._prefix + key, default)

    def set(self, key: str, value: Any) -> None:
        self._values.values()[self._prefix + key] = value
        self._values.changed()

    def delete(self, key: str) -> None:
        if self._values.values().pop(self._prefix + key, _ABSENT) is not _ABSENT:
            self._values.changed()


@dataclass
class ActiveRule:
    """An enabled rule with its validated config, mode and failure counters (per process)."""

    rule: Rule[Any]
    plugin: str
    config: BaseModel
    mode: RuleMode
    calls: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    suspended_for: int = 0

    @property
    def id(self) -> str:
        return self.rule.id


@dataclass
class RuleSet:
    rules: list[ActiveRule]
    isolation: IsolationSettings = field(default_factory=IsolationSettings)
    #: State keys of every installed rule, enabled or not: each gets a rule group (empty while none of its rules
    #: is enabled), so a rule set changed at run time can enable any installed rule without a new topology.
    installed_keys: frozenset[str] = frozenset()
    observer: RuleObserver | None = None
    #: The allow, review and decline lists (``rules/lists.py``): applied to the decision after scoring.
    lists: Lists = field(default_factory=Lists)
    #: The program of the expression rules among ``rules`` (``rules/expressions.py``), if any.
    expressions: Expressions | None = None

    def __post_init__(self) -> None:
        self.stateless = [r for r in self.rules if r.rule.key is None]
        self._expression_rules = [r for r in self.stateless if r.plugin == expression_rules.SOURCE]
        self._plugin_stateless = [r for r in self.stateless if r.plugin != expression_rules.SOURCE]
        self.groups: dict[str, list[ActiveRule]] = {key: [] for key in sorted(self.installed_keys)}
        for active in self.rules:
            if active.rule.key is not None:
                self.groups.setdefault(active.rule.key, []).append(active)
        self.versions = {r.id: r.rule.version for r in self.rules}
        self._slow_s = self.isolation.slow_ms / 1000

    def without_time_limit(self) -> RuleSet:
        """This rule set with slow calls never counted as failures: for an offline replay, where a verdict must
        not depend on how busy the machine was (live, a slow rule must not stall every event)."""
        self._slow_s = float("inf")
        return self

    @classmethod
    def build(cls, registered: Mapping[str, RegisteredRule], settings: Settings, lists: Lists | None = None) -> RuleSet:
        """The enabled rules with their configs from ``settings.rules``, then the expression rules; unknown rule
        names and expressions that do not compile are an error. ``lists``: the lists in force (default: the
        settings' own)."""
        lists = Lists.from_settings(settings.lists) if lists is None else lists
        unknown = sorted(set(settings.rules) - set(registered))
        if unknown:
            raise ConfigError(f"settings name rules that no installed plugin provides: {', '.join(unknown)}")
        active = []
        for rule_id, reg in registered.items():
            rule_settings = settings.rule(rule_id)
            if not rule_settings.enabled:
                continue
            try:
                config = reg.rule.config_model(**rule_settings.config)
            except ValidationError as exc:
                raise ConfigError(f"invalid config for rule {rule_id!r}: {exc}") from exc
            active.append(ActiveRule(reg.rule, reg.plugin, config, rule_settings.mode))
        defined, program = expression_rules.build(settings.expressions, lists, set(registered))
        for rule, expression in defined:
            config = expression_rules.config_of(expression)
            active.append(ActiveRule(rule, expression_rules.SOURCE, config, expression.mode))
        keys = frozenset(reg.rule.key for reg in registered.values() if reg.rule.key is not None)
        return cls(active, settings.isolation, keys, lists=lists, expressions=program)

    def ruleset_id(self, scoring: BaseModel, update: ListsUpdate | None = None) -> str:
        """A short hash of what decides verdicts: rule ids, versions, modes, configs, scoring, lists (as they
        will be once ``update`` is applied, if given)."""
        described = [[r.id, r.rule.version, r.mode, r.config.model_dump(mode="json")] for r in self.rules]
        shown: list[Any] = [described, scoring.model_dump(mode="json")]
        if update is not None:
            defined, _, revision = update
            if defined or self.lists.revision or revision:
                shown.append(self.lists.describe(max(revision, self.lists.revision), defined))
        elif self.lists:
            shown.append(self.lists.describe())
        digest = hashlib.sha256(codec.dumps(shown))
        return digest.hexdigest()[:16]

    def evaluate_stateless(self, enriched: Enriched) -> RuleResults:
        """The rules without state (plugins' and expressions), on one order."""
        if self.expressions is None:
            return self.evaluate(self.stateless, enriched["event"])
        results = self.evaluate(self._plugin_stateless, enriched["event"])
        self._evaluate_expressions(enriched, results["hits"], results["errors"])
        return results

    def _evaluate_expressions(self, enriched: Enriched, hits: list[RuleHit], errors: list[RuleError]) -> None:
        """The expression rules: their one program timed once, its time shared among them (metrics, the slow
        limit), each one's outcome its hit or its error, with the same failure counting as :meth:`_run`."""
        program = self.expressions
        assert program is not None
        running = [active for active in self._expression_rules if not self._suspended(active, errors)]
        if not running:
            return
        program.bind(enriched)
        started = time.perf_counter()
        outcomes = program.outcomes()
        share = (time.perf_counter() - started) / len(running)
        event = enriched["event"]
        for active in running:
            active.calls += 1
            outcome = outcomes[active.id]
            if isinstance(outcome, Exception):
                self._failed(active, event, repr(outcome))
                errors.append({"rule": active.id, "error": f"raised {outcome!r}"[:500]})
                continue
            if self.observer is not None:
                self.observer.rule_call(active.id, share)
            config: Any = active.config
            hit = (
                Hit(config.score, config.reason or f"{active.id}: {config.when}", program.read_by(active.id))
                if outcome
                else None
            )
            if self._settle(active, event, hit, share, hits, errors):
                active.consecutive_failures = 0

    def evaluate(self, rules: list[ActiveRule], event: Event, state: KeyState | None = None) -> RuleResults:
        """Run ``rules`` on ``event``; ``state`` is the key's state for a keyed group. Returns hits and errors."""
        hits: list[RuleHit] = []
        errors: list[RuleError] = []
        values = None if state is None else _KeyValues(state)
        succeeded: list[ActiveRule] = []
        for active in rules:
            if active.suspended_for > 0 and self._suspended(active, errors):
                continue
            rule_state = None if values is None else _PrefixedState(values, active.id)
            if self._run(active, event, rule_state, hits, errors):
                succeeded.append(active)
        if values is not None:
            unstorable = values.save(rules)
            for active in unstorable:  # a rare path: the rule's result goes too
                self._failed(active, event, "state that cannot be stored")
                hits = [hit for hit in hits if hit["rule"] != active.id]
                errors.append(
                    {"rule": active.id, "error": "stored a value that is not JSON: its state was kept as it was"}
                )
            if unstorable:
                succeeded = [active for active in succeeded if active not in unstorable]
        for active in succeeded:
            active.consecutive_failures = 0
        return {"hits": hits, "errors": errors}

    def _run(
        self,
        active: ActiveRule,
        event: Event,
        state: RuleState | None,
        hits: list[RuleHit],
        errors: list[RuleError],
    ) -> bool:
        """Call one rule: whether it succeeded (its failures in a row are counted by the caller, after its state
        is stored)."""
        active.calls += 1
        started = time.perf_counter()
        try:
            hit = active.rule.evaluate(event, active.config, state)
        except Exception as exc:
            self._failed(active, event, repr(exc))
            errors.append({"rule": active.id, "error": f"raised {exc!r}"[:500]})
            return False
        elapsed = time.perf_counter() - started
        if self.observer is not None:
            self.observer.rule_call(active.id, elapsed)
        if hit is None and elapsed <= self._slow_s:  # the usual call: nothing to add, nothing failed
            return True
        if hit is not None and not _writable(hit):
            self._failed(active, event, "returned a hit that cannot be written")
            errors.append({"rule": active.id, "error": "returned a hit whose score, reason or values are not JSON"})
            return False
        return self._settle(active, event, hit, elapsed, hits, errors)

    def _suspended(self, active: ActiveRule, errors: list[RuleError]) -> bool:
        """Whether ``active`` sits this event out (suspended after repeated failures), counting it down."""
        if active.suspended_for <= 0:
            return False
        active.suspended_for -= 1
        errors.append({"rule": active.id, "error": "suspended after repeated failures"})
        return True

    def _settle(
        self,
        active: ActiveRule,
        event: Event,
        hit: Hit | None,
        elapsed: float,
        hits: list[RuleHit],
        errors: list[RuleError],
    ) -> bool:
        """A call's result: its hit in ``hits``; whether it succeeded (a call slower than the limit fails)."""
        if hit is not None:
            hits.append(
                {
                    "rule": active.id,
                    "version": active.rule.version,
                    "mode": active.mode,
                    "score": max(0.0, min(100.0, float(hit.score))),
                    "reason": hit.reason,
                    "values": hit.values,
                    "micros": round(elapsed * 1e6, 1),
                }
            )
        if elapsed > self._slow_s:
            self._failed(active, event, f"slow: {elapsed * 1000:.1f} ms")
            if hit is None:
                errors.append(
                    {"rule": active.id, "error": f"slow: {elapsed * 1000:.1f} ms > {self.isolation.slow_ms} ms"}
                )
            return False
        return True

    def _failed(self, active: ActiveRule, event: Event, error: str) -> None:
        active.failures += 1
        active.consecutive_failures += 1
        log.warning("rule failed", rule=active.id, plugin=active.plugin, orderId=event.get("orderId"), error=error)
        if active.consecutive_failures >= self.isolation.max_consecutive_failures:
            active.suspended_for = self.isolation.suspend_events
            active.consecutive_failures = 0
            if self.observer is not None:
                self.observer.rule_suspended(active.id)
            log.error(
                "rule suspended",
                rule=active.id,
                plugin=active.plugin,
                events=self.isolation.suspend_events,
                failures=active.failures,
            )
