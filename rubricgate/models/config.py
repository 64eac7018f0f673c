"""Settings passed down from the edges; `None` means "the backend's default"."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

InjectionAction = Literal["cap", "null", "flag"]
"""What happens to a response the injection screen flags (see `ScoringConfig.injection_action`)."""


class BackendConfig(BaseModel):
    """How to reach and run one judge backend."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str | None = None
    """OpenAI-compatible endpoint (a vLLM or llama.cpp server, a proxy)."""
    api_key: SecretStr | None = None
    """Never logged, never part of a cache key."""
    timeout_s: float = Field(default=60.0, gt=0)
    """Per-call timeout; retries and the item deadline sit above it."""
    structured_output: Literal["auto", "json_schema", "json_object", "none"] = "auto"
    """How to ask for a JSON verdict; `auto` uses a JSON schema when the provider supports it."""
    model_dir: Path | None = None
    """Where the embedded model file is assembled (default: the user cache dir)."""
    n_threads: int | None = None
    """CPU threads for in-process engines."""
    n_ctx: int = Field(default=4096, ge=512)
    """Context window for in-process engines; must hold the rubric prompt and the response."""


class RetryPolicy(BaseModel):
    """Retries for transient judge errors (jittered exponential backoff under a deadline)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    attempts: int = Field(default=4, ge=1, le=20)
    initial_wait_s: float = Field(default=0.5, ge=0)
    max_wait_s: float = Field(default=8.0, ge=0)
    honour_retry_after: bool = True
    """Wait what a 429's Retry-After says (capped at `max_wait_s`)."""


class ScoringConfig(BaseModel):
    """How items are scored: votes, concurrency, deadline."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    votes: int = Field(default=3, ge=1, le=64)
    concurrency: int | None = Field(default=None, ge=1, le=4096)
    """Judge calls in flight at once for this judge; None: what the judge asks for
    (`JudgeCapabilities.concurrency`: 32 over HTTP, 256 for an in-process vLLM engine)."""
    deadline_s: float = Field(default=300.0, gt=0)
    """Per-item wall-clock budget; a late item is unscorable, its finished votes stay cached."""
    use_label_probs: bool = True
    """Use the judge's label probabilities (expected score) when the backend returns them."""
    min_vote_share: float = Field(default=0.5, gt=0, le=1)
    """Share of votes that must parse for the item to be scored."""
    max_response_chars: int = Field(default=100_000, ge=1)
    """Longest response scored (characters); a longer one is unscorable with a reason, before any
    check or judge call. Bounds the CPU the checks spend and the tokens the judge reads per item."""
    injection_detection: bool = True
    """Screen each response with the cheap injection detector (`judges/injection.py`) and flag
    `injection_suspected` when it imitates a verdict, addresses the grader, claims approval or is a
    bare one-token master key."""
    injection_cap: float | None = Field(default=0.0, ge=0, le=1)
    """Reward ceiling of a flagged item under `injection_action="cap"`, applied after every
    shaping step but the transform: a response that talks to its grader earns at most this,
    whatever the judge was talked into. None flags without capping. Not part of cache keys:
    changing it reuses every judgment."""
    injection_action: InjectionAction = "cap"
    """What a confirmed attack (or, without a guard judge, a suspected one) gets: `cap` (reward
    at most `injection_cap`), `null` (unscorable, with the findings as the reason) or `flag`
    (the judge's reward, flagged `injection_suspected`). Not part of cache keys."""


class CircuitPolicy(BaseModel):
    """When to stop calling a judge that keeps failing, and when to try it again."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    failure_threshold: int = Field(default=16, ge=1)
    """Consecutive transient failures (timeouts, 429, 5xx, resets) that open the circuit. At a
    30 % fault rate, 16 in a row has odds of 0.3**16 ≈ 4e-9 per call, so a flaky judge stays in use."""
    open_s: float = Field(default=10.0, gt=0)
    """How long an open circuit fails calls at once (or hands them to the fallback judge) before
    letting one probe call through; the probe's success closes it."""


class JudgeCapabilities(BaseModel):
    """What a judge backend can do, stated by the backend itself: callers ask, never parse specs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    concurrency: int = Field(default=32, ge=1)
    """Calls in flight when the user sets none: what keeps this judge busy without swamping it."""
    batches: bool = False
    """Schedules concurrent calls as one batch (an in-process engine): give it many in flight."""
    label_probs: bool = False
    """Returns label probabilities, so one call can yield an expected score."""
    free_text: bool = True
    """Writes usable free text (rubric drafts, meta-judge reviews). A small form-filling model
    does not: authoring then lets it choose labels in templates instead."""
    context_tokens: int | None = None
    """Prompt plus reply budget in tokens, when the gateway hosts the model; None: the provider's."""
