"""The consistency filter: keep a candidate rubric only if, used by the judge, it reproduces the
preference labels it was written from (OpenRubrics' rejection sampling).

Pairwise mode (default) shows the judge both responses side by side, in BOTH presentation orders
(better one as Output (a), then as Output (b)); an induced pair counts as reproduced only if both
orders prefer the better response, so a rubric whose verdict follows the position, not the
content, is rejected. Pointwise mode scores each response alone with the rubric (no order
exists) and compares rewards. A prompt's filter accuracy is the share of its induced pairs
reproduced; the rubric is kept when accuracy >= `threshold` (a single pair must be reproduced).

Judge calls go through whatever backend the scorers were built on; the gateway passes its cached
stack, so re-running a filter (or the same rubric on the same pair) costs no judge call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from rubricgate.authoring.source import RankedPrompt
from rubricgate.models.preference import Matchup
from rubricgate.models.reward import Item
from rubricgate.models.rubric import Rubric
from rubricgate.scoring.pairwise import PairwiseScorer
from rubricgate.scoring.scorer import RubricScorer

FilterMode = Literal["pairwise", "pointwise"]
PairVerdict = Literal["consistent", "flips", "reversed", "tie", "unscorable"]
_EPS = 1e-9


class PairCheck(BaseModel):
    """How the judge, with the candidate rubric, saw one induced pair."""

    model_config = ConfigDict(frozen=True)

    better: int
    worse: int
    """Indices into the prompt's responses."""
    better_first: float | None
    """Preference for the better response (0..1) when it was shown first (pointwise: its reward margin sign)."""
    better_second: float | None
    """Preference for the better response when it was shown second (pointwise: same as `better_first`)."""
    verdict: PairVerdict
    reason: str | None = None
    """Why the judge could not score the pair, when it could not."""

    @property
    def reproduced(self) -> bool:
        return self.verdict == "consistent"


class FilterResult(BaseModel):
    """The filter's decision on one candidate rubric for one prompt."""

    model_config = ConfigDict(frozen=True)

    kept: bool
    accuracy: float | None
    """Share of induced pairs reproduced in both orders (None: nothing scorable)."""
    pairs: list[PairCheck]
    reason: str
    """One line: why it was kept or rejected."""


class ConsistencyFilter:
    """Judges a prompt's induced pairs with a candidate rubric; see the module docstring."""

    def __init__(self, scorer: PairwiseScorer | RubricScorer, *, threshold: float = 0.75) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self._scorer = scorer
        self.threshold = threshold

    @property
    def mode(self) -> FilterMode:
        return "pairwise" if isinstance(self._scorer, PairwiseScorer) else "pointwise"

    async def check(self, rubric: Rubric, item: RankedPrompt) -> FilterResult:
        """Judge every induced pair of `item` with `rubric` and decide."""
        pairs = item.induced_pairs
        if isinstance(self._scorer, PairwiseScorer):
            checks = [await self._pairwise(self._scorer, rubric, item, better, worse) for better, worse in pairs]
        else:
            checks = await self._pointwise(self._scorer, rubric, item, pairs)
        scorable = [c for c in checks if c.verdict != "unscorable"]
        accuracy = sum(c.reproduced for c in scorable) / len(scorable) if scorable else None
        kept = accuracy is not None and accuracy + _EPS >= self.threshold and len(scorable) == len(checks)
        return FilterResult(kept=kept, accuracy=accuracy, pairs=checks,
                            reason=_reason(checks, accuracy, kept, self.threshold, self.mode))

    async def _pairwise(self, scorer: PairwiseScorer, rubric: Rubric, item: RankedPrompt, better: int,
                        worse: int) -> PairCheck:
        first = Matchup(id=f"{item.id}/{better}>{worse}/first", prompt=item.prompt,
                        response_a=item.responses[better], response_b=item.responses[worse])
        second = Matchup(id=f"{item.id}/{better}>{worse}/second", prompt=item.prompt,
                         response_a=item.responses[worse], response_b=item.responses[better])
        as_a = await scorer.compare(rubric, first)
        as_b = await scorer.compare(rubric, second)
        # `reward` is the preference for Output (b): the better response is (b) only in the second order.
        pref_first = None if as_a.reward is None else 1.0 - as_a.reward
        pref_second = as_b.reward
        reason = as_a.reason or as_b.reason
        return PairCheck(better=better, worse=worse, better_first=pref_first, better_second=pref_second,
                         verdict=_verdict(pref_first, pref_second), reason=reason)

    async def _pointwise(self, scorer: RubricScorer, rubric: Rubric, item: RankedPrompt,
                         pairs: Sequence[tuple[int, int]]) -> list[PairCheck]:
        items = [Item(id=f"{item.id}/{i}", prompt=item.prompt, response=r) for i, r in enumerate(item.responses)]
        results = await scorer.score_many([(rubric, one) for one in items])
        checks = []
        for better, worse in pairs:
            high, low = results[better], results[worse]
            if high.reward is None or low.reward is None:
                checks.append(PairCheck(better=better, worse=worse, better_first=None, better_second=None,
                                        verdict="unscorable", reason=high.reason or low.reason))
                continue
            margin = high.reward - low.reward
            preference = 0.5 if abs(margin) <= _EPS else (1.0 if margin > 0 else 0.0)
            checks.append(PairCheck(better=better, worse=worse, better_first=preference, better_second=preference,
                                    verdict=_verdict(preference, preference)))
        return checks


def _verdict(first: float | None, second: float | None) -> PairVerdict:
    if first is None or second is None:
        return "unscorable"
    wins = [p > 0.5 + _EPS for p in (first, second)]
    losses = [p < 0.5 - _EPS for p in (first, second)]
    if all(wins):
        return "consistent"
    if all(losses):
        return "reversed"
    if any(wins) and any(losses):
        return "flips"
    return "tie"


def _reason(checks: list[PairCheck], accuracy: float | None, kept: bool, threshold: float, mode: FilterMode) -> str:
    counts = {v: sum(1 for c in checks if c.verdict == v) for v in ("consistent", "flips", "reversed", "tie",
                                                                     "unscorable")}
    if counts["unscorable"]:
        first = next(c.reason for c in checks if c.verdict == "unscorable")
        return f"unscorable: {first or 'the judge gave no usable verdict'}"
    if len(checks) == 1:
        return {
            "consistent": ("prefers the better response in both orders" if mode == "pairwise"
                           else "rewards the better response higher"),
            "flips": "flips with presentation order (follows the position, not the content)",
            "reversed": "prefers the worse response",
            "tie": "no preference in at least one order (tie)",
        }[checks[0].verdict]
    summary = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    verb = "kept" if kept else "below threshold"
    return f"{verb}: {accuracy or 0:.2f} of {len(checks)} induced pairs reproduced (threshold {threshold:g}; {summary})"
