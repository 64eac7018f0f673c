"""Apply a rubric's `reward:` spec on top of per-judge scoring, and combine several rubrics.

`ShapedScorer` scores a batch with every judge the spec names (each through its own scorer,
so each keeps its cache and retries), then per item: ensemble -> gate -> reference metric ->
length penalty -> transform, recording each step in `components`.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

from rubricgate.judges.prompts import response_text
from rubricgate.models.judging import TokenUsage
from rubricgate.models.reward import CriterionScore, Flag, Item, RewardResult
from rubricgate.models.rubric import RewardSpec, Rubric
from rubricgate.scoring.counts import word_count
from rubricgate.scoring.shaping import (
    blend, clip01, combine, ensemble, gate, length_penalty, log_sigmoid, reference_metric, zscore,
)


JudgeBatch = Callable[[str, Sequence[tuple[Rubric, Item]], "int | None"], Awaitable[list[RewardResult]]]
"""Scores a batch with one judge spec: `(judge, [(rubric, item)], votes) -> results in order`."""


class ShapedScorer:
    """Scores with a rubric's reward spec; `judge_batch` scores a batch with one of its judges
    (the gateway's one scoring path, the same that plain rubrics take)."""

    def __init__(self, judge_batch: JudgeBatch, default_judge: str, injection_cap: float | None) -> None:
        self._judge_batch = judge_batch
        self._default_judge = default_judge
        self._injection_cap = injection_cap

    async def score_many(self, rubric: Rubric, items: Sequence[Item], votes: int | None = None) -> list[RewardResult]:
        spec = rubric.reward or RewardSpec()
        judges = spec.judges or [self._default_judge]
        per_judge = await self._by_judge(rubric, items, judges, votes)
        references: list[float | None] | None = None
        if spec.transform == "log_sigmoid" and spec.reference == "reference_response":
            with_ref = [i for i, item in enumerate(items) if item.reference]
            ref_items = [items[i].model_copy(update={"response": items[i].reference}) for i in with_ref]
            ref_scores = await self._by_judge(rubric, ref_items, judges, votes)
            references = [None] * len(items)
            for k, i in enumerate(with_ref):
                references[i] = ensemble([r[k].reward for r in ref_scores], spec.ensemble, spec.lambda_,
                                         spec.drop_unscorable)
        results = [self._shape(rubric, spec, item, judges, [r[i] for r in per_judge],
                               references[i] if references is not None else None)
                   for i, item in enumerate(items)]
        if spec.transform == "zscore":
            standardised = zscore([r.reward for r in results])
            results = [r.model_copy(update={"reward": z, "components": {**r.components, "before_transform": r.reward}})
                       for r, z in zip(results, standardised, strict=True)]
        return results

    async def _by_judge(self, rubric: Rubric, items: Sequence[Item], judges: list[str],
                        votes: int | None) -> list[list[RewardResult]]:
        return list(await asyncio.gather(*(self._judge_batch(j, [(rubric, item) for item in items], votes) for j in judges)))

    def _shape(self, rubric: Rubric, spec: RewardSpec, item: Item, judges: list[str],
               results: list[RewardResult], reference_score: float | None) -> RewardResult:
        merged = merge_judges(results, judges)
        components: dict[str, float | None] = {}
        if len(judges) > 1:
            components.update({f"judge:{j}": r.reward for j, r in zip(judges, results, strict=True)})
        reward = ensemble([r.reward for r in results], spec.ensemble, spec.lambda_, spec.drop_unscorable)
        components["judged"] = reward
        reason = merged.reason
        if reward is None:
            reason = reason or next((r.reason for r in results if r.reason), "a judge could not score this item")
            return merged.model_copy(update={"reward": None, "reason": reason, "components": components})
        if spec.gate == "hard_rules":
            reward = gate(reward, "hard_rule_failed" in merged.flags, spec.gate_cap)
            components["gated"] = reward
        if spec.reference_metric is not None and item.reference:
            metric = reference_metric(spec.reference_metric.kind, response_text(item), item.reference)
            components[f"reference_{spec.reference_metric.kind}"] = metric
            reward = blend(reward, metric, spec.reference_metric.weight)
        if spec.length_penalty is not None:
            penalty = length_penalty(word_count(response_text(item)), spec.length_penalty.target_words,
                                     spec.length_penalty.weight)
            components["length_penalty"] = -penalty
            reward = clip01(reward - penalty)
        cap = self._injection_cap
        if "injection_suspected" in merged.flags and cap is not None and reward > cap:
            components["injection_capped"] = cap  # the reference blend must not lift a flagged item back up
            reward = cap
        final: float | None = reward
        if spec.transform == "log_sigmoid":
            components["before_transform"] = reward
            if spec.reference == "reference_response":
                if reference_score is None:
                    reason = "log_sigmoid needs the score of the item's reference answer, and there is none"
                    final = None
                else:
                    components["reference_score"] = reference_score
                    final = log_sigmoid(reward, reference_score, spec.scale)
            else:
                final = log_sigmoid(reward, spec.reference, spec.scale)
        return merged.model_copy(update={"reward": final, "reason": reason if final is None else None,
                                         "components": components})


def merge_judges(results: list[RewardResult], judges: list[str]) -> RewardResult:
    """One result from several judges' results for the same item (criteria averaged)."""
    if len(results) == 1:
        return results[0]
    criteria = []
    for scores in zip(*(r.criteria for r in results), strict=True):
        values = [s.value for s in scores]
        agreements = [s.agreement for s in scores if s.agreement is not None]
        criteria.append(scores[0].model_copy(update={
            "value": None if any(v is None for v in values) else statistics.fmean(v for v in values if v is not None),
            "agreement": statistics.fmean(agreements) if agreements else None,
            "votes": [label for s in scores for label in s.votes],
            "reason": next((s.reason for s in scores if s.reason), None)}))
    return _merged(results, criteria, judge="+".join(judges), rubric=results[0].rubric)


def combine_rubrics(per_rubric: list[list[RewardResult]], rubrics: list[Rubric], how: Literal["and", "weighted"],
                    weights: Sequence[float] | None = None) -> list[RewardResult]:
    """Several rubrics' results per item -> one result per item (`and` or weighted mean)."""
    out = []
    for results in zip(*per_rubric, strict=True):
        rewards = [r.reward for r in results]
        value = combine(rewards, how, weights)
        criteria = [c.model_copy(update={"id": f"{rubric.id}/{c.id}"})
                    for rubric, r in zip(rubrics, results, strict=True) for c in r.criteria]
        merged = _merged(list(results), criteria, judge=results[0].judge,
                         rubric="+".join(r.rubric for r in results))
        components: dict[str, float | None] = {f"rubric:{rb.id}": rw for rb, rw in zip(rubrics, rewards, strict=True)}
        reason = None if value is not None else next((r.reason for r in results if r.reason), "a rubric was unscorable")
        out.append(merged.model_copy(update={"reward": value, "reason": reason, "components": components}))
    return out


def _merged(results: list[RewardResult], criteria: list[CriterionScore], judge: str, rubric: str) -> RewardResult:
    flags: set[Flag] = {f for r in results for f in r.flags}
    agreements = [r.agreement for r in results if r.agreement is not None]
    return RewardResult(
        id=results[0].id, reward=None, criteria=criteria, flags=sorted(flags), rubric=rubric, judge=judge,
        agreement=statistics.fmean(agreements) if agreements else None,
        cached=all(r.cached for r in results), votes=sum(r.votes for r in results),
        judge_calls=sum(r.judge_calls for r in results), tokens=sum((r.tokens for r in results), TokenUsage()),
        latency_ms=max(r.latency_ms for r in results))
