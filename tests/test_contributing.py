"""The plugin tutorial in CONTRIBUTING.md, followed literally: its files build a plugin that installs and passes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def tutorial_files() -> dict[str, str]:
    text = (ROOT / "CONTRIBUTING.md").read_text()
    return dict(re.findall(r"\*\*`([^`]+)`\*\*\n\n```\w*\n(.*?)```", text, flags=re.DOTALL))


def test_the_plugin_tutorial_builds_a_working_tested_installable_plugin(tmp_path: Path) -> None:
    files = tutorial_files()
    assert set(files) == {
        "fraudrules-night-owl/pyproject.toml",
        "fraudrules-night-owl/src/fraudrules_night_owl/__init__.py",
        "fraudrules-night-owl/tests/test_night_owl.py",
        "fraudrules-night-owl/README.md",
    }
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            site,
            tmp_path / "fraudrules-night-owl",
        ],
        check=True,
        timeout=300,
    )
    env = {**os.environ, "PYTHONPATH": str(site)}

    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", tmp_path / "fraudrules-night-owl/tests"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    rules = subprocess.run(
        [sys.executable, "-m", "fraudrules", "rules"], env=env, capture_output=True, text=True, timeout=120
    )

    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "3 passed" in tests.stdout
    assert "night_owl 0.1.0 (night_owl) enabled enforce: Large payment at night (UTC)." in rules.stdout


def test_rule_config_from_the_environment_works_as_documented(monkeypatch) -> None:
    from fraudrules.settings import load_settings

    monkeypatch.setenv("FRAUDRULES_RULES", '{"night_owl": {"config": {"min_amount": 20000}}}')

    assert load_settings().rule("night_owl").config == {"min_amount": 20000}
