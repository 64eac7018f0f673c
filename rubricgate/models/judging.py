"""What crosses the judge boundary: requests, replies and parsed verdicts.

Nothing SDK-shaped crosses this line; backends translate to and from these types.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

_VALUE = ConfigDict(frozen=True, extra="forbid")


class ChatMessage(BaseModel):
    """One message of a judge prompt or of a graded conversation."""

    model_config = _VALUE

    role: Literal["system", "user", "assistant"]
    content: str


class FormField(BaseModel):
    """One criterion the judge must fill in, with the only labels it may answer."""

    model_config = _VALUE

    id: str
    """Criterion id: the key of this field in the verdict JSON."""
    labels: tuple[str, ...]
    """Allowed answers in ascending order of quality ("fail", "pass" or "1".."5")."""


class VerdictForm(BaseModel):
    """The verdict the judge must return: `{id: {"rationale": str, "score": label}}` per field.

    Backends that constrain output turn this into a JSON schema or a grammar; the embedded
    model fills it slot by slot. Either way the reply parses with one parser.
    """

    model_config = _VALUE

    fields: tuple[FormField, ...]
    rationale: bool = True
    """Ask for a one-sentence rationale before each score (remote judges); tiny models skip it."""

    def json_schema(self) -> dict[str, object]:
        """JSON schema of a valid verdict (enums, not min/max, so grammars can enforce it)."""
        properties: dict[str, object] = {}
        for field in self.fields:
            entry: dict[str, object] = {"score": {"type": "string", "enum": list(field.labels)}}
            required = ["score"]
            if self.rationale:
                entry = {"rationale": {"type": "string"}, **entry}
                required = ["rationale", "score"]
            properties[field.id] = {
                "type": "object",
                "properties": entry,
                "required": required,
                "additionalProperties": False,
            }
        return {
            "type": "object",
            "properties": properties,
            "required": [f.id for f in self.fields],
            "additionalProperties": False,
        }


class SamplingParams(BaseModel):
    """Sampling settings that change a judge's output, and so belong in the cache key."""

    model_config = _VALUE

    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    """Votes need some randomness to disagree; 0 makes every vote identical."""
    max_tokens: int = Field(default=1024, ge=16, le=32768)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)


class JudgeRequest(BaseModel):
    """One rendered judge prompt for one vote on one item."""

    model_config = _VALUE

    messages: tuple[ChatMessage, ...]
    """System text and rubric first, the graded item last, so prefix caches apply."""
    form: VerdictForm
    sampling: SamplingParams = Field(default_factory=SamplingParams)
    sample_index: int = Field(default=0, ge=0)
    """Which self-consistency vote this is; feeds the seed and the cache key."""
    template_version: str
    """Prompt template name and content hash, e.g. `judge_v1@3f2a9c01`."""
    rubric_ref: str
    """`id@version` of the rubric the prompt was rendered from."""

    @property
    def seed(self) -> int:
        """Seed derived from the vote index so votes differ yet repeat exactly."""
        return 1_000_003 * (self.sample_index + 1) % 2_147_483_647


class TokenUsage(BaseModel):
    """Tokens a judge call consumed."""

    model_config = _VALUE

    prompt: int = 0
    completion: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(prompt=self.prompt + other.prompt, completion=self.completion + other.completion)

    @property
    def total(self) -> int:
        return self.prompt + self.completion


class JudgeReply(BaseModel):
    """One sampled judge reply, as text, with optional per-field label probabilities."""

    model_config = _VALUE

    text: str
    backend: str
    """Name of the backend that produced the reply (`kind:model`)."""
    label_probs: dict[str, dict[str, float]] | None = None
    """Per form field, the judge's probability of each label (from logprobs), when known."""
    usage: TokenUsage = Field(default_factory=TokenUsage)
    latency_ms: float = 0.0
    cached: bool = False
    """True when the reply came from the cache, not from the judge."""
    cache_unavailable: bool = False
    """True when the cache could not be read or written for this vote, so the judge answered it
    and the reply is not stored; the scorer flags the result `cache_unavailable`."""


class FieldVerdict(BaseModel):
    """The judge's answer for one criterion in one vote."""

    model_config = _VALUE

    label: str
    rationale: str | None = None
    probs: dict[str, float] | None = None
    """Label distribution when the backend exposed logprobs."""


class Verdict(BaseModel):
    """A parsed judge reply: one answer per form field."""

    model_config = _VALUE

    fields: dict[str, FieldVerdict]
