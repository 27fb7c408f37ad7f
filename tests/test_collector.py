"""The cyclic collector's setting while records flow (``collector.py``)."""

from __future__ import annotations

import gc

import pytest

from fraudrules import collector


def test_processing_freezes_start_up_and_sets_the_thresholds_then_restores_both() -> None:
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    made_before = {"start-up": [1, 2, 3]}
    with collector.processing((12_345, 50, 10)):
        assert gc.get_threshold() == (12_345, 50, 10)
        assert gc.get_freeze_count() > frozen
        # what start-up made is out of the collector's reach; what comes now is not
        assert not any(obj is made_before for obj in gc.get_objects())
        made_within = {"record": [4, 5]}
        assert any(obj is made_within for obj in gc.get_objects())
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() <= frozen  # unfrozen (Python 3.12's own frozen objects too)
    assert any(obj is made_before for obj in gc.get_objects())


def test_the_backtests_thresholds_run_the_middle_generation_five_times_less_often() -> None:
    young, middle, old = gc.get_threshold()
    assert collector.rarer_middle_generation() == (young, middle * 5, old)


def test_a_block_within_another_leaves_the_outer_ones_freeze_and_thresholds() -> None:
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    with collector.processing():
        outer = gc.get_freeze_count()
        with collector.processing(collector.rarer_middle_generation()):
            assert gc.get_threshold()[1] == before[1] * 5
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == outer
    assert gc.get_freeze_count() <= frozen  # unfrozen (Python 3.12's own frozen objects too)


def test_processing_restores_after_an_error() -> None:
    before, frozen = gc.get_threshold(), gc.get_freeze_count()

    def stopped() -> None:
        with collector.processing(collector.rarer_middle_generation()):
            raise RuntimeError("the pipeline stopped")

    with pytest.raises(RuntimeError):
        stopped()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() <= frozen  # unfrozen (Python 3.12's own frozen objects too)
