"""Contrastive rubric generation (OpenRubrics CRG) with the consistency filter, and distillation.

Per prompt: the writer drafts an instance rubric (hard rules from the request, principles from
why the better responses win); the filter judges the prompt's induced pairs with it in both
presentation orders; a rejected draft is resampled (a new attempt, told why the last one failed)
up to `tries` times. Kept rubrics carry their filter accuracy in `metadata`; `distill_rubrics`
merges them into one general rubric.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable, Sequence

from pydantic import BaseModel, ConfigDict, Field

from rubricgate.authoring.consistency import ConsistencyFilter, FilterResult
from rubricgate.authoring.extract import instruction_part
from rubricgate.authoring.generate import AuthoredRubric, ensure_checks
from rubricgate.authoring.parse import review_rubric, revise
from rubricgate.authoring.source import RankedPrompt
from rubricgate.authoring.writer import RubricWriter
from rubricgate.errors import JudgeError, UsageError, VerdictParseError
from rubricgate.judges.prompts import prompt_text
from rubricgate.models.reward import Item
from rubricgate.models.rubric import Rubric


class Attempt(BaseModel):
    """One draft for one prompt and what the filter made of it."""

    model_config = ConfigDict(frozen=True)

    number: int
    """1-based."""
    rubric: Rubric | None
    """None when the writer produced no usable rubric."""
    filter: FilterResult | None
    reason: str
    notes: list[str] = Field(default_factory=list)


class InstanceOutcome(BaseModel):
    """Everything that happened for one prompt: its attempts and the final rubric."""

    model_config = ConfigDict(frozen=True)

    id: str
    """The prompt's id in the pair file."""
    kept: bool
    rubric: Rubric | None
    """The kept rubric, or the last draft of a rejected prompt (None if no draft was ever usable)."""
    attempts: list[Attempt]
    reason: str
    """Why it was kept, or why the last attempt was rejected."""

    @property
    def accuracy(self) -> float | None:
        last = self.attempts[-1].filter if self.attempts else None
        return last.accuracy if last else None


class ContrastReport(BaseModel):
    """The outcome of contrastive generation over a pair file."""

    model_config = ConfigDict(frozen=True)

    outcomes: list[InstanceOutcome]
    writer: str
    judge: str
    mode: str
    tries: int
    threshold: float

    @property
    def kept(self) -> list[InstanceOutcome]:
        return [o for o in self.outcomes if o.kept]

    @property
    def rejected(self) -> list[InstanceOutcome]:
        return [o for o in self.outcomes if not o.kept]

    def rejection_reasons(self) -> Counter[str]:
        """Final rejection reasons, grouped (numbers stripped so alike reasons count together)."""
        return Counter(_reason_kind(o.reason) for o in self.rejected)

    def mean_attempts(self) -> float:
        return sum(len(o.attempts) for o in self.outcomes) / max(len(self.outcomes), 1)


OnOutcome = Callable[[InstanceOutcome], None]


async def contrast_rubrics(items: Sequence[RankedPrompt], writer: RubricWriter, consistency: ConsistencyFilter, *,
                           tries: int = 3, judge: str = "", concurrency: int = 4,
                           on_outcome: OnOutcome | None = None) -> ContrastReport:
    """Contrastive generation plus filter for every prompt; results keep input order.

    Args:
        items: prompts with ranked responses (pairs or lists).
        writer: drafts instance rubrics.
        consistency: the filter (its scorer's backend is the judge; pass the cached stack).
        tries: drafts per prompt at most (the first plus resamples).
        judge: the judge's name, recorded in each rubric's metadata.
        concurrency: prompts in flight at once (the judge backend limits calls on its own).
        on_outcome: called as each prompt finishes.
    """
    if tries < 1:
        raise UsageError("--tries must be at least 1")
    ids = [rubric_id_for(item.id) for item in items]
    if len(set(ids)) != len(ids):
        ids = [f"{rid[:58]}-{n}" for n, rid in enumerate(ids, start=1)]
    slots = asyncio.Semaphore(concurrency)
    results: list[InstanceOutcome | None] = [None] * len(items)

    async def one(index: int) -> None:
        async with slots:
            outcome = await contrast_one(items[index], ids[index], writer, consistency, tries=tries, judge=judge)
        results[index] = outcome
        if on_outcome is not None:
            on_outcome(outcome)

    async with asyncio.TaskGroup() as group:
        for index in range(len(items)):
            group.create_task(one(index))
    return ContrastReport(outcomes=[o for o in results if o is not None], writer=writer.name, judge=judge,
                          mode=consistency.mode, tries=tries, threshold=consistency.threshold)


