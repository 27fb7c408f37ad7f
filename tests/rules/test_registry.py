"""Plugin discovery through the ``fraudrules`` entry-point group, with real installed distributions."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from fraudrules.rules import Hit, Rule, hookimpl
from fraudrules.rules.registry import PluginError, discover


def test_built_in_and_example_plugins_are_found_through_entry_points_not_imports() -> None:
    script = textwrap.dedent(
        """
        import sys
        from importlib.metadata import version
        assert "fraudrules_round_amount" not in sys.modules
        from fraudrules.rules.registry import discover
        registry = discover()
        rules = registry.rules()
        print(registry.versions["round_amount"] == version("fraudrules-round-amount"))
        print(rules["round_amount"].plugin, rules["amount_spike"].plugin)
        """
    )

    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout

    assert out.split() == ["True", "round_amount", "builtin_rules"]


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on sys.path where tests install distributions with fraudrules entry points."""
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def install(site: Path, dist: str, entry_points: dict[str, str], module: str | None = None, code: str = "") -> None:
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[fraudrules]\n{lines}\n")
    if module:
        (site / f"{module}.py").write_text(textwrap.dedent(code))


PLUGIN_CODE = """
    from fraudrules.rules import Hit, Rule, hookimpl

    @hookimpl
    def fraudrules_rules():
        return [Rule(id="{rule}", version="1", description="d", evaluate=lambda e, c, s: None)]
"""


def test_a_plugin_that_fails_to_import_is_logged_and_skipped(installed: Path) -> None:
    install(installed, "broken-plugin", {"broken": "no_such_module_anywhere"})

    with capture_logs() as logs:
        registry = discover()

    assert "broken" in registry.skipped
    assert "amount_spike" in registry.rules()
    assert any(log["event"] == "plugin failed to load; skipped" and log["plugin"] == "broken" for log in logs)


def test_strict_mode_fails_on_a_plugin_that_does_not_import(installed: Path) -> None:
    install(installed, "broken-plugin", {"broken": "no_such_module_anywhere"})

    with pytest.raises(PluginError, match="plugin 'broken'"):
        discover(strict=True)


def test_a_plugin_whose_hook_raises_is_skipped_unless_strict(installed: Path) -> None:
    install(
        installed,
        "raising-plugin",
        {"raising": "raising_plugin"},
        "raising_plugin",
        """
        from fraudrules.rules import hookimpl

        @hookimpl
        def fraudrules_rules():
            raise RuntimeError("cannot read my config")
        """,
    )

    registry = discover()
    rules = registry.rules()

    assert "cannot read my config" in registry.skipped["raising"]
    assert "amount_spike" in rules
    with pytest.raises(PluginError, match="cannot read my config"):
        discover().rules(strict=True)


def test_two_rules_with_the_same_id_name_both_plugins(installed: Path) -> None:
    install(
        installed, "copycat", {"copycat": "copycat_plugin"}, "copycat_plugin", PLUGIN_CODE.format(rule="amount_spike")
    )

    with pytest.raises(PluginError, match="'amount_spike' is provided by both plugin 'builtin_rules' and 'copycat'"):
        discover().rules()


def test_a_misspelled_hook_is_caught(installed: Path) -> None:
    install(
        installed,
        "typo-plugin",
        {"typo": "typo_plugin"},
        "typo_plugin",
        """
        from fraudrules.rules import hookimpl

        @hookimpl
        def fraudrules_rule():
            return []
        """,
    )

    with pytest.raises(PluginError, match="fraudrules_rule"):
        discover()


def test_allow_and_block_lists_choose_plugins(installed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(installed, "extra", {"extra": "extra_plugin"}, "extra_plugin", PLUGIN_CODE.format(rule="extra_rule"))

    assert "extra_rule" not in discover(block=["extra"]).rules()
    assert set(discover(allow=["extra"]).rules()) == {"extra_rule"}

    from fraudrules.settings import load_settings

    monkeypatch.setenv("FRAUDRULES_PLUGINS__BLOCK", '["extra", "round_amount"]')
    plugins = load_settings().plugins
    assert set(discover(plugins.allow, plugins.block).rules()) == {
        "amount_spike",
        "merchant_category",
        "orphan_payment",
        "province_velocity",
        "reused_order_id",
    }


def test_a_plugin_registered_for_one_test_is_used_then_removed() -> None:
    registry = discover()

    class Plugin:
        @hookimpl
        def fraudrules_rules(self) -> list[Rule[Any]]:
            return [Rule(id="temp", version="1", description="d", evaluate=lambda e, c, s: Hit(1, "x"))]

    registry.register(Plugin(), name="temp-plugin")
    try:
        assert registry.rules()["temp"].plugin == "temp-plugin"
    finally:
        registry.unregister("temp-plugin")
    assert "temp" not in registry.rules()
