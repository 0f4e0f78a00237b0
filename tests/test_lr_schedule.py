"""The learning-rate schedule both training jobs use (``training.lr_schedule.lr_factor``): plain
numbers, so the jobs' own tests only need to check that the factor reaches the optimizer."""

from __future__ import annotations

import pytest

from training.lr_schedule import lr_factor


def test_constant_is_one_throughout() -> None:
    assert [lr_factor(step, 4) for step in range(4)] == [1.0] * 4
    assert [lr_factor(step, 0, "cosine") for step in range(2)] == [1.0, 1.0]  # no steps to decay over


def test_cosine_decays_from_one_towards_zero() -> None:
    assert [round(lr_factor(step, 4, "cosine"), 4) for step in range(5)] == [1.0, 0.8536, 0.5, 0.1464, 0.0]


def test_warmup_rises_linearly_then_hands_over() -> None:
    assert [lr_factor(step, 10, "constant", 4) for step in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    # the cosine starts after the warm-up and spans the steps left: 2 warm-up steps, then 4 to decay
    factors = [round(lr_factor(step, 6, "cosine", 2), 4) for step in range(6)]
    assert factors == [0.5, 1.0, 1.0, 0.8536, 0.5, 0.1464]
    # a warm-up as long as the run: nothing left to decay over
    assert [lr_factor(step, 2, "cosine", 2) for step in range(3)] == [0.5, 1.0, 1.0]


def test_an_unknown_schedule_is_refused_even_during_the_warmup() -> None:
    with pytest.raises(ValueError, match="unknown lr_schedule 'linear'; choose constant or cosine"):
        lr_factor(0, 4, "linear", 2)
