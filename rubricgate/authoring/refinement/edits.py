"""Edits to a rubric (add, clarify, reweight, remove), applying them, and the proposal they make."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rubricgate.authoring.parse import revise
from rubricgate.authoring.refinement.evidence import Finding
from rubricgate.errors import VerdictParseError
from rubricgate.library.rubric_files import describe_validation_error
from rubricgate.models.rubric import Criterion, Rubric


class Edit(BaseModel):
    """One change to the rubric."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    op: Literal["add", "clarify", "reweight", "remove"]
    id: str
    """The criterion added, clarified, re-weighted or removed."""
    criterion: Criterion | None = None
    """The new criterion (`add`)."""
    text: str | None = None
    pass_: str | None = Field(default=None, alias="pass")
    fail: str | None = None
    weight: float | None = Field(default=None, gt=0, le=100)
    why: str = ""


class Proposal(BaseModel):
    """What the meta-judge proposes: findings, the edits, and the rubric they produce."""

    model_config = ConfigDict(frozen=True)

    base: Rubric
    rubric: Rubric
    findings: list[Finding]
    edits: list[Edit]
    summary: str
    meta_judge: str
    sample_ids: list[str]
    """The items the meta-judge was shown."""
    notes: list[str] = Field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.rubric.version != self.base.version


def apply_edits(rubric: Rubric, edits: Sequence[Edit], metadata: Mapping[str, str | int | float | bool | None]
                | None = None) -> Rubric:
    """The rubric with `edits` applied in order, validated, with a fresh version.

    Raises VerdictParseError naming the edit that cannot apply (unknown id, duplicate id, a
    rubric left without criteria), in words that can be fed back to a meta-judge.
    """
    criteria: list[dict[str, Any]] = [c.model_dump(by_alias=True) for c in rubric.criteria]
    for edit in edits:
        ids = [c["id"] for c in criteria]
        if edit.op == "add":
            if edit.criterion is None:
                raise VerdictParseError(f"edit 'add' {edit.id!r} has no criterion")
            if edit.criterion.id in ids:
                raise VerdictParseError(f"criterion {edit.criterion.id!r} already exists: use 'clarify' or "
                                        "'reweight' for it, or add it under a new id")
            criteria.append(edit.criterion.model_dump(by_alias=True))
            continue
        if edit.id not in ids:
            raise VerdictParseError(f"edit {edit.op!r} names criterion {edit.id!r}, which does not exist; existing "
                                    f"ids: {', '.join(ids)}")
        target = criteria[ids.index(edit.id)]
        if edit.op == "remove":
            criteria.remove(target)
        elif edit.op == "reweight":
            if edit.weight is None:
                raise VerdictParseError(f"edit 'reweight' {edit.id!r} has no weight")
            target["weight"] = edit.weight
        else:
            changes = {k: v for k, v in (("text", edit.text), ("pass", edit.pass_), ("fail", edit.fail))
                       if v is not None}
            if not changes and edit.weight is None:
                raise VerdictParseError(f"edit 'clarify' {edit.id!r} changes nothing: give text, pass or fail")
            target.update(changes)
            if edit.weight is not None:
                target["weight"] = edit.weight
    if not criteria:
        raise VerdictParseError("the edits remove every criterion; a rubric needs at least one")
    try:
        return revise(rubric, criteria=criteria, metadata={**rubric.metadata, **(metadata or {})})
    except ValidationError as exc:
        raise VerdictParseError(f"the edited rubric is invalid: {describe_validation_error(exc)}") from exc
