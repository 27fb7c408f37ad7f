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
from fraudrules.pipeline.model import RuleError, RuleHit, RuleResults
from fraudrules.rules.model import Event, Rule, RuleState
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
    event, whatever the number of rules and of their get/set calls (each a store operation otherwise)."""

    __slots__ = ("_dirty", "_state", "_values")

    def __init__(self, state: KeyState) -> None:
        self._state = state
        self._values: dict[str, Any] | None = None
        self._dirty = False

    def values(self) -> dict[str, Any]:
        if self._values is None:
            self._values = self._state.get(RULES_STATE_KEY) or {}
        return self._values

    def changed(self) -> None:
        self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        if self._values:
            self._state.set(RULES_STATE_KEY, self._values)
        else:
            self._state.delete(RULES_STATE_KEY)


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

    def __post_init__(self) -> None:
        self.stateless = [r for r in self.rules if r.rule.key is None]
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
    def build(cls, registered: Mapping[str, RegisteredRule], settings: Settings) -> RuleSet:
        """The enabled rules with their configs from ``settings.rules``; unknown rule names are an error."""
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
        keys = frozenset(reg.rule.key for reg in registered.values() if reg.rule.key is not None)
        return cls(active, settings.isolation, keys)

    def ruleset_id(self, scoring: BaseModel) -> str:
        """A short hash of what decides verdicts: rule ids, versions, modes, configs, scoring."""
        described = [[r.id, r.rule.version, r.mode, r.config.model_dump(mode="json")] for r in self.rules]
        digest = hashlib.sha256(codec.dumps([described, scoring.model_dump(mode="json")]))
        return digest.hexdigest()[:16]

    def evaluate(self, rules: list[ActiveRule], event: Event, state: KeyState | None = None) -> RuleResults:
        """Run ``rules`` on ``event``; ``state`` is the key's state for a keyed group. Returns hits and errors."""
        hits: list[RuleHit] = []
        errors: list[RuleError] = []
        values = None if state is None else _KeyValues(state)
        for active in rules:
            rule_state = None if values is None else _PrefixedState(values, active.id)
            if active.suspended_for > 0:
                active.suspended_for -= 1
                errors.append({"rule": active.id, "error": "suspended after repeated failures"})
                continue
            self._run(active, event, rule_state, hits, errors)
        if values is not None:
            values.save()
        return {"hits": hits, "errors": errors}

    def _run(
        self,
        active: ActiveRule,
        event: Event,
        state: RuleState | None,
        hits: list[RuleHit],
        errors: list[RuleError],
    ) -> None:
        active.calls += 1
        started = time.perf_counter()
        try:
            hit = active.rule.evaluate(event, active.config, state)
        except Exception as exc:
            self._failed(active, event, repr(exc))
            errors.append({"rule": active.id, "error": f"raised {exc!r}"[:500]})
            return
        elapsed = time.perf_counter() - started
        if self.observer is not None:
            self.observer.rule_call(active.id, elapsed)
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
        else:
            active.consecutive_failures = 0

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
