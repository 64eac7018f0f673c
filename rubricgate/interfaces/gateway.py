"""The composition root: judge backend + retries + limits + cache + scorer, opened and closed once.

Stack (outermost first): CachedBackend -> RetryingBackend -> LimitedBackend -> backend, so a
cache hit skips retries and limits, and a retry's backoff does not hold a concurrency slot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

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
from rubricgate.scoring.shaped import ShapedScorer, combine_rubrics


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
        self.scorer = self._scorer(self.backend)
        self._rubrics: dict[str, Rubric] = {}
        self._extra_judges: dict[str, JudgeBackend] = {}
        self._extra_scorers: dict[str, RubricScorer] = {}
        self._shaped = ShapedScorer(self.scorer_for, config.judge)

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

    def scorer_for(self, judge: str) -> RubricScorer:
        """The scorer for a judge spec: the run's own, or another judge a rubric's ensemble names
        (opened on first use with the run's backend settings, sharing the cache)."""
        if judge == self.config.judge:
            return self.scorer
        if judge not in self._extra_scorers:
            backend = get_backend(judge, self.config.backend)
            self._extra_judges[judge] = backend
            stack: JudgeBackend = RetryingBackend(LimitedBackend(backend, self.config.scoring.concurrency),
                                                  self.config.retry)
            if self.store is not None:
                stack = CachedBackend(stack, self.store)
            self._extra_scorers[judge] = self._scorer(stack)
        return self._extra_scorers[judge]

    async def score(self, items: Sequence[Item], rubric: str | Rubric | None = None,
                    on_result: Callable[[int, RewardResult], None] | None = None,
                    votes: int | None = None) -> list[RewardResult]:
        """Score a batch in input order; an item's own `rubric` field overrides `rubric`,
        and `votes` overrides the configured vote count for this batch. Rubrics with a
        `reward:` spec go through shaping (ensembles, gates, metrics, transforms)."""
        pairs = []
        for index, item in enumerate(items):
            chosen = item.rubric or rubric
            if chosen is None:
                raise UsageError(f"item {item.id or index + 1} names no rubric: pass --rubric or set 'rubric'")
            pairs.append((self.rubric(chosen), item))
        results: list[RewardResult | None] = [None] * len(pairs)
        plain = [i for i, (rub, _) in enumerate(pairs) if rub.reward is None]
        shaped: dict[str, list[int]] = {}
        for i, (rub, _) in enumerate(pairs):
            if rub.reward is not None:
                shaped.setdefault(rub.ref, []).append(i)

        def report(index: int, result: RewardResult) -> None:
            results[index] = result
            if on_result is not None:
                on_result(index, result)

        if plain:
            await self._score_plain([pairs[i] for i in plain], votes, lambda k, result: report(plain[k], result))
        for indices in shaped.values():
            rub = pairs[indices[0]][0]
            for index, result in zip(indices, await self._shaped.score_many(rub, [pairs[i][1] for i in indices], votes),
                                     strict=True):
                report(index, result)
        return [r for r in results if r is not None]

    async def score_combined(self, items: Sequence[Item], rubrics: Sequence[str | Rubric],
                             how: Literal["and", "weighted"] = "and", weights: Sequence[float] | None = None,
                             votes: int | None = None) -> list[RewardResult]:
        """Score every item against several rubrics and combine them (`and` or weighted mean)."""
        resolved = [self.rubric(r) for r in rubrics]
        per_rubric = [await self.score(items, rub, votes=votes) for rub in resolved]
        return combine_rubrics(per_rubric, resolved, how, weights)

    async def aclose(self) -> None:
        await self.backend.aclose()
        for backend in self._extra_judges.values():
            await backend.aclose()
        if self.store is not None:
            self.store.close()

    async def _score_plain(self, pairs: list[tuple[Rubric, Item]], votes: int | None,
                           on_result: Callable[[int, RewardResult], None]) -> list[RewardResult]:
        requests = [self.scorer.requests_for(rub, item, votes) for rub, item in pairs]  # rendered once per item
        if self.cached is not None:
            await self.cached.prefetch([r for item_requests in requests for r in item_requests])
        try:
            return await self.scorer.score_many(pairs, on_result, requests)
        finally:
            if self.cached is not None:
                self.cached.forget_prefetched()

    def _scorer(self, backend: JudgeBackend) -> RubricScorer:
        return RubricScorer(backend, self.config.scoring, self.config.sampling, load_template(self.config.template))
