"""What changed between two rubrics (two versions of one, or two related ones), criterion by criterion."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict

from rubricgate.models.rubric import Criterion, Rubric

_CRITERION_FIELDS = ("kind", "text", "weight", "pass", "fail", "check")


class FieldChange(BaseModel):
    """One field's value before and after (compact JSON; None when absent)."""

    model_config = ConfigDict(frozen=True)

    field: str
    before: str | None
    after: str | None


class CriterionChange(BaseModel):
    """A criterion added, removed or changed (matched by id)."""

    model_config = ConfigDict(frozen=True)

    id: str
    change: Literal["added", "removed", "changed"]
    kind: str
    text: str
    """The criterion's text (after the change; before it for a removal)."""
    fields: list[FieldChange] = []


class RubricDiff(BaseModel):
    """Differences between rubric `a` and rubric `b`."""

    model_config = ConfigDict(frozen=True)

    a: str
    b: str
    """`id@version` of each side."""
    same_version: bool
    """True when nothing that affects judging differs (metadata never does)."""
    fields: list[FieldChange]
    """Top-level changes: id, description, principles, scale."""
    criteria: list[CriterionChange]
    order_changed: bool
    """The shared criteria appear in another order (it changes the judge prompt, hence the version)."""
    metadata: list[FieldChange]

    @property
    def empty(self) -> bool:
        return not (self.fields or self.criteria or self.order_changed or self.metadata)


def diff_rubrics(a: Rubric, b: Rubric) -> RubricDiff:
    """Compare two rubrics field by field and criterion by criterion."""
    fields = [change for name in ("id", "description", "principles", "scale")
              if (change := _change(name, _field(a, name), _field(b, name))) is not None]
    old = {c.id: c for c in a.criteria}
    new = {c.id: c for c in b.criteria}
    criteria = [CriterionChange(id=c.id, change="removed", kind=c.kind, text=c.text)
                for c in a.criteria if c.id not in new]
    for criterion in b.criteria:
        before = old.get(criterion.id)
        if before is None:
            criteria.append(CriterionChange(id=criterion.id, change="added", kind=criterion.kind, text=criterion.text))
            continue
        changes = [change for name in _CRITERION_FIELDS
                   if (change := _change(name, _criterion_field(before, name), _criterion_field(criterion, name)))]
        if changes:
            criteria.append(CriterionChange(id=criterion.id, change="changed", kind=criterion.kind,
                                            text=criterion.text, fields=changes))
    shared_a = [c.id for c in a.criteria if c.id in new]
    shared_b = [c.id for c in b.criteria if c.id in old]
    metadata = [change for key in sorted(set(a.metadata) | set(b.metadata))
                if (change := _change(key, a.metadata.get(key), b.metadata.get(key))) is not None]
    return RubricDiff(a=a.ref, b=b.ref, same_version=a.version == b.version, fields=fields, criteria=criteria,
                      order_changed=shared_a != shared_b, metadata=metadata)


def _field(rubric: Rubric, name: str) -> object:
    value = getattr(rubric, name)
    return value.model_dump() if isinstance(value, BaseModel) else value


def _criterion_field(criterion: Criterion, name: str) -> object:
    if name == "pass":
        return criterion.pass_
    if name == "check":
        return criterion.check.model_dump() if criterion.check is not None else None
    return getattr(criterion, name)


def _change(name: str, before: object, after: object) -> FieldChange | None:
    if before == after:
        return None
    return FieldChange(field=name, before=_show(before), after=_show(after))


def _show(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
