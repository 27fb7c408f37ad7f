"""The run loop's watch (``nodes/timers.py``): a pause longer than ``PAUSE_S`` is logged."""

from __future__ import annotations

from structlog.testing import capture_logs

from fraudrules.pipeline.nodes.timers import PAUSE_S, Pauses


def test_a_run_loop_that_comes_back_late_is_logged_with_how_long_it_was_away() -> None:
    pauses = Pauses()
    with capture_logs() as logs:
        for now in (10.0, 10.2, 10.2 + PAUSE_S - 0.01, 10.6 + PAUSE_S, 10.61 + PAUSE_S):
            pauses.loop(now)
    assert [(log["event"], log["ms"]) for log in logs] == [("run loop paused", 410)]


def test_a_recovery_between_two_loops_is_not_a_pause() -> None:
    pauses = Pauses()
    with capture_logs() as logs:
        pauses.loop(10.0)
        pauses.forget()
        pauses.loop(15.0)
        pauses.loop(15.01)
    assert logs == []
