"""Judge evaluation on preference pairs: the pairs, the protocol variants, and the report.

A pair file has one `{id, prompt, chosen, rejected, category?}` object per line (the format of
RewardBench-style data sets). Every preference below is a preference for the *chosen* response
in [0, 1]: 1 means the judge ranked chosen above rejected, 0.5 a tie, None unscorable.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rubricgate.models.judging import ChatMessage, TokenUsage

Mode = Literal["pointwise", "pairwise"]
PromptKind = Literal["rubric", "plain"]
ScoreKind = Literal["sampled", "expected"]


class PreferencePair(BaseModel):
    """One labelled pair: a prompt, the response humans (or the data set) preferred, and the other."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    prompt: str | tuple[ChatMessage, ...]
    chosen: str
    """The better response."""
    rejected: str
    """The worse response."""
    category: str | None = None
    """Reported separately (e.g. LLMBar's natural / adversarial / mtbench-human)."""

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class Matchup(BaseModel):
    """Two responses to one prompt, shown to a pairwise judge as Output (a) and Output (b)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str | None = None
    prompt: str | tuple[ChatMessage, ...]
    response_a: str
    response_b: str
    reference: str | None = None


class EvalVariant(BaseModel):
    """One judging protocol: how the pairs are shown, with which prompt, votes and scores."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Mode = "pointwise"
    """`pointwise`: each response scored alone, the higher reward wins. `pairwise`: both shown
    side by side, judged in both orders."""
    prompt: PromptKind = "rubric"
    """`rubric`: the rubric's criteria. `plain`: a minimal one-criterion rubric ("the better answer")."""
    votes: int = Field(default=3, ge=1, le=64)
    scores: ScoreKind = "expected"
    """`expected`: the judge's label probabilities (expected score) where it returns them, else the
    sampled labels. `sampled`: always the sampled labels (majority / mean over votes)."""

    @property
    def name(self) -> str:
        """Short human-readable id, e.g. `pointwise · rubric · 3 votes · sampled`."""
        votes = f"{self.votes} vote" + ("s" if self.votes != 1 else "")
        return f"{self.mode} · {self.prompt} · {votes} · {self.scores}"


class AccuracyStats(BaseModel):
    """Accuracy over a set of pairs with its bootstrap interval."""

    model_config = ConfigDict(frozen=True)

    pairs: int
    scored: int
    """Pairs the judge could score (the accuracy's denominator)."""
    accuracy: float | None
    """Mean credit over scored pairs: 1 for chosen ranked higher, 0.5 for a tie, 0 otherwise."""
    ci: tuple[float, float] | None
    """Percentile bootstrap interval of `accuracy` (see the report's `confidence`)."""
    tie_rate: float | None


class VariantReport(BaseModel):
    """What one protocol variant achieved on the pairs, and what it cost."""

    model_config = ConfigDict(frozen=True)

    name: str
    variant: EvalVariant
    rubric: str
    """`id@version` of the rubric the judge saw (the plain rubric for `prompt: plain`)."""
    template: str
    """Prompt template name and content hash."""
    pairs: int
    scored: int
    unscorable: int
    """Pairs with no usable verdict (a judge error or unparseable reply on either side)."""
    accuracy: float | None
    ci: tuple[float, float] | None
    tie_rate: float | None
    accuracy_one_order: float | None = None
    """Pairwise: accuracy from the randomised presentation order alone (one judge pass per pair)."""
    position_bias_rate: float | None = None
    """Pairwise: share of pairs whose winner changes when the two responses swap places."""
    first_position_rate: float | None = None
    """Pairwise: share of decided order-judgments won by whichever response was shown first."""
    agreement: float | None
    """Mean self-consistency agreement (share of votes on the winning label); None with 1 vote."""
    label_probs: bool
    """True when the judge returned label probabilities and this variant used them."""
    by_category: dict[str, AccuracyStats]
    judge_calls: int
    """Judge calls this protocol needs on its own (votes x judgments), cached or not."""
    judge_calls_run: int
    """Calls that reached the judge in this run (the rest came from the cache or other variants)."""
    tokens: TokenUsage
    """Judge tokens behind this variant's verdicts (cached ones included)."""
    wall_s: float
    unscorable_reason: str | None = None
    """The first unscorable judgment's reason, if any."""


class PairRecord(BaseModel):
    """One pair's outcome under every variant."""

    model_config = ConfigDict(frozen=True)

    id: str
    category: str | None
    chosen_first: bool
    """Whether chosen was presented first (as Output (a) / scored first) in the primary order."""
    preferences: dict[str, float | None]
    """Variant name -> preference for chosen in [0, 1] (None: unscorable)."""


class EvalReport(BaseModel):
    """The whole evaluation: one row per variant, one record per pair."""

    model_config = ConfigDict(frozen=True)

    pairs_file: str
    judge: str
    rubric: str
    pairs: int
    seed: int
    """Seeds the pair sample (`--limit`), the presentation order and the bootstrap."""
    confidence: float
    resamples: int
    variants: list[VariantReport]
    records: list[PairRecord]

    @property
    def unscorable(self) -> int:
        """Unscorable pairs summed over variants."""
        return sum(v.unscorable for v in self.variants)
