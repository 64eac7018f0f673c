"""What a trainer gets back: a reward in [0, 1] or None with a reason, and why."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rubricgate.models.judging import ChatMessage, TokenUsage

_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(value: Any) -> Any:
    """`value` with every lone surrogate (in strings, lists, tuples, dict keys and values, chat
    messages) replaced by U+FFFD.

    JSON may escape half of a UTF-16 pair (`"\\ud800"`); Python decodes it to a string that
    cannot be encoded as UTF-8, so a judge prompt, a cache key or a log line holding it would
    fail. Text is normalised once, where it enters (`Item`, the HTTP request models), so the CLI,
    the server and the trainers all see the same text. A valid pair is one code point after
    decoding and is left alone.
    """
    if isinstance(value, str):
        return value if value.isascii() else _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list | tuple):
        return type(value)(clean_text(v) for v in value)
    if isinstance(value, dict):
        return {clean_text(k): clean_text(v) for k, v in value.items()}
    if isinstance(value, ChatMessage):
        return value.model_copy(update={"content": clean_text(value.content)})
    return value


Flag = Literal["fallback", "parse_error", "injection_suspected", "hard_rule_failed", "partial_votes",
               "cache_unavailable"]


class Item(BaseModel):
    """One thing to grade: a prompt (text or chat), a response, an optional reference."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str | None = None
    prompt: str | tuple[ChatMessage, ...]
    response: str | tuple[ChatMessage, ...]
    """Text, or a message list whose final assistant message is graded."""
    reference: str | None = None
    rubric: str | None = None
    """Rubric name for this item, overriding the run's default."""

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("id", "prompt", "response", "reference", "rubric", mode="after")
    @classmethod
    def _clean(cls, value: object) -> object:
        """Lone surrogates become U+FFFD (see `clean_text`)."""
        return clean_text(value)


class CriterionScore(BaseModel):
    """One criterion's aggregated result over all votes."""

    model_config = ConfigDict(frozen=True)

    id: str
    kind: Literal["hard_rule", "principle"]
    weight: float
    value: float | None
    """In [0, 1]; None when no vote could score it."""
    source: Literal["check", "judge"]
    agreement: float | None = None
    """Share of votes on the winning label (1.0 for deterministic checks)."""
    votes: list[str] = Field(default_factory=list)
    """The label each usable vote gave, in vote order."""
    rationale: str | None = None
    reason: str | None = None
    """Why `value` is None, or what a deterministic check found."""

    @classmethod
    def unscored(cls, criterion_id: str, kind: Literal["hard_rule", "principle"], weight: float,
                 reason: str) -> CriterionScore:
        """A criterion no vote could decide; aggregation skips it and says why."""
        return cls(id=criterion_id, kind=kind, weight=weight, value=None, source="judge", reason=reason)


class RewardResult(BaseModel):
    """The reward for one item, with everything needed to see why it is what it is."""

    model_config = ConfigDict(frozen=True)

    id: str | None = None
    reward: float | None
    """In [0, 1]; None means unscorable (see `reason`), never a silent 0."""
    reason: str | None = None
    criteria: list[CriterionScore] = Field(default_factory=list)
    agreement: float | None = None
    """Weighted mean of per-criterion agreement over judged criteria."""
    flags: list[Flag] = Field(default_factory=list)
    cached: bool = False
    """True when every vote came from the cache (no judge call for this item)."""
    rubric: str
    """`id@version` of the rubric that produced the reward."""
    judge: str
    votes: int
    judge_calls: int = 0
    """Votes that reached the judge in this run (cache misses)."""
    tokens: TokenUsage = Field(default_factory=TokenUsage)
    """Judge tokens behind this reward, cached votes included."""
    latency_ms: float = 0.0
    """Wall time to produce this reward in this run."""
    components: dict[str, float | None] = Field(default_factory=dict)
    """Each shaping step's value (per judge, ensemble, gate, reference metric, length penalty,
    transform, per rubric), so a user sees why the reward is what it is; empty when unshaped."""
