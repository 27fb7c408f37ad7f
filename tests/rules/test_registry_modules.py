"""Plugins given by module name (settings.plugins.modules), beside installed entry points."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fraudrules.rules.registry import PluginError, discover

LOCAL_PLUGIN = """
from fraudrules.rules import Hit, Rule, hookimpl


def evaluate(event, config, state):
    return Hit(score=10, reason="local", values={})


@hookimpl
def fraudrules_rules():
    return [Rule(id="local_rule", version="1.0.0", description="a local rule", evaluate=evaluate)]
"""


@pytest.fixture
def local_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    (tmp_path / "team_rules.py").write_text(LOCAL_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "team_rules"
    sys.modules.pop("team_rules", None)


def test_a_module_named_in_settings_is_loaded_beside_entry_points(local_module: str) -> None:
    registry = discover(modules=[local_module])

    rules = registry.rules()
    assert rules["local_rule"].plugin == local_module
    assert "amount_spike" in rules
    assert registry.versions[local_module] == "local"


def test_a_module_that_cannot_be_imported_is_skipped_or_fatal_when_strict() -> None:
    registry = discover(modules=["no_such_fraudrules_plugin"])
    assert "no_such_fraudrules_plugin" in registry.skipped

    with pytest.raises(PluginError, match="no_such_fraudrules_plugin"):
        discover(modules=["no_such_fraudrules_plugin"], strict=True)


def test_the_block_list_applies_to_modules(local_module: str) -> None:
    registry = discover(block=[local_module], modules=[local_module])

    assert "local_rule" not in registry.rules()
