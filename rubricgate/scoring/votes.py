"""Running one item's votes (each judge call caught on its own, all under one deadline) and
folding them into per-criterion scores; pointwise and pairwise scoring share both steps."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from rubricgate.errors import CacheError, JudgeError, VerdictParseError
from rubricgate.judges.base import JudgeBackend
from rubricgate.judges.parse import is_complete, parse_verdict
from rubricgate.models.judging import JudgeReply, JudgeRequest, Verdict
from rubricgate.models.reward import CriterionScore, Flag
from rubricgate.models.rubric import Rubric
from rubricgate.scoring.aggregate import aggregate_field


@dataclass(frozen=True)
class Vote:
    """What one vote produced: a reply and verdict, or the error that stopped it."""

    reply: JudgeReply | None = None
    verdict: Verdict | None = None
    error: str | None = None
    complete: bool = False


async def collect_votes(backend: JudgeBackend, requests: list[JudgeRequest], deadline_s: float,
                        deadline_name: str = "item deadline") -> list[Vote]:
    """Every vote under the deadline; late votes are cancelled, finished ones kept, in request order."""
    if not requests:
        return []
    tasks = [asyncio.create_task(_vote(backend, r)) for r in requests]
    done, pending = await asyncio.wait(tasks, timeout=deadline_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    late = Vote(error=f"DeadlineExceeded: no reply within the {deadline_s:g}s {deadline_name}")
    return [t.result() if t in done else late for t in tasks]


async def _vote(backend: JudgeBackend, request: JudgeRequest) -> Vote:
    try:
        reply = await backend.complete(request)
    except (JudgeError, CacheError) as exc:  # CacheError: the cache wrapper degrades, but never crash a batch
        return Vote(error=f"{type(exc).__name__}: {exc}")
    try:
        verdict = parse_verdict(reply, request.form)
    except VerdictParseError as exc:
        return Vote(reply=reply, error=f"VerdictParseError: {exc}")
    return Vote(reply=reply, verdict=verdict, complete=is_complete(verdict, request.form))


@dataclass
class FoldedVotes:
    """Per-criterion scores from one item's votes, the flags they raise, and why the item is
    unscorable (None when enough votes were usable)."""

    scores: dict[str, CriterionScore] = field(default_factory=dict)
    flags: set[Flag] = field(default_factory=set)
    reason: str | None = None


def fold_votes(rubric: Rubric, requests: Sequence[JudgeRequest], votes: Sequence[Vote], min_vote_share: float,
               use_label_probs: bool, undecided: str = "no vote scored this criterion") -> FoldedVotes:
    """Aggregate each judged criterion over the usable votes.

    Too few usable votes (under `min_vote_share` of those asked) make every judged criterion
    unscored with the reason; a malformed or incomplete verdict flags `parse_error`, a mix of
    failed and usable votes `partial_votes`, a vote the cache could not serve or store
    `cache_unavailable`.
    """
    out = FoldedVotes()
    usable = [v for v in votes if v.verdict is not None]
    errors = [v.error for v in votes if v.error]
    if any(v.error and v.error.startswith("VerdictParseError") for v in votes) or any(
            v.verdict is not None and not v.complete for v in votes):
        out.flags.add("parse_error")
    if errors and usable:
        out.flags.add("partial_votes")
    if any((v.reply is not None and v.reply.cache_unavailable) or (v.error or "").startswith("CacheError")
           for v in votes):
        out.flags.add("cache_unavailable")
    enough = len(usable) >= max(1, round(min_vote_share * len(requests)))
    if requests and not enough:
        out.reason = f"{len(usable)} of {len(requests)} votes usable; first error: {errors[0] if errors else '?'}"
    by_id = {c.id: c for c in rubric.criteria}  # one lookup per field: linear in the rubric's size
    for form_field in requests[0].form.fields if requests else ():
        criterion = by_id[form_field.id]
        verdicts = [v.verdict.fields[form_field.id] for v in usable
                    if v.verdict and form_field.id in v.verdict.fields]
        if not enough or not verdicts:
            out.scores[form_field.id] = CriterionScore.unscored(form_field.id, criterion.kind, criterion.weight,
                                                                out.reason or undecided)
            continue
        folded = aggregate_field(form_field, verdicts, use_label_probs)
        out.scores[form_field.id] = CriterionScore(
            id=form_field.id, kind=criterion.kind, weight=criterion.weight, value=folded.value, source="judge",
            agreement=folded.agreement, votes=folded.labels, rationale=folded.rationale)
    return out
