"""Self-consistency: many votes on one criterion -> one value in [0, 1] and an agreement."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from rubricgate.models.judging import FieldVerdict, FormField


@dataclass(frozen=True)
class FieldAggregate:
    """One criterion's votes folded into a value, an agreement and the labels cast."""

    value: float
    agreement: float
    labels: list[str]
    rationale: str | None


def aggregate_field(field: FormField, verdicts: list[FieldVerdict], use_probs: bool) -> FieldAggregate:
    """Fold the usable votes on one field (labels ascend in quality: index / (n - 1) in [0, 1]).

    Pass/fail takes the majority (0.5 on an exact tie); scales take the mean. With label
    probabilities, the value is the mean expected score instead, which varies smoothly.
    """
    top = len(field.labels) - 1
    labels = [v.label for v in verdicts]
    counts = Counter(labels)
    winner, winner_count = max(counts.items(), key=lambda kv: (kv[1], field.labels.index(kv[0])))
    agreement = winner_count / len(labels)
    probs = [v.probs for v in verdicts if v.probs]
    if use_probs and len(probs) == len(verdicts):
        value = sum(_expected_index(p, field.labels) for p in probs) / (len(probs) * top)
    elif top == 1:
        passes = counts.get(field.labels[1], 0)
        value = 1.0 if passes * 2 > len(labels) else 0.0 if passes * 2 < len(labels) else 0.5
    else:
        value = sum(field.labels.index(label) for label in labels) / (len(labels) * top)
    rationale = next((v.rationale for v in verdicts if v.label == winner and v.rationale), None)
    return FieldAggregate(value=value, agreement=agreement, labels=labels, rationale=rationale)


def weighted_mean(pairs: list[tuple[float, float]]) -> float | None:
    """Mean of (value, weight) pairs; None for an empty list."""
    total = sum(weight for _, weight in pairs)
    return sum(value * weight for value, weight in pairs) / total if total else None


def _expected_index(probs: dict[str, float], labels: tuple[str, ...]) -> float:
    total = sum(probs.get(label, 0.0) for label in labels) or 1.0
    return sum(i * probs.get(label, 0.0) for i, label in enumerate(labels)) / total
