"""Score items against a rubric: deterministic checks, k judge votes, aggregation, reward.

One judge call per vote covers every judged criterion. Failures are caught per vote and per
item, so one bad reply never cancels a batch and an unscorable item says why (never a 0).

The CPU-bound steps (deterministic checks, folding votes) run on a small thread pool, never on
the event loop: a server keeps answering (`/healthz` included) while items are being scored.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from rubricgate.errors import RubricGateError, UsageError
from rubricgate.judges.base import JudgeBackend
from rubricgate.judges.injection import InjectionGuard, detect_injection
from rubricgate.judges.prompts import (
    PromptTemplate, load_template, prompt_text, render_messages, response_text, verdict_form,
)
from rubricgate.models.config import ScoringConfig
from rubricgate.models.judging import JudgeRequest, SamplingParams, TokenUsage
from rubricgate.models.reward import CriterionScore, Flag, Item, RewardResult
from rubricgate.models.rubric import Rubric
from rubricgate.scoring.aggregate import weighted_mean
from rubricgate.scoring.checks import run_check
from rubricgate.scoring.votes import collect_votes, fold_votes

logger = logging.getLogger(__name__)
_CPU = ThreadPoolExecutor(max_workers=2, thread_name_prefix="rubricgate-scoring")
"""Where checks and vote folding run, shared by every scorer: two threads bound the CPU scoring
takes from the event loop's thread (they share the GIL), however many requests are in flight."""


@dataclass
class _Checked:
    """The deterministic checks of one item: scores, whether a hard rule failed, or why they could not run."""

    scores: dict[str, CriterionScore] = field(default_factory=dict)
    failed: bool = False
    error: str | None = None


def _run_checks(rubric: Rubric, response: str) -> _Checked:
    out = _Checked()
    for criterion in rubric.criteria:
        if criterion.check is None:
            continue
        try:
            passed, detail = run_check(criterion.check, response)
        except UsageError:
            raise  # a missing extra is a setup problem, not this item's
        except Exception as exc:  # a checker that breaks on this response fails this item only
            out.error = f"CheckError: {criterion.id} ({criterion.check.type}): {type(exc).__name__}: {exc}"
            return out
        out.failed = out.failed or not passed
        out.scores[criterion.id] = CriterionScore(
            id=criterion.id, kind=criterion.kind, weight=criterion.weight, value=1.0 if passed else 0.0,
            source="check", agreement=1.0, votes=["pass" if passed else "fail"], reason=detail)
    return out


