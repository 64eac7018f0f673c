"""The composition root: judge backend + retries + limits + cache + scorer, opened and closed once.

Stack (outermost first): CachedBackend -> RetryingBackend -> LimitedBackend -> backend, so a
cache hit skips retries and limits, and a retry's backoff does not hold a concurrency slot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from rubricgate.cache.cached import CachedBackend, CacheCounters
from rubricgate.cache.store import JudgmentStore
from rubricgate.errors import UsageError
from rubricgate.judges.base import JudgeBackend
from rubricgate.judges.prompts import DEFAULT_TEMPLATE, load_template
from rubricgate.judges.registry import DEFAULT_JUDGE, get_backend
from rubricgate.judges.retry import LimitedBackend, RetryingBackend
from rubricgate.library.rubric_files import resolve_rubric
from rubricgate.models.config import BackendConfig, RetryPolicy, ScoringConfig
from rubricgate.models.judging import SamplingParams
from rubricgate.models.reward import Item, RewardResult
from rubricgate.models.rubric import Rubric
from rubricgate.scoring.scorer import RubricScorer


class GatewayConfig(BaseModel):
    """Everything needed to build a gateway; the CLI and server fill it from flags and env."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    judge: str = DEFAULT_JUDGE
    backend: BackendConfig = Field(default_factory=BackendConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    sampling: SamplingParams = Field(default_factory=SamplingParams)
    cache_url: str | None = None
    """SQLAlchemy URL of the judgment cache; None disables caching."""
    rubric_dirs: tuple[Path, ...] = ()
    """Folders searched for rubric names before the shipped library."""
    template: str = DEFAULT_TEMPLATE


class Gateway:
    """Scores items with one judge, through the cache. Use `async with Gateway.open(config)`."""

    def __init__(self, config: GatewayConfig, backend: JudgeBackend, store: JudgmentStore | None) -> None:
        self.config = config
        self.store = store
        self.retrying = RetryingBackend(LimitedBackend(backend, config.scoring.concurrency), config.retry)
        self.cached = CachedBackend(self.retrying, store) if store is not None else None
        self.backend: JudgeBackend = self.cached or self.retrying
        self.scorer = RubricScorer(self.backend, config.scoring, config.sampling, load_template(config.template))
        self._rubrics: dict[str, Rubric] = {}

    @classmethod
    def open(cls, config: GatewayConfig) -> Gateway:
        """Build the stack; raises UsageError for a bad judge spec, rubric dir or cache URL."""
        backend = get_backend(config.judge, config.backend)
        store = JudgmentStore(config.cache_url) if config.cache_url else None
        return cls(config, backend, store)

    async def __aenter__(self) -> Gateway:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    @property
    def counters(self) -> CacheCounters:
        return self.cached.counters if self.cached else CacheCounters()

    def rubric(self, name_or_rubric: str | Rubric) -> Rubric:
        """Resolve a rubric by name or path once; a Rubric passes through."""
        if isinstance(name_or_rubric, Rubric):
            return name_or_rubric
        if name_or_rubric not in self._rubrics:
            self._rubrics[name_or_rubric] = resolve_rubric(name_or_rubric, self.config.rubric_dirs)
        return self._rubrics[name_or_rubric]

    async def score(self, items: Sequence[Item], rubric: str | Rubric | None = None,
                    on_result: Callable[[int, RewardResult], None] | None = None,
                    votes: int | None = None) -> list[RewardResult]:
        """Score a batch in input order; an item's own `rubric` field overrides `rubric`,
        and `votes` overrides the configured vote count for this batch."""
        pairs = []
        for index, item in enumerate(items):
            chosen = item.rubric or rubric
            if chosen is None:
                raise UsageError(f"item {item.id or index + 1} names no rubric: pass --rubric or set 'rubric'")
            pairs.append((self.rubric(chosen), item))
        requests = [self.scorer.requests_for(rub, item, votes) for rub, item in pairs]  # rendered once per item
        if self.cached is not None:
            await self.cached.prefetch([r for item_requests in requests for r in item_requests])
        try:
            return await self.scorer.score_many(pairs, on_result, requests)
        finally:
            if self.cached is not None:
                self.cached.forget_prefetched()

    async def aclose(self) -> None:
        await self.backend.aclose()
        if self.store is not None:
            self.store.close()
