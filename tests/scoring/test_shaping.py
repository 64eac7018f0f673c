"""Shaping functions: hand-computed values and properties (hypothesis)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rubricgate.scoring.shaping import (
    blend, combine, ensemble, gate, length_penalty, log_sigmoid, reference_metric, zscore,
)

unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
maybe_unit = st.one_of(st.none(), unit)


def test_log_sigmoid_hand_values() -> None:
    assert log_sigmoid(0.5, 0.5) == pytest.approx(-math.log(2))
    assert log_sigmoid(0.6, 0.5, scale=10) == pytest.approx(math.log(1 / (1 + math.exp(-1))))
    assert log_sigmoid(0.0, 1.0, scale=100) == pytest.approx(-100.0, rel=1e-9)  # stable far left
    assert log_sigmoid(1.0, 0.0, scale=100) == pytest.approx(0.0, abs=1e-40)


@given(unit, unit, unit)
def test_log_sigmoid_is_monotone_and_non_positive(a: float, b: float, ref: float) -> None:
    low, high = sorted((a, b))
    assert log_sigmoid(low, ref) <= log_sigmoid(high, ref) <= 0.0


def test_zscore_hand_values_and_nones() -> None:
    assert zscore([1.0, 3.0, None]) == [-1.0, 1.0, None]
    assert zscore([0.4, 0.4]) == [0.0, 0.0]
    assert zscore([None]) == [None]


@pytest.mark.parametrize(
    ("values", "method", "expected"),
    [
        ([0.2, 0.4, 0.9], "mean", 0.5),
        ([0.2, 0.4, 0.9], "median", 0.4),
        ([0.2, 0.4, 0.9], "min", 0.2),
        ([0.2, 0.6], "mean_minus_std", 0.4 - 0.2),
    ],
)
def test_ensembles_hand_values(values: list[float], method: str, expected: float) -> None:
    assert ensemble(values, method) == pytest.approx(expected)  # type: ignore[arg-type]


def test_ensemble_none_propagation_and_drop() -> None:
    assert ensemble([0.8, None]) is None
    assert ensemble([0.8, None], drop_unscorable=True) == 0.8
    assert ensemble([None, None], drop_unscorable=True) is None


@given(st.lists(unit, min_size=1, max_size=6), st.sampled_from(["mean", "median", "min"]))
def test_ensembles_stay_within_the_judges_range(values: list[float], method: str) -> None:
    result = ensemble(values, method)  # type: ignore[arg-type]
    assert result is not None and min(values) - 1e-12 <= result <= max(values) + 1e-12


@given(st.lists(unit, min_size=2, max_size=5), st.integers(min_value=0, max_value=4), unit)
def test_and_combination_is_monotone_in_each_rubric(values: list[float], index: int, bump: float) -> None:
    i = index % len(values)
    raised = list(values)
    raised[i] = max(values[i], bump)
    assert combine(raised, "and") >= combine(values, "and") - 1e-12  # type: ignore[operator]


def test_and_behaves_like_a_conjunction() -> None:
    both = combine([0.9, 0.9], "and")
    one_fails = combine([1.0, 0.1], "and")
    assert both is not None and one_fails is not None
    assert both > one_fails  # a mean would rank these equal-ish (0.9 vs 0.55); AND punishes the failure hard
    assert combine([0.9, None], "and") is None
    assert combine([0.2, 0.6], "weighted", [3, 1]) == pytest.approx(0.3)


@given(maybe_unit)
def test_none_never_becomes_a_number(value: float | None) -> None:
    if value is None:
        assert ensemble([value]) is None and combine([value], "weighted") is None


def test_gate_length_penalty_blend_hand_values() -> None:
    assert gate(0.9, True, 0.2) == 0.2 and gate(0.9, False, 0.2) == 0.9 and gate(0.1, True, 0.2) == 0.1
    assert length_penalty(100, 100, 0.1) == 0.0
    assert length_penalty(150, 100, 0.1) == pytest.approx(0.05)
    assert length_penalty(1000, 100, 0.1) == pytest.approx(0.1)
    assert blend(0.5, 1.0, 0.2) == pytest.approx(0.6)


@given(st.integers(min_value=0, max_value=5000), st.integers(min_value=1, max_value=1000), unit)
def test_length_penalty_is_bounded_and_monotone(words: int, target: int, weight: float) -> None:
    assert 0.0 <= length_penalty(words, target, weight) <= weight
    assert length_penalty(words, target, weight) <= length_penalty(words + 10, target, weight)


def test_reference_metrics_are_in_unit_range_and_rank_sensibly() -> None:
    ref = "The capital of France is Paris."
    assert reference_metric("chrf", ref, ref) == pytest.approx(1.0)
    assert reference_metric("bleu", ref, ref) == pytest.approx(1.0)
    close = reference_metric("chrf", "Paris is the capital of France.", ref)
    far = reference_metric("chrf", "I like turtles.", ref)
    assert 0.0 <= far < close < 1.0
