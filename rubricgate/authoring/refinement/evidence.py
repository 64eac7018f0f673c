"""What a meta-judge sees: scored samples under ids, the detectors' findings (exploit patterns,
criteria whose votes disagree), and the selection of samples shown to it."""

from __future__ import annotations

import random
from collections.abc import Sequence
from statistics import mean
from typing import Literal

from pydantic import BaseModel, ConfigDict

from rubricgate.authoring.exploits import Observation, suspected_exploits
from rubricgate.judges.prompts import prompt_text, response_text
from rubricgate.models.reward import Item, RewardResult
from rubricgate.models.rubric import Rubric


class ScoredSample(BaseModel):
    """One item and the reward the current rubric version gave it."""

    model_config = ConfigDict(frozen=True)

    id: str
    """Unique within a refinement; findings cite it as evidence."""
    item: Item
    result: RewardResult


class Finding(BaseModel):
    """A suspected exploit or ambiguity, with the ids of the items that show it."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["exploit", "ambiguity"]
    name: str
    """E.g. `length_padding`, `flattery`, `clarity_vs_brevity`."""
    criterion: str | None = None
    """The criterion it concerns, when one does."""
    evidence: tuple[str, ...] = ()
    explanation: str = ""
    source: Literal["meta_judge", "detector"] = "meta_judge"


def detect_signals(rubric: Rubric, samples: Sequence[ScoredSample], *, min_agreement: float = 0.7,
                   min_items: int = 3) -> list[Finding]:
    """Detector findings: hacking patterns the rubric rewards, and criteria whose votes disagree.

    A judged criterion is ambiguous when, over at least `min_items` items judged with two or
    more votes, the mean share of votes on the winning label is below `min_agreement`.
    """
    observations = [Observation(s.id, prompt_text(s.item), response_text(s.item), s.result.reward) for s in samples]
    findings = [Finding(kind="exploit", name=s.pattern, evidence=s.evidence, explanation=s.explanation,
                        source="detector") for s in suspected_exploits(observations)]
    for criterion in rubric.judged_criteria:
        judged = [(s.id, score.agreement) for s in samples for score in s.result.criteria
                  if score.id == criterion.id and score.agreement is not None and len(score.votes) >= 2]
        if len(judged) < min_items:
            continue
        agreement = mean(a for _, a in judged)
        if agreement < min_agreement:
            worst = sorted(judged, key=lambda pair: pair[1])[:5]
            findings.append(Finding(
                kind="ambiguity", name=f"{criterion.id}_disagreement", criterion=criterion.id,
                evidence=tuple(i for i, _ in worst), source="detector",
                explanation=f"votes agree on {agreement:.0%} of labels on average over {len(judged)} items"))
    return findings


def select_samples(samples: Sequence[ScoredSample], size: int, signals: Sequence[Finding] = (),
                   seed: int = 0) -> list[ScoredSample]:
    """At most `size` samples to show the meta-judge, in their original order.

    Evidence named by the detectors comes first (round robin over findings), then the highest
    rewards (where exploits hide), then the lowest agreement, then a seeded random fill.
    """
    if len(samples) <= size:
        return list(samples)
    by_id = {s.id: s for s in samples}
    chosen: dict[str, None] = {}
    queues = [list(f.evidence) for f in signals]
    while len(chosen) < size // 2 and any(queues):
        for queue in queues:
            while queue and (queue[0] in chosen or queue[0] not in by_id):
                queue.pop(0)
            if queue and len(chosen) < size // 2:
                chosen[queue.pop(0)] = None
    scored = [s for s in samples if s.result.reward is not None]
    for s in sorted(scored, key=lambda s: -(s.result.reward or 0.0))[:max(1, size // 4)]:
        if len(chosen) < size:
            chosen.setdefault(s.id, None)
    for s in sorted(samples, key=lambda s: s.result.agreement if s.result.agreement is not None else 1.0)[:size // 8]:
        if len(chosen) < size:
            chosen.setdefault(s.id, None)
    rest = [s.id for s in samples if s.id not in chosen]
    random.Random(f"refine:{seed}").shuffle(rest)
    for sample_id in rest[:max(0, size - len(chosen))]:
        chosen[sample_id] = None
    return [s for s in samples if s.id in chosen]


def scored_samples(items: Sequence[Item], results: Sequence[RewardResult]) -> list[ScoredSample]:
    """Pair items with their results under ids unique in the batch (the item's id when it is)."""
    taken: set[str] = set()
    out = []
    for index, (item, result) in enumerate(zip(items, results, strict=True), start=1):
        base = item.id or result.id or f"s{index}"
        sample_id, n = base, 2
        while sample_id in taken:
            sample_id, n = f"{base}#{n}", n + 1
        taken.add(sample_id)
        out.append(ScoredSample(id=sample_id, item=item, result=result))
    return out
