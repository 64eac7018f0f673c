"""Judge-accuracy metrics on preference pairs: pure functions, no I/O, no judge.

A *preference* is the judge's preference for the chosen response in [0, 1] (None: unscorable).
Its *credit* is 1 above 0.5 (chosen ranked higher), 0.5 at exactly 0.5 (a tie) and 0 below, so
accuracy counts a tie as a coin flip, as RewardBench-style evaluations do.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from rubricgate.models.preference import AccuracyStats

_EPS = 1e-9


@dataclass(frozen=True)
class PairScore:
    """What one protocol made of one pair.

    `preference` is the pair's final preference for chosen. Pairwise protocols also set
    `orders`: the preference for chosen when chosen was shown first, and when it was shown
    second; `chosen_first` says which of the two was the randomised presentation order.
    """

    category: str | None
    preference: float | None
    orders: tuple[float | None, float | None] | None = None
    chosen_first: bool = True


@dataclass(frozen=True)
class PairMetrics:
    """Accuracy, ties and position effects of one protocol over a set of pairs."""

    overall: AccuracyStats
    by_category: dict[str, AccuracyStats]
    accuracy_one_order: float | None
    position_bias_rate: float | None
    first_position_rate: float | None


def credit(preference: float) -> float:
    """1 if chosen wins, 0.5 for a tie, 0 if rejected wins."""
    if abs(preference - 0.5) <= _EPS:
        return 0.5
    return 1.0 if preference > 0.5 else 0.0


def pointwise_preference(reward_chosen: float | None, reward_rejected: float | None) -> float | None:
    """Two independent rewards -> 1 (chosen higher), 0.5 (equal) or 0; None if either is missing."""
    if reward_chosen is None or reward_rejected is None:
        return None
    if abs(reward_chosen - reward_rejected) <= _EPS:
        return 0.5
    return 1.0 if reward_chosen > reward_rejected else 0.0


def order_preference(prefers_b: float | None, chosen_is_a: bool) -> float | None:
    """A pairwise judgment's preference for Output (b) -> the preference for chosen."""
    if prefers_b is None:
        return None
    return 1.0 - prefers_b if chosen_is_a else prefers_b


def swap_averaged(chosen_first: float | None, chosen_second: float | None) -> float | None:
    """The pair's preference from both presentation orders (their mean); None if either is missing.

    Averaging cancels a pure position preference: a judge that always picks Output (a) lands
    exactly on 0.5, a tie, instead of scoring the pairs that happened to put chosen first.
    """
    if chosen_first is None or chosen_second is None:
        return None
    return (chosen_first + chosen_second) / 2


def accuracy(preferences: Sequence[float | None]) -> float | None:
    """Mean credit over the scorable preferences; None when none is scorable."""
    credits = [credit(p) for p in preferences if p is not None]
    return sum(credits) / len(credits) if credits else None


def tie_rate(preferences: Sequence[float | None]) -> float | None:
    """Share of scorable preferences that are exact ties."""
    credits = [credit(p) for p in preferences if p is not None]
    return sum(1 for c in credits if c == 0.5) / len(credits) if credits else None


def bootstrap_ci(values: Sequence[float], confidence: float = 0.95, resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of `values` (None for no values).

    The same values, confidence, resamples and seed always give the same interval.
    """
    if not values:
        return None
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    n = len(values)
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    tail = (1 - confidence) / 2
    low = means[max(0, math.floor(tail * resamples))]
    high = means[min(resamples - 1, math.ceil((1 - tail) * resamples) - 1)]
    return low, high


def position_bias_rate(orders: Sequence[tuple[float | None, float | None]]) -> float | None:
    """Share of pairs whose decision (chosen wins / tie / rejected wins) changes when the two
    responses swap places, over pairs scorable in both orders."""
    both = [(first, second) for first, second in orders if first is not None and second is not None]
    if not both:
        return None
    return sum(1 for first, second in both if credit(first) != credit(second)) / len(both)


def first_position_rate(orders: Sequence[tuple[float | None, float | None]]) -> float | None:
    """Share of decided (non-tie) order-judgments won by the response shown first.

    An unbiased judge sits near 0.5 whatever its accuracy, because chosen is shown first in
    exactly one of the two orders.
    """
    first_wins = decided = 0
    for chosen_first, chosen_second in orders:
        if chosen_first is not None and credit(chosen_first) != 0.5:
            decided += 1
            first_wins += credit(chosen_first) == 1.0  # chosen was first and won
        if chosen_second is not None and credit(chosen_second) != 0.5:
            decided += 1
            first_wins += credit(chosen_second) == 0.0  # rejected was first and won
    return first_wins / decided if decided else None


def accuracy_stats(preferences: Sequence[float | None], confidence: float = 0.95, resamples: int = 2000,
                   seed: int = 0) -> AccuracyStats:
    """Accuracy, bootstrap interval and tie rate of one set of preferences."""
    credits = [credit(p) for p in preferences if p is not None]
    return AccuracyStats(
        pairs=len(preferences), scored=len(credits),
        accuracy=sum(credits) / len(credits) if credits else None,
        ci=bootstrap_ci(credits, confidence, resamples, seed),
        tie_rate=sum(1 for c in credits if c == 0.5) / len(credits) if credits else None,
    )


def pair_metrics(scores: Sequence[PairScore], confidence: float = 0.95, resamples: int = 2000,
                 seed: int = 0) -> PairMetrics:
    """Everything the eval report says about accuracy and position effects for one protocol."""
    categories: dict[str, list[float | None]] = {}
    for score in scores:
        if score.category is not None:
            categories.setdefault(score.category, []).append(score.preference)
    orders = [s.orders for s in scores if s.orders is not None]
    one_order = [(s.orders[0] if s.chosen_first else s.orders[1]) for s in scores if s.orders is not None]
    return PairMetrics(
        overall=accuracy_stats([s.preference for s in scores], confidence, resamples, seed),
        by_category={name: accuracy_stats(prefs, confidence, resamples, seed)
                     for name, prefs in sorted(categories.items())},
        accuracy_one_order=accuracy(one_order) if orders else None,
        position_bias_rate=position_bias_rate(orders),
        first_position_rate=first_position_rate(orders),
    )


def mean_agreement(agreements: Sequence[float | None]) -> float | None:
    """Mean of the known agreements (None when there is none)."""
    known = [a for a in agreements if a is not None]
    return sum(known) / len(known) if known else None
