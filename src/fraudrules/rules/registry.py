"""Plugin discovery over the ``fraudrules`` entry-point group, and the rules the plugins provide.

Runs once at start-up. A plugin that cannot be imported, or whose hook raises, is logged and skipped
(``strict`` makes that fatal, for CI); two rules with the same id are an error naming both plugins;
a misspelled hook is caught by ``check_pending``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import entry_points
from typing import Any

import pluggy
import structlog

from fraudrules.rules import hookspecs
from fraudrules.rules.model import Rule
from fraudrules.settings import PluginSettings

ENTRY_POINT_GROUP = "fraudrules"

log = structlog.get_logger(__name__)


class PluginError(Exception):
    """A plugin could not be loaded or its rules are inconsistent."""


@dataclass(frozen=True)
class PluginInfo:
    name: str
    version: str
    hooks: tuple[str, ...]
    rules: tuple[str, ...]


@dataclass(frozen=True)
class RegisteredRule:
    rule: Rule[Any]
    plugin: str


@dataclass
class Registry:
    """The plugin manager and what it found: rules by id, plugins by name, and the plugins skipped."""

    manager: pluggy.PluginManager
    versions: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def rules(self, strict: bool = False) -> dict[str, RegisteredRule]:
        """Every rule of every registered plugin, by id (sorted)."""
        found: dict[str, RegisteredRule] = {}
        impls = sorted(self.manager.hook.fraudrules_rules.get_hookimpls(), key=lambda impl: impl.plugin_name)
        for impl in impls:
            name = impl.plugin_name
            for rule in self._call_rules_hook(name, impl.function, strict):
                if rule.id in found:
                    other = found[rule.id].plugin
                    raise PluginError(f"rule id {rule.id!r} is provided by both plugin {other!r} and {name!r}")
                found[rule.id] = RegisteredRule(rule, name)
        return dict(sorted(found.items()))

    def plugins(self) -> list[PluginInfo]:
        infos = []
        rules_by_plugin: dict[str, list[str]] = {}
        for rule_id, registered in self.rules().items():
            rules_by_plugin.setdefault(registered.plugin, []).append(rule_id)
        for name, plugin in sorted(self._plugins().items()):
            hooks = tuple(sorted(caller.name for caller in self.manager.get_hookcallers(plugin) or []))
            infos.append(
                PluginInfo(name, self.versions.get(name, "unknown"), hooks, tuple(rules_by_plugin.get(name, [])))
            )
        return infos

    def register(self, plugin: object, name: str, version: str = "unknown") -> None:
        """Register a plugin object or module (tests and embedding; installed plugins come from entry points)."""
        self.manager.register(plugin, name=name)
        self.manager.check_pending()
        self.versions[name] = version

    def unregister(self, name: str) -> None:
        self.manager.unregister(name=name)
        self.versions.pop(name, None)

    def _plugins(self) -> dict[str, object]:
        return {name: plugin for name, plugin in self.manager.list_name_plugin() if name is not None}

    def _call_rules_hook(self, name: str, hook: Any, strict: bool) -> Iterable[Rule[Any]]:
        try:
            rules = list(hook())
            for rule in rules:
                if not isinstance(rule, Rule):
                    raise TypeError(f"fraudrules_rules returned {type(rule).__name__}, not a fraudrules Rule")
        except Exception as exc:
            if strict:
                raise PluginError(f"plugin {name!r} failed in fraudrules_rules: {exc!r}") from exc
            log.error("plugin hook failed; its rules are skipped", plugin=name, error=repr(exc))
            self.skipped[name] = repr(exc)
            return []
        return rules


def discover(
    allow: Iterable[str] = (), block: Iterable[str] = (), strict: bool = False, modules: Iterable[str] = ()
) -> Registry:
    """Load the plugins installed under the ``fraudrules`` entry-point group, then ``modules`` by import name.

    ``modules`` are plugins that are not packaged (a team's local rules, a test's): each is registered under
    its module name, with the same allow/block lists and error handling as installed ones.
    """
    allowed, blocked = set(allow), set(block)
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    registry = Registry(manager)
    found: list[tuple[str, str, Callable[[], Any], str]] = [
        (ep.name, ep.value, ep.load, ep.dist.version if ep.dist else "unknown")
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
    ]
    found += [(module, module, partial(importlib.import_module, module), "local") for module in modules]
    for name, origin, load, version in found:
        if name in blocked or (allowed and name not in allowed):
            log.info("plugin not loaded (allow/block list)", plugin=name)
            continue
        if manager.has_plugin(name):
            raise PluginError(f"two installed entry points are both named {name!r}")
        try:
            manager.register(load(), name=name)
        except Exception as exc:
            if strict:
                raise PluginError(f"plugin {name!r} ({origin}) failed to load: {exc!r}") from exc
            log.error("plugin failed to load; skipped", plugin=name, entry_point=origin, error=repr(exc))
            registry.skipped[name] = repr(exc)
            continue
        registry.versions[name] = version
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(str(exc)) from exc
    return registry


def discover_configured(plugins: PluginSettings) -> Registry:
    """:func:`discover` with the plugin settings (allow, block, strict, modules)."""
    return discover(plugins.allow, plugins.block, plugins.strict, plugins.modules)
