from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fraudrules import __version__, codec
from fraudrules.cli import cli
from fraudrules.rules.builtin.amount_spike import AmountSpikeConfig
from tests.fixtures import ORDER, PAYMENT


def test_version_prints_the_package_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])

    assert result.exit_code == 0
    assert result.output.strip() == f"fraudrules, version {__version__}"


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_validate_reports_each_line_and_exits_1_on_any_invalid(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "payments.jsonl",
        [codec.dumps(PAYMENT), b"{broken", codec.dumps({**PAYMENT, "payAmount": -1})],
    )

    result = CliRunner().invoke(cli, ["validate", "--topic", "payment", str(path)])

    assert result.exit_code == 1
    lines = [codec.loads(line) for line in result.output.splitlines()]
    assert lines[0] == {"line": 1, "ok": True}
    assert (lines[1]["line"], lines[1]["ok"], lines[1]["reason"]) == (2, False, "not_json")
    assert lines[2]["error"].startswith("payment: $.payAmount")


def test_validate_exits_0_when_every_line_is_valid(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "orders.jsonl", [codec.dumps(ORDER)] * 3)

    result = CliRunner().invoke(cli, ["validate", "--topic", "order", str(path)])

    assert result.exit_code == 0
    assert result.output.count('"ok":true') == 3


@pytest.mark.parametrize(
    "args",
    [["validate", "--topic", "refund", "x.jsonl"], ["validate", "--topic", "payment", "/no/such/file"], ["validate"]],
)
def test_validate_usage_errors_exit_2(args: list[str]) -> None:
    assert CliRunner().invoke(cli, args).exit_code == 2


def test_rules_json_lists_the_built_in_rules_with_their_configs() -> None:
    result = CliRunner().invoke(cli, ["rules", "--json"])

    assert result.exit_code == 0
    rows = {row["id"]: row for row in codec.loads(result.output)}
    assert {"amount_spike", "province_velocity", "merchant_category", "orphan_payment"} <= set(rows)
    assert rows["amount_spike"]["plugin"] == "builtin_rules"
    assert rows["amount_spike"]["key"] == "merchantId"
    assert rows["amount_spike"]["config"] == AmountSpikeConfig().model_dump(mode="json")
    assert rows["province_velocity"]["mode"] == "enforce"


def test_plugins_json_shows_hooks_and_rules_per_plugin() -> None:
    result = CliRunner().invoke(cli, ["plugins", "--json"])

    assert result.exit_code == 0
    plugins = {p["name"]: p for p in codec.loads(result.output)["plugins"]}
    assert plugins["builtin_rules"]["hooks"] == ["fraudrules_rules"]
    assert "amount_spike" in plugins["builtin_rules"]["rules"]


def test_run_against_an_unreachable_broker_exits_1_with_a_readable_error() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "fraudrules", "run", "--bootstrap-servers", "127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "FRAUDRULES_LOG_FORMAT": "json"},
    )

    assert completed.returncode == 1
    assert "cannot reach Kafka at 127.0.0.1:9" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_validate_schema_is_the_flag_and_topic_still_works(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "orders.jsonl", [codec.dumps(ORDER)])

    for flag in ("--schema", "--topic"):
        result = CliRunner().invoke(cli, ["validate", flag, "order", str(path)])
        assert (flag, result.exit_code, result.output.strip()) == (flag, 0, '{"line":1,"ok":true}')


def test_run_help_shows_the_effective_bootstrap_server_variables_and_state_directory() -> None:
    env = {"FRAUDRULES_KAFKA__BOOTSTRAP_SERVERS": "broker-7:9093", "FRAUDRULES_STATE_DIR": "/srv/fraud-state"}

    result = CliRunner().invoke(cli, ["run", "--help"], env=env)

    assert result.exit_code == 0
    assert "broker-7:9093" in result.output
    assert "FRAUDRULES_KAFKA__BOOTSTRAP_SERVERS" in result.output
    assert "/srv/fraud-state" in result.output
    assert "FRAUDRULES_STATE_DIR" in result.output


BROKEN_EXPRESSION = "[expressions.oops]\nwhen = 'event.payAmount >'\nscore = 5\n"


@pytest.mark.parametrize(
    ("command", "settings"),
    [
        (["backtest", "{data}"], "[rules.amount_spikee]\nenabled = true\n"),  # a rule no plugin provides
        (["backtest", "{data}", "--compare", "{typo}"], ""),
        (["rules"], "[rules.amount_spikee]\nenabled = true\n"),
        (["rules", "set", "amount_spike.mode=nonsense"], ""),
        (["run"], "[rules.amount_spike]\nthreshold = 'high'\n"),  # a config value of the wrong type
        (["backtest", "{data}"], "unknown_section = 1\n"),
        (["demo"], "join_window_seconds = -1\n"),
        (["generate", "--count", "1", "--output-dir", "{data}"], "max_record_bytes = 'lots'\n"),
        (["run"], BROKEN_EXPRESSION),  # refused before it connects
        (["backtest", "{data}"], BROKEN_EXPRESSION),
        (["backtest", "{data}"], "[lists.b]\nfield = 'merchantId'\naction = 'block'\n"),  # no such action
        (["lists", "add", "b", "1"], "[lists.b]\nfield = 'merchantId'\n"),  # no action
    ],
    ids=[
        "backtest",
        "backtest-compare",
        "rules",
        "rules-set",
        "run",
        "unknown-section",
        "demo",
        "generate",
        "run-expression",
        "backtest-expression",
        "backtest-list",
        "lists-add",
    ],
)
def test_every_command_turns_a_settings_error_into_a_message_and_a_non_zero_exit(
    tmp_path: Path, command: list[str], settings: str
) -> None:
    typo = tmp_path / "typo.toml"
    typo.write_text("[rules.amount_spikee]\nenabled = true\n")
    config = tmp_path / "settings.toml"
    config.write_text(settings + "[kafka.consumer_extra]\n'socket.timeout.ms' = '1000'\n")
    data = tmp_path / "data"
    subprocess.run(
        [sys.executable, "-m", "fraudrules", "generate", "--count", "20", "--output-dir", str(data)], check=True
    )
    args = [a.format(data=data, typo=typo) for a in command]
    env = {**os.environ, "FRAUDRULES_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1"}  # nothing listens there

    result = subprocess.run(
        [sys.executable, "-m", "fraudrules", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )

    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert "error" in (result.stderr + result.stdout).lower()
