"""The cyclic collector's setting while records flow (``collector.py``)."""

from __future__ import annotations

import gc

import pytest

from fraudrules import collector


def test_processing_freezes_start_up_and_sets_the_thresholds_then_restores_both() -> None:
    before = gc.get_threshold()
    made_before = {"start-up": [1, 2, 3]}
    with collector.processing((12_345, 50, 10)):
        assert gc.get_threshold() == (12_345, 50, 10)
        assert gc.get_freeze_count() > 0
        # what start-up made is out of the collector's reach; what comes now is not
        assert not any(obj is made_before for obj in gc.get_objects())
        made_within = {"record": [4, 5]}
        assert any(obj is made_within for obj in gc.get_objects())
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    assert any(obj is made_before for obj in gc.get_objects())


def test_processing_restores_after_an_error() -> None:
    before = gc.get_threshold()

    def stopped() -> None:
        with collector.processing(collector.BACKTEST_THRESHOLDS):
            raise RuntimeError("the pipeline stopped")

    with pytest.raises(RuntimeError):
        stopped()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