async def contrast_one(item: RankedPrompt, rubric_id: str, writer: RubricWriter, consistency: ConsistencyFilter, *,
                       tries: int = 3, judge: str = "") -> InstanceOutcome:
    """Draft, filter, resample up to `tries` times for one prompt."""
    attempts: list[Attempt] = []
    feedback: str | None = None
    last: Rubric | None = None
    for number in range(1, tries + 1):
        try:
            draft = await writer.from_ranking(item, rubric_id, attempt=number - 1, feedback=feedback)
        except (VerdictParseError, JudgeError) as exc:
            feedback = f"the generator failed: {exc}"
            attempts.append(Attempt(number=number, rubric=None, filter=None, reason=feedback))
            continue
        candidate, added = ensure_checks(draft.rubric, [instruction_part(prompt_text(Item(prompt=item.prompt,
                                                                                            response="")))])
        result = await consistency.check(candidate, item)
        rubric = _with_filter_metadata(candidate, item, result, consistency, number, tries, judge)
        attempts.append(Attempt(number=number, rubric=rubric, filter=result, reason=result.reason,
                                notes=draft.notes + added))
        last = rubric
        if result.kept:
            return InstanceOutcome(id=item.id, kept=True, rubric=rubric, attempts=attempts, reason=result.reason)
        feedback = result.reason
    return InstanceOutcome(id=item.id, kept=False, rubric=last, attempts=attempts,
                           reason=attempts[-1].reason if attempts else "no attempt")


async def distill_rubrics(rubrics: Sequence[Rubric], name: str, writer: RubricWriter) -> AuthoredRubric:
    """Merge instance rubrics into one general rubric named `name` (deduplicated, abstracted,
    topic-specific facts dropped). Records the sources and their mean filter accuracy."""
    if not rubrics:
        raise UsageError("nothing to distill: no instance rubric passed the filter")
    draft = await writer.distill(rubrics, name)
    review = review_rubric(draft.rubric, generic=True)
    accuracies = [float(a) for r in rubrics if isinstance(a := r.metadata.get("filter_accuracy"), (int, float))]
    metadata = {**review.rubric.metadata, "generator": draft.rubric.metadata.get("generator", writer.name),
                "source": "distilled", "distilled_from": len(rubrics),
                "source_ids": _clip(",".join(r.id for r in rubrics), 500)}
    if accuracies:
        metadata["mean_filter_accuracy"] = round(sum(accuracies) / len(accuracies), 4)
    notes = draft.notes + review.fixes + [f"check: {p}" for p in review.problems]
    return AuthoredRubric(revise(review.rubric, metadata=metadata), notes)


def rubric_id_for(item_id: str) -> str:
    """A rubric id (lower-case slug) for a prompt id: `rmbench-chat-404` stays as it is."""
    slug = re.sub(r"[^a-z0-9-]+", "-", item_id.lower()).strip("-")[:64] or "prompt"
    return slug if slug[0].isalpha() else f"p-{slug}"[:64]


def _with_filter_metadata(rubric: Rubric, item: RankedPrompt, result: FilterResult, consistency: ConsistencyFilter,
                          number: int, tries: int, judge: str) -> Rubric:
    metadata = {**rubric.metadata, "source": "contrastive", "source_id": item.id,
                "filter_mode": consistency.mode, "filter_judge": judge or None,
                "filter_kept": result.kept, "filter_accuracy": result.accuracy,
                "filter_pairs": len(result.pairs), "filter_reason": result.reason,
                "filter_try": number, "filter_tries": tries}
    return revise(rubric, metadata=metadata)


def _reason_kind(reason: str) -> str:
    return re.sub(r"\d+(?:\.\d+)?", "N", reason.split(":")[0] if reason.startswith(("unscorable", "the generator"))
                  else reason)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
