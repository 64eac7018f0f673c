"""Rubrics: criteria with contrastive descriptors, optional deterministic checks, a scale.

A rubric's version is the hash of its content, so editing any field that can change a
judgment yields a new version and never serves a stale cache entry.
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

_FILE = ConfigDict(frozen=True, extra="forbid")


class _Check(BaseModel):
    model_config = _FILE


class MaxWords(_Check):
    """At most `value` whitespace-separated words."""

    type: Literal["max_words"]
    value: int = Field(ge=1)


class MinWords(_Check):
    """At least `value` whitespace-separated words."""

    type: Literal["min_words"]
    value: int = Field(ge=0)


class MaxChars(_Check):
    """At most `value` characters."""

    type: Literal["max_chars"]
    value: int = Field(ge=1)


class MaxSentences(_Check):
    """At most `value` sentences (split on . ! ? followed by space or end)."""

    type: Literal["max_sentences"]
    value: int = Field(ge=1)


class Regex(_Check):
    """The response matches the pattern (Python `re.search`)."""

    type: Literal["regex"]
    value: str
    ignore_case: bool = False


class NotRegex(_Check):
    """The response does not match the pattern anywhere."""

    type: Literal["not_regex"]
    value: str
    ignore_case: bool = False


class ContainsAll(_Check):
    """Every listed phrase occurs in the response."""

    type: Literal["contains_all"]
    value: list[str] = Field(min_length=1)
    ignore_case: bool = True


class ContainsNone(_Check):
    """No listed phrase occurs in the response."""

    type: Literal["contains_none"]
    value: list[str] = Field(min_length=1)
    ignore_case: bool = True


class JsonValid(_Check):
    """The response (or its single fenced code block) parses as JSON."""

    type: Literal["json"]


class CodeBlock(_Check):
    """The response contains a fenced code block, in `value` language when given."""

    type: Literal["code_block"]
    value: str | None = None


class NoPlaceholders(_Check):
    """No template placeholders such as [NAME], {{x}}, TODO or lorem ipsum remain."""

    type: Literal["no_placeholders"]


Check = Annotated[
    MaxWords | MinWords | MaxChars | MaxSentences | Regex | NotRegex | ContainsAll
    | ContainsNone | JsonValid | CodeBlock | NoPlaceholders,
    Field(discriminator="type"),
]
"""A deterministic test of a hard rule that runs without any judge."""

CHECK_TYPES: tuple[str, ...] = (
    "max_words", "min_words", "max_chars", "max_sentences", "regex", "not_regex",
    "contains_all", "contains_none", "json", "code_block", "no_placeholders",
)


class Criterion(BaseModel):
    """One thing a good response does, judged on its own."""

    model_config = _FILE

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)
    """Stable key in scores, logs and cache keys; new wording deserves a new id."""
    kind: Literal["hard_rule", "principle"]
    """`hard_rule`: explicit and objective, judged pass/fail. `principle`: a quality on the scale."""
    text: str = Field(min_length=3)
    """The criterion as one sentence, phrased "The response ..."."""
    weight: float = Field(default=1.0, gt=0, le=100)
    """Relative weight in the rubric's reward."""
    pass_: str | None = Field(default=None, alias="pass")
    """What satisfying the criterion looks like (contrastive descriptor)."""
    fail: str | None = None
    """What failing the criterion looks like (contrastive descriptor)."""
    check: Check | None = None
    """A deterministic test; when present the judge is not asked about this criterion."""

    @model_validator(mode="after")
    def _check_only_on_hard_rules(self) -> Criterion:
        if self.check is not None and self.kind != "hard_rule":
            raise ValueError("only a hard_rule may carry a deterministic `check`")
        return self

    @property
    def judged(self) -> bool:
        """True when the judge, not a deterministic check, decides this criterion."""
        return self.check is None


class Scale(BaseModel):
    """How the judge grades `principle` criteria; hard rules are always pass/fail."""

    model_config = _FILE

    points: int = Field(default=5, ge=2, le=9)
    """Principles get an integer 1..points; single digits keep every label one token."""

    def normalise(self, score: float) -> float:
        """Map 1..points to 0..1."""
        return (score - 1) / (self.points - 1)


class Rubric(BaseModel):
    """A named set of criteria; `version` is derived from the content, never written by hand."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9-]*$", max_length=64)
    """Lower-case slug that names the rubric in files, CLI flags and results."""
    description: str = ""
    """What the rubric is for (a task family or one prompt)."""
    principles: list[str] = Field(default_factory=list)
    """The natural-language source the criteria came from, kept for provenance."""
    criteria: list[Criterion] = Field(min_length=1)
    scale: Scale = Field(default_factory=Scale)
    metadata: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    """Free-form provenance (author, source, generator); not part of the version."""

    @model_validator(mode="after")
    def _unique_ids(self) -> Rubric:
        seen: set[str] = set()
        for criterion in self.criteria:
            if criterion.id in seen:
                raise ValueError(f"criterion id {criterion.id!r} appears twice; ids must be unique")
            seen.add(criterion.id)
        return self

    @cached_property
    def version(self) -> str:
        """First 12 hex digits of sha256 over the canonical JSON of every judged field."""
        content = self.model_dump(mode="json", by_alias=True, exclude={"metadata"})
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def ref(self) -> str:
        """`id@version`, the name results carry."""
        return f"{self.id}@{self.version}"

    @property
    def judged_criteria(self) -> list[Criterion]:
        """Criteria the judge must decide (those without a deterministic check)."""
        return [c for c in self.criteria if c.judged]
