"""What every ``fraudrules`` command shares: the settings the group loaded, and failing with one clear line.

Exit status: 0 success, 1 failure (invalid records, unreachable broker, broken plugin), 2 usage error.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from fraudrules.settings import Settings


def fail(message: str, status: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(status)


def settings_from(ctx: click.Context) -> Settings:
    """The settings ``fraudrules --config ...`` loaded for this invocation."""
    settings: Settings = ctx.obj["settings"]
    return settings