class RubricScorer:
    """Turns (rubric, item) into a RewardResult through one judge backend."""

    def __init__(self, backend: JudgeBackend, config: ScoringConfig | None = None,
                 sampling: SamplingParams | None = None, template: PromptTemplate | None = None,
                 fence_key: bytes | None = None, guard: InjectionGuard | None = None) -> None:
        self._backend = backend
        self._guard = guard
        """Guard judge that confirms or clears weakly suspected responses; None: suspicion stands."""
        self._config = config or ScoringConfig()
        self._sampling = sampling or SamplingParams()
        self._template = template or load_template()
        self._fence_key = fence_key
        """HMAC key of the response fence tag; None: the installation's key (see judges/fence.py)."""

    @property
    def config(self) -> ScoringConfig:
        return self._config

    @property
    def template(self) -> PromptTemplate:
        return self._template

    def requests_for(self, rubric: Rubric, item: Item, votes: int | None = None) -> list[JudgeRequest]:
        """The judge requests (one per vote) this item needs; empty if checks decide everything.

        `votes` overrides the configured number for this item (a request may ask for more).
        """
        form = verdict_form(rubric, rationale=self._backend.prefers_rationale)
        if not form.fields:
            return []
        messages = render_messages(self._template, rubric, item, form, self._fence_key)
        return [
            JudgeRequest(messages=messages, form=form, sampling=self._sampling, sample_index=k,
                         template_version=self._template.version,
                         rubric_ref=f"{rubric.id}@{rubric.judged_version}")
            for k in range(votes or self._config.votes)
        ]

    async def score(self, rubric: Rubric, item: Item,
                    requests: list[JudgeRequest] | None = None) -> RewardResult:
        """Score one item; judge failures become a None reward with a reason.

        `requests` may pass this item's `requests_for` when the caller already built them.
        """
        started = time.perf_counter()
        response = response_text(item)
        limit = self._config.max_response_chars
        if len(response) > limit:  # before any check or judge call: its cost grows with the length
            return RewardResult(id=item.id, reward=None, rubric=rubric.ref, judge=self._backend.name, votes=0,
                                reason=f"ResponseTooLong: {len(response)} characters; the limit is {limit} "
                                       "(max_response_chars, RUBRICGATE_MAX_RESPONSE_CHARS)",
                                latency_ms=(time.perf_counter() - started) * 1000)
        flags: set[Flag] = set()
        loop = asyncio.get_running_loop()
        deadline_s = self._config.deadline_s
        checking = (loop.run_in_executor(_CPU, _run_checks, rubric, response)
                    if any(c.check is not None for c in rubric.criteria) else None)
        requests = self.requests_for(rubric, item) if requests is None else requests
        votes = await collect_votes(self._backend, requests, deadline_s, "item deadline")  # checks run meanwhile
        checked = _Checked()
        if checking is not None:
            try:  # a check still running past the deadline keeps its thread, but not the item
                checked = await asyncio.wait_for(checking, max(deadline_s - (time.perf_counter() - started), 0.001))
            except TimeoutError:
                checked.error = (f"DeadlineExceeded: the deterministic checks did not finish within the "
                                 f"{deadline_s:g}s item deadline")
        scores = dict(checked.scores)
        if checked.failed:
            flags.add("hard_rule_failed")
        fold = functools.partial(fold_votes, rubric, requests, votes, self._config.min_vote_share,
                                 self._config.use_label_probs)
        folded = await loop.run_in_executor(_CPU, fold) if requests else fold()
        scores.update(folded.scores)
        flags |= folded.flags
        reason = checked.error or folded.reason
        if any(s.kind == "hard_rule" and s.source == "judge" and s.value is not None and s.value < 0.5
               for s in folded.scores.values()):
            flags.add("hard_rule_failed")

        ordered = [scores.get(c.id) or CriterionScore(id=c.id, kind=c.kind, weight=c.weight, value=None,
                                                      source="check", reason=checked.error)
                   for c in rubric.criteria]  # a check missing here could not run: `checked.error` says why
        scored = [(s.value, s.weight) for s in ordered if s.value is not None]
        reward = None if reason else weighted_mean(scored)
        if reward is None and reason is None:
            reason = "no criterion could be scored"
        judged = [(s.agreement, s.weight) for s in ordered if s.source == "judge" and s.agreement is not None]
        replies = [v.reply for v in votes if v.reply is not None]
        if any(r.backend != self._backend.name for r in replies):
            flags.add("fallback")  # a fallback judge answered some vote (its replies carry its own name)
        components: dict[str, float | None] = {}
        if self._config.injection_detection:
            reward, reason = await self._screen(item, response, requests, reward, reason, flags, components)
        return RewardResult(
            id=item.id, reward=reward, reason=reason, criteria=ordered, agreement=weighted_mean(judged),
            flags=sorted(flags), cached=bool(requests) and len(replies) == len(requests) and all(r.cached for r in replies),
            rubric=rubric.ref, judge=self._backend.name, votes=len(requests),
            judge_calls=sum(1 for v in votes if not (v.reply and v.reply.cached)),
            tokens=sum((r.usage for r in replies), TokenUsage()),
            latency_ms=(time.perf_counter() - started) * 1000, components=components,
        )

    def failed(self, rubric: Rubric, item: Item, exc: BaseException) -> RewardResult:
        """The null result of an item whose scoring raised an unexpected error."""
        return RewardResult(id=item.id, reward=None, rubric=rubric.ref, judge=self._backend.name, votes=0,
                            reason=f"internal_error: {type(exc).__name__} while scoring this item "
                                   "(the server log has the details)")

    async def _screen(self, item: Item, response: str, requests: list[JudgeRequest], reward: float | None,
                      reason: str | None, flags: set[Flag], components: dict[str, float | None],
                      ) -> tuple[float | None, str | None]:
        """The injection step: detect, let the guard confirm or clear, then apply the action."""
        prompt = prompt_text(item)
        findings = detect_injection(response, prompt, [f.id for f in requests[0].form.fields] if requests else ())
        if not findings:
            return reward, reason
        if self._guard is not None:
            decision = await self._guard.confirm(prompt, response, findings)
            components["injection_guard"] = None if decision.reason else float(decision.confirmed)
            if not decision.confirmed:
                return reward, reason  # cleared: the flagged text is part of the answer
        flags.add("injection_suspected")
        action, cap = self._config.injection_action, self._config.injection_cap
        if action == "cap" and reward is not None and cap is not None and reward > cap:
            components["before_injection_cap"] = reward
            reward = cap
        elif action == "null" and reward is not None:
            components["before_injection_null"] = reward
            rules = ", ".join(sorted({f.rule for f in findings}))
            reward, reason = None, f"injection suspected ({rules})"
        return reward, reason

    async def score_many(self, pairs: Sequence[tuple[Rubric, Item]],
                         on_result: Callable[[int, RewardResult], None] | None = None,
                         requests: Sequence[list[JudgeRequest] | None] | None = None) -> list[RewardResult]:
        """Score items concurrently (the backend's limit bounds judge calls); results keep input order.

        An unexpected error scoring one item (a bug, hostile text) makes that item null with a
        reason and leaves its batch-mates alone; our own errors (`UsageError`, ...) still raise.
        """
        results: list[RewardResult | None] = [None] * len(pairs)

        async def one(index: int, rubric: Rubric, item: Item) -> None:
            try:
                result = await self.score(rubric, item, requests[index] if requests else None)
            except RubricGateError:
                raise
            except Exception as exc:
                logger.error("unexpected error scoring item %s", item.id or index + 1, exc_info=exc)
                result = self.failed(rubric, item, exc)
            results[index] = result
            if on_result is not None:
                on_result(index, result)

        async with asyncio.TaskGroup() as group:
            for index, (rubric, item) in enumerate(pairs):
                group.create_task(one(index, rubric, item))
        return [r for r in results if r is not None]
