"""Principles -> a validated rubric (RewardAnything-style specification, OpenRubrics-style checklist)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from rubricgate.authoring.extract import extract_rules
from rubricgate.authoring.parse import review_rubric, revise
from rubricgate.authoring.source import PrincipleSet
from rubricgate.authoring.writer import RubricWriter
from rubricgate.models.rubric import Rubric


def ensure_checks(rubric: Rubric, sources: Sequence[str]) -> tuple[Rubric, list[str]]:
    """Add a hard rule for every mechanically checkable requirement in `sources` that no criterion
    of the rubric checks yet, whatever wrote the rubric (OpenRubrics: every explicit requirement is a
    hard rule; here, a deterministic one where possible)."""
    criteria = list(rubric.criteria)
    taken = {c.id for c in criteria}
    notes = []
    for text in sources:
        for rule in extract_rules(text):
            if rule.check is None or any(c.check == rule.check for c in criteria):
                continue
            rule_id, n = rule.id, 2
            while rule_id in taken:
                rule_id, n = f"{rule.id}_{n}", n + 1
            taken.add(rule_id)
            criteria.append(rule.criterion().model_copy(update={"id": rule_id}))
            notes.append(f"added hard rule {rule_id!r} with a deterministic {rule.check.type} check "
                         f"(from {_clip(text, 80)!r})")
    return (revise(rubric, criteria=criteria) if len(criteria) != len(rubric.criteria) else rubric), notes


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


@dataclass
class AuthoredRubric:
    """A generated rubric and the notes that explain how it came about."""

    rubric: Rubric
    notes: list[str] = field(default_factory=list)


async def generate_rubric(principles: Sequence[str], name: str, writer: RubricWriter, *,
                          examples: Sequence[str] = (), description: str | None = None,
                          attempt: int = 0) -> AuthoredRubric:
    """Write a rubric named `name` that encodes `principles`.

    Whatever the writer produced, every mechanically checkable requirement found in the
    principles ("at most 100 words", "respond in JSON", ...) ends up as a hard rule with a
    deterministic check, overlapping criteria are merged, and the principles are kept verbatim
    for provenance.

    Raises:
        UsageError: empty principles or a bad name.
        VerdictParseError: a text generator gave no usable rubric after its retries.
        JudgeError: the generator could not be reached.
    """
    source = PrincipleSet(name=name, principles=tuple(principles), examples=tuple(examples), description=description)
    draft = await writer.from_principles(source, attempt)
    rubric, notes = ensure_checks(draft.rubric, source.principles)
    notes = draft.notes + notes
    review = review_rubric(rubric)
    notes += review.fixes
    metadata = {**review.rubric.metadata, "generator": review.rubric.metadata.get("generator", writer.name),
                "source": "principles"}
    if examples:
        metadata["examples"] = len(examples)
    return AuthoredRubric(revise(review.rubric, principles=list(source.principles), metadata=metadata), notes)
