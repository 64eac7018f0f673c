"""Judge-accuracy metrics on hand-checked small cases, and bootstrap reproducibility."""

from __future__ import annotations

import pytest

from rubricgate.scoring.metrics import (
    PairScore, accuracy, accuracy_stats, bootstrap_ci, credit, first_position_rate, mean_agreement,
    order_preference, pair_metrics, pointwise_preference, position_bias_rate, swap_averaged, tie_rate,
)


@pytest.mark.parametrize(("preference", "expected"), [(1.0, 1.0), (0.51, 1.0), (0.5, 0.5), (0.49, 0.0), (0.0, 0.0)])
def test_credit_counts_a_tie_as_half(preference: float, expected: float) -> None:
    assert credit(preference) == expected


@pytest.mark.parametrize(("chosen", "rejected", "expected"), [
    (0.8, 0.2, 1.0), (0.2, 0.8, 0.0), (0.6, 0.6, 0.5), (0.1 + 0.2, 0.3, 0.5), (None, 0.3, None), (0.3, None, None),
])
def test_pointwise_preference(chosen: float | None, rejected: float | None, expected: float | None) -> None:
    assert pointwise_preference(chosen, rejected) == expected


def test_order_preference_and_swap_average() -> None:
    # The judge prefers Output (b) with 0.2: chosen shown as (a) gets 0.8, chosen shown as (b) gets 0.2.
    assert order_preference(0.2, chosen_is_a=True) == pytest.approx(0.8)
    assert order_preference(0.2, chosen_is_a=False) == pytest.approx(0.2)
    assert order_preference(None, chosen_is_a=True) is None
    # A judge that always picks (b) prefers chosen in one order and rejected in the other: a tie.
    assert swap_averaged(0.0, 1.0) == 0.5
    assert swap_averaged(1.0, 0.75) == pytest.approx(0.875)
    assert swap_averaged(1.0, None) is None


def test_accuracy_and_tie_rate_over_scorable_pairs() -> None:
    preferences = [1.0, 0.5, 0.0, None, 0.7]  # credits 1, 0.5, 0, -, 1
    assert accuracy(preferences) == pytest.approx(2.5 / 4)
    assert tie_rate(preferences) == pytest.approx(1 / 4)
    assert accuracy([None, None]) is None and tie_rate([]) is None


def test_bootstrap_interval_hand_checked_cases() -> None:
    assert bootstrap_ci([]) is None
    assert bootstrap_ci([1.0, 1.0, 1.0]) == (1.0, 1.0)
    assert bootstrap_ci([0.5]) == (0.5, 0.5)
    # Two values: a resample's mean is 0 (p=1/4), 0.5 (p=1/2) or 1 (p=1/4); both tails hold far
    # more than 2.5% of 2000 resamples, so the 95% interval is exactly [0, 1].
    assert bootstrap_ci([0.0, 1.0]) == (0.0, 1.0)
    # Three values: every bound is a possible resample mean.
    low, high = bootstrap_ci([1.0, 1.0, 0.0], resamples=500)
    assert {low, high} <= {0.0, 1 / 3, 2 / 3, 1.0} and low <= 2 / 3 <= high


def test_bootstrap_is_reproducible_and_seeded() -> None:
    values = [1.0] * 13 + [0.0] * 6 + [0.5]
    first = bootstrap_ci(values, seed=7)
    assert first == bootstrap_ci(values, seed=7)
    assert first is not None and first[0] < sum(values) / len(values) < first[1]
    seeds = {bootstrap_ci(values, seed=s) for s in range(5)}
    assert len(seeds) > 1  # the seed matters
    narrow = bootstrap_ci(values, confidence=0.5, seed=7)
    assert narrow is not None and first[0] <= narrow[0] <= narrow[1] <= first[1]
    with pytest.raises(ValueError):
        bootstrap_ci(values, confidence=1.0)


def test_position_bias_counts_decisions_that_change_when_the_order_swaps() -> None:
    orders = [(1.0, 1.0), (1.0, 0.0), (0.5, 1.0), (None, 1.0), (0.0, 0.0)]
    # Scorable in both orders: 4 pairs; changed decisions: (1, 0) and (0.5, 1).
    assert position_bias_rate(orders) == pytest.approx(2 / 4)
    assert position_bias_rate([(None, 1.0)]) is None


def test_first_position_rate() -> None:
    # (chosen first, chosen second): chosen wins as (a), then rejected wins as (a): the first always wins.
    assert first_position_rate([(1.0, 0.0)]) == 1.0
    # Chosen wins in both orders: first once, second once.
    assert first_position_rate([(1.0, 1.0)]) == 0.5
    # The second always wins.
    assert first_position_rate([(0.0, 1.0), (0.0, 1.0)]) == 0.0
    # Ties and missing orders are not decisions.
    assert first_position_rate([(0.5, None)]) is None
    assert first_position_rate([(0.5, 0.0), (None, 1.0)]) == 0.5


def test_pair_metrics_per_category_and_one_order() -> None:
    scores = [
        PairScore("easy", 1.0, orders=(1.0, 1.0), chosen_first=True),
        PairScore("easy", 0.5, orders=(1.0, 0.0), chosen_first=False),  # always (a): one order says rejected
        PairScore("hard", 0.0, orders=(0.0, 0.0), chosen_first=True),
        PairScore("hard", None, orders=(None, 1.0), chosen_first=False),
    ]
    metrics = pair_metrics(scores, resamples=200)
    assert metrics.overall.pairs == 4 and metrics.overall.scored == 3
    assert metrics.overall.accuracy == pytest.approx(1.5 / 3)
    assert metrics.overall.tie_rate == pytest.approx(1 / 3)
    assert metrics.by_category["easy"].accuracy == pytest.approx(0.75)
    assert metrics.by_category["hard"].accuracy == 0.0 and metrics.by_category["hard"].scored == 1
    # One order each: 1.0 (chosen first), 0.0 (chosen second), 0.0, 1.0 -> 2 of 4.
    assert metrics.accuracy_one_order == pytest.approx(0.5)
    assert metrics.position_bias_rate == pytest.approx(1 / 3)
    pointwise = pair_metrics([PairScore(None, 1.0), PairScore(None, 0.0)], resamples=200)
    assert pointwise.by_category == {} and pointwise.position_bias_rate is None
    assert pointwise.accuracy_one_order is None and pointwise.first_position_rate is None


def test_accuracy_stats_of_nothing_scored() -> None:
    stats = accuracy_stats([None, None])
    assert (stats.pairs, stats.scored, stats.accuracy, stats.ci, stats.tie_rate) == (2, 0, None, None, None)


def test_mean_agreement_skips_unknown() -> None:
    assert mean_agreement([1.0, None, 0.5]) == 0.75
    assert mean_agreement([None]) is None
