"""Pairwise judging: which of two responses better meets each criterion, folded over votes.

The result reuses `RewardResult`, read as a preference: `reward` is the preference for Output (b)
in [0, 1] (0: (a) is better, 1: (b) is better, 0.5: no preference), and each criterion's `value`
likewise. Deterministic checks are compared directly (0.5 when both outputs pass or both fail).
As in pointwise scoring, failures are caught per vote and per matchup, never turned into a 0.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from rubricgate.judges.base import JudgeBackend
from rubricgate.judges.pairwise import PAIRWISE_TEMPLATE, pairwise_form, render_pair_messages
from rubricgate.judges.prompts import PromptTemplate, load_template
from rubricgate.models.config import ScoringConfig
from rubricgate.models.judging import JudgeRequest, SamplingParams, TokenUsage
from rubricgate.models.preference import Matchup
from rubricgate.models.reward import CriterionScore, RewardResult
from rubricgate.models.rubric import Rubric
from rubricgate.scoring.aggregate import weighted_mean
from rubricgate.scoring.checks import run_check
from rubricgate.scoring.votes import collect_votes, fold_votes


class PairwiseScorer:
    """Turns (rubric, matchup) into a preference for Output (b) through one judge backend."""

    def __init__(self, backend: JudgeBackend, config: ScoringConfig | None = None,
                 sampling: SamplingParams | None = None, template: PromptTemplate | None = None,
                 fence_key: bytes | None = None) -> None:
        self._backend = backend
        self._config = config or ScoringConfig()
        self._sampling = sampling or SamplingParams()
        self._template = template or load_template(PAIRWISE_TEMPLATE)
        self._fence_key = fence_key
        """HMAC key of the output fence tags; None: this process's random key (see judges/fence.py)."""

    @property
    def template(self) -> PromptTemplate:
        return self._template

    def requests_for(self, rubric: Rubric, matchup: Matchup, votes: int | None = None) -> list[JudgeRequest]:
        """The judge requests (one per vote) this matchup needs; empty if checks decide everything."""
        form = pairwise_form(rubric, rationale=self._backend.prefers_rationale)
        if not form.fields:
            return []
        messages = render_pair_messages(self._template, rubric, matchup, form, self._fence_key)
        return [
            JudgeRequest(messages=messages, form=form, sampling=self._sampling, sample_index=k,
                         template_version=self._template.version, rubric_ref=rubric.ref)
            for k in range(votes or self._config.votes)
        ]

    async def compare(self, rubric: Rubric, matchup: Matchup,
                      requests: list[JudgeRequest] | None = None) -> RewardResult:
        """Judge one matchup; `reward` is the preference for Output (b), None with a reason on failure."""
        started = time.perf_counter()
        scores: dict[str, CriterionScore] = {}
        for criterion in rubric.criteria:
            if criterion.check is not None:
                passed_a, detail_a = run_check(criterion.check, matchup.response_a)
                passed_b, detail_b = run_check(criterion.check, matchup.response_b)
                label = "b" if passed_b and not passed_a else "a" if passed_a and not passed_b else "tie"
                scores[criterion.id] = CriterionScore(
                    id=criterion.id, kind=criterion.kind, weight=criterion.weight,
                    value=0.5 + 0.5 * (float(passed_b) - float(passed_a)), source="check", agreement=1.0,
                    votes=[label], reason=f"a: {detail_a}; b: {detail_b}")

        requests = self.requests_for(rubric, matchup) if requests is None else requests
        votes = await collect_votes(self._backend, requests, self._config.deadline_s, "deadline")
        folded = fold_votes(rubric, requests, votes, self._config.min_vote_share, self._config.use_label_probs,
                            undecided="no vote decided this criterion")
        scores.update(folded.scores)
        flags, reason = folded.flags, folded.reason

        ordered = [scores[c.id] for c in rubric.criteria]
        preference = None if reason else weighted_mean([(s.value, s.weight) for s in ordered if s.value is not None])
        if preference is None and reason is None:
            reason = "no criterion could be decided"
        judged = [(s.agreement, s.weight) for s in ordered if s.source == "judge" and s.agreement is not None]
        replies = [v.reply for v in votes if v.reply is not None]
        return RewardResult(
            id=matchup.id, reward=preference, reason=reason, criteria=ordered, agreement=weighted_mean(judged),
            flags=sorted(flags),
            cached=bool(requests) and len(replies) == len(requests) and all(r.cached for r in replies),
            rubric=rubric.ref, judge=self._backend.name, votes=len(requests),
            judge_calls=sum(1 for v in votes if not (v.reply and v.reply.cached)),
            tokens=sum((r.usage for r in replies), TokenUsage()),
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    async def compare_many(self, rubric: Rubric, matchups: Sequence[Matchup],
                           on_result: Callable[[int, RewardResult], None] | None = None,
                           requests: Sequence[list[JudgeRequest]] | None = None) -> list[RewardResult]:
        """Judge matchups concurrently (the backend's limit bounds judge calls); results keep input order."""
        results: list[RewardResult | None] = [None] * len(matchups)

        async def one(index: int, matchup: Matchup) -> None:
            result = results[index] = await self.compare(rubric, matchup, requests[index] if requests else None)
            if on_result is not None:
                on_result(index, result)

        async with asyncio.TaskGroup() as group:
            for index, matchup in enumerate(matchups):
                group.create_task(one(index, matchup))
        return [r for r in results if r is not None]
