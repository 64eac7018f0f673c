"""What rubrics are authored from: principles (with example prompts), or ranked responses to one prompt."""

from __future__ import annotations

from itertools import combinations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rubricgate.models.judging import ChatMessage


class PrincipleSet(BaseModel):
    """Natural-language principles (RewardAnything-style specification) for a new rubric."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$", max_length=64)
    """The rubric id to write."""
    principles: tuple[str, ...] = Field(min_length=1)
    examples: tuple[str, ...] = ()
    """Example prompts of the task family (optional): they show the generator what is graded."""
    description: str | None = None

    @field_validator("principles")
    @classmethod
    def _not_blank(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(" ".join(p.split()) for p in value)
        if any(not p for p in cleaned):
            raise ValueError("a principle is empty")
        return cleaned


class RankedPrompt(BaseModel):
    """One prompt with responses that people ranked: a chosen/rejected pair or a ranked list.

    `ranks[i]` is response i's rank, lower is better; equal ranks are ties. Every pair of
    responses with different ranks is an *induced pair* the consistency filter checks.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    prompt: str | tuple[ChatMessage, ...]
    responses: tuple[str, ...] = Field(min_length=2)
    ranks: tuple[int, ...]
    category: str | None = None

    @model_validator(mode="after")
    def _ranks_fit(self) -> RankedPrompt:
        if len(self.ranks) != len(self.responses):
            raise ValueError(f"{len(self.responses)} responses but {len(self.ranks)} ranks")
        if len(set(self.ranks)) < 2:
            raise ValueError("all responses share one rank: nothing to contrast")
        return self

    @classmethod
    def pair(cls, id: str, prompt: str | tuple[ChatMessage, ...], chosen: str, rejected: str,
             category: str | None = None) -> RankedPrompt:
        """A pairwise preference: chosen beats rejected."""
        return cls(id=id, prompt=prompt, responses=(chosen, rejected), ranks=(0, 1), category=category)

    @property
    def listwise(self) -> bool:
        """More than one induced pair."""
        return len(self.induced_pairs) > 1

    @property
    def induced_pairs(self) -> list[tuple[int, int]]:
        """(better, worse) index pairs, every pair of responses with different ranks."""
        out = []
        for i, j in combinations(range(len(self.responses)), 2):
            if self.ranks[i] < self.ranks[j]:
                out.append((i, j))
            elif self.ranks[j] < self.ranks[i]:
                out.append((j, i))
        return out

    @property
    def best(self) -> list[str]:
        """The top-ranked response(s)."""
        top = min(self.ranks)
        return [r for r, rank in zip(self.responses, self.ranks, strict=True) if rank == top]

    @property
    def others(self) -> list[str]:
        """Every response ranked below the top."""
        top = min(self.ranks)
        return [r for r, rank in zip(self.responses, self.ranks, strict=True) if rank != top]

    def ordered(self) -> list[tuple[int, str]]:
        """(rank, response) best first."""
        return sorted(zip(self.ranks, self.responses, strict=True), key=lambda pair: pair[0])
