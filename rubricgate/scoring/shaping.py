"""Reward shaping as pure functions: transforms, judge ensembles, rubric combination, gates,
length penalties and reference metrics. None means unscorable and propagates unless told not to.

Anchors: log σ(r − r_ref) relative to a reference, whose sums act as a logical AND (Wang et al.
2024, "Transforming and Combining Rewards"); ensembles by mean, median, min and mean − λ·std
(Coste et al.); hard rules gating the verdict (OpenRubrics); BLEU/chrF against a reference
(BLEUBERI).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Literal

Ensemble = Literal["mean", "median", "min", "mean_minus_std"]


def log_sigmoid(reward: float, reference: float, scale: float = 10.0) -> float:
    """log σ(scale·(reward − reference)): ≤ 0, increasing in reward, −log 2 at the reference."""
    x = scale * (reward - reference)
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def zscore(rewards: Sequence[float | None]) -> list[float | None]:
    """Standardise a batch (Nones stay None and do not count); a constant batch maps to 0."""
    present = [r for r in rewards if r is not None]
    if not present:
        return list(rewards)
    mean = statistics.fmean(present)
    std = statistics.pstdev(present)
    return [None if r is None else (0.0 if std == 0 else (r - mean) / std) for r in rewards]


def ensemble(values: Sequence[float | None], method: Ensemble = "mean", lambda_: float = 1.0,
             drop_unscorable: bool = False) -> float | None:
    """Combine several judges' rewards for one item; any None makes it None unless dropped."""
    if not values or (any(v is None for v in values) and not drop_unscorable):
        return None
    present = [v for v in values if v is not None]
    if not present:
        return None
    if method == "mean":
        return statistics.fmean(present)
    if method == "median":
        return float(statistics.median(present))
    if method == "min":
        return min(present)
    return statistics.fmean(present) - lambda_ * statistics.pstdev(present)


def combine(values: Sequence[float | None], how: Literal["and", "weighted"], weights: Sequence[float] | None = None,
            reference: float = 0.5, scale: float = 10.0) -> float | None:
    """Several rubrics' rewards for one item. `and`: Σ log σ(scale·(r − reference)), high only
    when every rubric is satisfied; `weighted`: the weighted mean. Any None gives None."""
    if not values or any(v is None for v in values):
        return None
    present = [v for v in values if v is not None]
    if how == "and":
        return sum(log_sigmoid(v, reference, scale) for v in present)
    w = list(weights) if weights is not None else [1.0] * len(present)
    if len(w) != len(present) or sum(w) <= 0:
        raise ValueError("combine: one positive weight per rubric is required")
    return sum(v * wi for v, wi in zip(present, w, strict=True)) / sum(w)


def gate(reward: float, hard_rule_failed: bool, cap: float) -> float:
    """A failed hard rule caps the reward (the rule is a gatekeeper, not one vote among many)."""
    return min(reward, cap) if hard_rule_failed else reward


def length_penalty(words: int, target_words: int, weight: float) -> float:
    """The amount to subtract: 0 up to the target, rising linearly to `weight` at twice the target."""
    over = max(0, words - target_words) / target_words
    return weight * min(1.0, over)


def blend(reward: float, metric: float, weight: float) -> float:
    """(1 − weight)·reward + weight·metric."""
    return (1.0 - weight) * reward + weight * metric


def reference_metric(kind: Literal["chrf", "bleu"], hypothesis: str, reference: str) -> float:
    """Sentence-level chrF or BLEU of the response against the reference, in [0, 1]."""
    import sacrebleu

    if kind == "chrf":
        return float(sacrebleu.sentence_chrf(hypothesis, [reference]).score) / 100.0
    return float(sacrebleu.sentence_bleu(hypothesis, [reference]).score) / 100.0


def clip01(value: float) -> float:
    return min(1.0, max(0.0, value))
