"""The plugin tutorial in CONTRIBUTING.md, followed literally: its files build a plugin that installs and passes."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Broker

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


def test_rule_config_from_the_environment_works_as_documented(monkeypatch: pytest.MonkeyPatch) -> None:
    from fraudrules.settings import load_settings

    monkeypatch.setenv("FRAUDRULES_RULES", '{"night_owl": {"config": {"min_amount": 20000}}}')

    assert load_settings().rule("night_owl").config == {"min_amount": 20000}


def analysts_loop() -> tuple[str, list[list[str]]]:
    """The settings file and the commands of CONTRIBUTING.md's analyst's loop, as written there."""
    text = (ROOT / "CONTRIBUTING.md").read_text().split("## Lists and expression rules")[1]
    toml = re.search(r"```toml\n(.*?)```", text, flags=re.DOTALL)
    bash = re.search(r"```bash\n(.*?)```", text, flags=re.DOTALL)
    assert toml is not None
    assert bash is not None
    return toml.group(1), [shlex.split(line, comments=True) for line in bash.group(1).splitlines() if line.strip()]


@pytest.mark.kafka
def test_the_analysts_loop_runs_as_written(kafka: Broker, unique: str, tmp_path: Path) -> None:
    toml, commands = analysts_loop()
    (tmp_path / "tonight.toml").write_text(toml)
    env = {
        **os.environ,
        "FRAUDRULES_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap,
        "FRAUDRULES_TOPICS__RULES": f"rules-{unique}",
    }
    env.pop("FRAUDRULES_CONFIG", None)
    outputs = []
    for command in commands:
        assert command[0] == "fraudrules"
        done = subprocess.run(
            [sys.executable, "-m", "fraudrules", *command[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
        outputs.append(done.stdout)

    compared = outputs[[c[1:3] for c in commands].index(["backtest", "recorded"])]
    assert "blocked_merchants" in compared or "big_entertainment" in compared  # the change shows, and why
    assert (tmp_path / "tonight.html").stat().st_size > 10_000
    history = outputs[-1]
    assert len([line for line in history.splitlines() if " version " in line]) == len(commands) - 4
    assert "lists add blocked_merchants 905 455" in history
    assert "define big_entertainment" in history
