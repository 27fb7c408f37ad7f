"""The hooks a fraudrules plugin can implement. Markers and the entry-point group are named ``fraudrules``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pluggy

from fraudrules.rules.model import Rule

PROJECT = "fraudrules"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def fraudrules_rules() -> Iterable[Rule[Any]]:  # type: ignore[empty-body]
    """Return the rules this plugin provides. Called once at start-up, never per event."""
