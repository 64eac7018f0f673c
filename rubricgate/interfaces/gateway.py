"""The composition root: judge backend + retries + limits + cache + scorer, opened and closed once.

Stack (outermost first): CachedBackend -> RetryingBackend -> LimitedBackend -> CircuitBreakerBackend
-> backend, so a cache hit skips retries and limits, a retry's backoff does not hold a concurrency
slot, and the breaker sees every attempt. With a fallback judge, FallbackBackend sits on top of two
such stacks (each judge with its own cache entries).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from sqlalchemy.engine import make_url

from rubricgate.cache.cached import CachedBackend, CacheCounters
from rubricgate.cache.store import JudgmentStore
from rubricgate.cache.versions import RubricVersionStore
from rubricgate.errors import CacheError, RubricGateError, UsageError
from rubricgate.judges.base import JudgeBackend
from rubricgate.judges.circuit import CircuitBreakerBackend, FallbackBackend
from rubricgate.judges.fence import installation_key, key_from_secret, load_or_create_key
from rubricgate.judges.injection import InjectionGuard
from rubricgate.judges.pairwise import PAIRWISE_TEMPLATE
from rubricgate.judges.prompts import DEFAULT_TEMPLATE, load_template
from rubricgate.judges.registry import DEFAULT_JUDGE, get_backend
from rubricgate.judges.retry import LimitedBackend, RetryingBackend
from rubricgate.library.rubric_files import resolve_rubric
from rubricgate.models.config import BackendConfig, CircuitPolicy, RetryPolicy, ScoringConfig
from rubricgate.models.judging import JudgeRequest, SamplingParams
from rubricgate.models.reward import Item, RewardResult
from rubricgate.models.rubric import Rubric
from rubricgate.scoring.pairwise import PairwiseScorer
from rubricgate.scoring.scorer import RubricScorer
from rubricgate.scoring.shaped import ShapedScorer, combine_rubrics

logger = logging.getLogger(__name__)


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
    fallback_judge: str | None = None
    """Judge spec that answers a vote when the main judge is unavailable (retries exhausted or its
    circuit open); results it contributed to are flagged `fallback`."""
    fallback_backend: BackendConfig | None = None
    """How to reach the fallback judge. None: no base URL and no key (the main judge's key is never
    sent to another judge), the main judge's timeout and model dir."""
    circuit: CircuitPolicy = Field(default_factory=CircuitPolicy)
    fence_secret: SecretStr | None = None
    """Secret behind the response fence tag. None: a key file beside the SQLite cache
    (`<cache file>.fence-key`), else in the user cache dir. Replicas sharing a cache share it."""
    guard_judge: str | None = None
    """Judge spec that confirms or clears responses the injection detector suspects (one extra
    call per suspected item, through the same stack: retries, cache); None: a suspicion stands.
    Reached with the main judge's connection settings."""
    rubric_versions: bool = True
    """Serve each rubric's current version from the version history in the cache database
    (refinements, rollbacks; see `cache/versions.py`). Needs the cache."""
    version_sync_s: float = Field(default=5.0, ge=0)
    """How often a served rubric re-reads its current version from the database, so a rollback
    or a refinement made by another process applies within this time (0: on every request)."""
    allowed_judges: tuple[str, ...] | None = None
    """Judges a rubric's `reward.judges` may name besides `judge` and `fallback_judge` (`serve
    --allow-judge`); a judge stack is built only for these, so connections stay bounded. None: any
    judge (the CLI, the trainers, Python: the caller is the operator)."""
    rubric_paths: bool = True
    """Rubrics may be named by file path, and a bare name may be a file in the working directory.
    `serve` turns it off: names from requests resolve as ids inside the rubric folders only."""


class Gateway:
    """Scores items with one judge, through the cache. Use `async with Gateway.open(config)`."""

    def __init__(self, config: GatewayConfig, backend: JudgeBackend, store: JudgmentStore | None,
                 fallback: JudgeBackend | None = None) -> None:
        self._chosen_concurrency = config.scoring.concurrency
        """The configured limit (None: each judge's own, `JudgeCapabilities.concurrency`)."""
        if config.scoring.concurrency is None:
            config = config.model_copy(update={"scoring": config.scoring.model_copy(
                update={"concurrency": backend.capabilities.concurrency})})
        self.config = config
        self.store = store
        self.fence_key = _fence_key(config)
        self.breaker = CircuitBreakerBackend(backend, config.circuit) if config.circuit.enabled else None
        self.retrying = RetryingBackend(LimitedBackend(self.breaker or backend, self._limit(backend)), config.retry)
        self._retrying = [self.retrying]
        """Every retry wrapper this gateway built (see `judge_requests`)."""
        self.cached = CachedBackend(self.retrying, store) if store is not None else None
        self.backend: JudgeBackend = self.cached or self.retrying
        self.fallback = FallbackBackend(self.backend, self._stack(fallback)) if fallback is not None else None
        self.backend = self.fallback or self.backend
        self._opened: list[JudgeBackend] = []
        """Backends this gateway built besides the main one; closed with it."""
        self._judges: dict[tuple[str, str, bool], JudgeBackend] = {}
        self.guard = (InjectionGuard(self.judge(config.guard_judge), sampling=config.sampling.model_copy(
            update={"temperature": 0.0}), fence_key=self.fence_key) if config.guard_judge else None)
        self._main_scorer = self._scorer(self.backend)
        self._rubrics: dict[tuple[str, bool], Rubric] = {}
        """Rubrics read by (name, whether the name could be a path)."""
        self.versions = RubricVersionStore(store.url) if store is not None and config.rubric_versions else None
        self._served: dict[str, Rubric] = {}
        """The live version per rubric id; replaced whole by `serve_version` (one assignment)."""
        self._synced_at: dict[str, float] = {}
        self._extra_scorers: dict[str, RubricScorer] = {}
        self._shaped = ShapedScorer(self._judge_batch, config.judge, config.scoring.injection_cap
                                    if config.scoring.injection_action == "cap" else None)

    @classmethod
    def open(cls, config: GatewayConfig) -> Gateway:
        """Build the stack; raises UsageError for a bad judge spec, rubric dir or cache URL."""
        backend = get_backend(config.judge, config.backend)
        fallback = None
        if config.fallback_judge:
            fallback = get_backend(config.fallback_judge, config.fallback_backend or BackendConfig(
                timeout_s=config.backend.timeout_s, model_dir=config.backend.model_dir))
        store = JudgmentStore(config.cache_url) if config.cache_url else None
        return cls(config, backend, store, fallback)

    async def __aenter__(self) -> Gateway:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    @property
    def concurrency(self) -> int:
        """Calls in flight for the run's judge (configured, or the judge's own)."""
        return self.config.scoring.concurrency or 1  # resolved in __init__; never None here

    @property
    def counters(self) -> CacheCounters:
        return self.cached.counters if self.cached else CacheCounters()

    @property
    def judge_requests(self) -> int:
        """Requests sent to judges so far, retries included, over every judge stack built here."""
        return sum(r.attempts for r in self._retrying)

    def rubric(self, name_or_rubric: str | Rubric, *, allow_paths: bool | None = None) -> Rubric:
        """The live version of a rubric named by id or path (the file is read once); a Rubric
        passes through. The live version is the file's, unless the version history says otherwise
        or `serve_version` swapped another in.

        `allow_paths` None follows `config.rubric_paths`; False resolves ids in the rubric folders
        only (names from requests). A file's rubric must name only allowed judges (`check_judges`).
        """
        if isinstance(name_or_rubric, Rubric):
            return name_or_rubric
        paths = self.config.rubric_paths if allow_paths is None else allow_paths
        key = (name_or_rubric, paths)
        if key not in self._rubrics:
            loaded = resolve_rubric(name_or_rubric, self.config.rubric_dirs, allow_paths=paths)
            self.check_judges(loaded)
            self._rubrics[key] = loaded
        loaded = self._rubrics[key]
        if self.versions is not None:
            now = time.monotonic()
            if now - self._synced_at.get(loaded.id, -1e18) >= self.config.version_sync_s:
                self._synced_at[loaded.id] = now
                try:
                    stored = self.versions.served(loaded)
                except CacheError as exc:  # keep serving what we have; the next sync retries
                    logger.warning("cannot read rubric versions: %s", exc)
                    stored = None
                if stored is not None:
                    self._served[loaded.id] = stored
        return self._served.get(loaded.id, loaded)

    def serve_version(self, rubric: Rubric) -> Rubric | None:
        """Serve `rubric` for its id from now on; returns the version it replaces (None: the file's).

        The swap is one assignment: a batch scores with the version it resolved when it started,
        so no result mixes versions, and scoring never waits. Record the version in `versions`
        first when there is a version store, or the next sync brings the stored one back.
        """
        previous = self._served.get(rubric.id)
        self._served[rubric.id] = rubric
        self._synced_at[rubric.id] = time.monotonic()
        return previous

    def live_version(self, rubric_id: str) -> Rubric | None:
        """The live version of a rubric this gateway resolved by name or path; None for any other
        id (inline rubrics are not versioned)."""
        for (name, paths), loaded in list(self._rubrics.items()):
            if loaded.id == rubric_id:
                return self.rubric(name, allow_paths=paths)
        return None

    @property
    def allowed_judges(self) -> frozenset[str] | None:
        """Judges a rubric may name: the run's judge, the fallback and `config.allowed_judges`;
        None when any judge may be named."""
        if self.config.allowed_judges is None:
            return None
        return frozenset(self.own_judges | set(self.config.allowed_judges))

    @property
    def own_judges(self) -> frozenset[str]:
        """The run's judge and its fallback judge."""
        return frozenset(j for j in (self.config.judge, self.config.fallback_judge) if j)

    def check_judges(self, rubric: Rubric, allowed: frozenset[str] | None = None) -> None:
        """Raise UsageError if `rubric`'s reward spec names a judge outside `allowed` (default:
        `allowed_judges`), naming the allowed ones."""
        allowed = self.allowed_judges if allowed is None else allowed
        named = rubric.reward.judges if rubric.reward is not None else []
        refused = [j for j in dict.fromkeys(named) if allowed is not None and j not in allowed]
        if refused:
            raise UsageError(f"rubric {rubric.id!r} names judge(s) this server does not allow: "
                             f"{', '.join(repr(j[:100]) for j in refused[:5])}; allowed: {', '.join(sorted(allowed or ()))} "
                             "(the operator allows more with --allow-judge)")

    def judge(self, spec: str | None = None, backend: BackendConfig | None = None, *,
              free_text: bool = False) -> JudgeBackend:
        """A judge stack this gateway owns and closes: circuit breaker, concurrency limit, retries
        and (for verdicts) the cache, around the backend `spec` names.

        `spec` None or the run's judge gives the run's own stack. `backend` None uses the run's
        connection settings. `free_text` asks for a writer (rubric drafts, meta-judge reviews):
        structured output off and nothing cached; a judge that writes no free text (see
        `JudgeCapabilities.free_text`) is returned as the form-filling judge it is, and the run's
        own judge is then shared rather than loaded twice.
        """
        spec = spec or self.config.judge
        backend = None if backend == self.config.backend else backend
        if spec == self.config.judge and backend is None and (not free_text or not self.backend.capabilities.free_text):
            return self.backend
        settings = backend or self.config.backend
        key = (spec, settings.model_dump_json(), free_text)
        if key not in self._judges:
            raw = get_backend(spec, settings.model_copy(update={"structured_output": "none"}) if free_text else settings)
            self._opened.append(raw)
            self._judges[key] = self._stack(raw, cache=not free_text)
        return self._judges[key]

    def scorer(self, judge: JudgeBackend | None = None, *, template: str | None = None,
               **scoring: Any) -> RubricScorer:
        """A pointwise scorer on `judge` (default: the run's stack) with the gateway's sampling and
        fence key; `scoring` overrides `ScoringConfig` fields (e.g. `votes`, `use_label_probs`).
        With no arguments, the run's own scorer."""
        if judge is None and template is None and not scoring:
            return self._main_scorer
        return self._scorer(judge or self.backend, template, **scoring)

    def pairwise_scorer(self, judge: JudgeBackend | None = None, *, template: str = PAIRWISE_TEMPLATE,
                        **scoring: Any) -> PairwiseScorer:
        """A side-by-side scorer on `judge` (default: the run's stack), same sampling and fence key."""
        return PairwiseScorer(judge or self.backend, self.config.scoring.model_copy(update=scoring),
                              self.config.sampling, load_template(template), fence_key=self.fence_key)

    def scorer_for(self, judge: str) -> RubricScorer:
        """The scorer for a judge spec: the run's own, or another judge a rubric's ensemble names
        (opened on first use with the run's backend settings, sharing the cache)."""
        if judge == self.config.judge:
            return self._main_scorer
        allowed = self.allowed_judges
        if allowed is not None and judge not in allowed:  # request data never builds a judge stack
            raise UsageError(f"judge {judge[:100]!r} is not allowed here; allowed: {', '.join(sorted(allowed))}")
        if judge not in self._extra_scorers:
            self._extra_scorers[judge] = self._scorer(self.judge(judge))
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
            await self._judge_batch(self.config.judge, [pairs[i] for i in plain], votes,
                                    lambda k, result: report(plain[k], result))
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
        if self.versions is not None:
            self.versions.close()
        await self.backend.aclose()
        for backend in self._opened:
            await backend.aclose()
        if self.store is not None:
            self.store.close()

    async def _judge_batch(self, judge: str, pairs: Sequence[tuple[Rubric, Item]], votes: int | None,
                           on_result: Callable[[int, RewardResult], None] | None = None) -> list[RewardResult]:
        """The one scoring path (plain rubrics, and each judge of a shaped one): render every
        item's requests once, load the batch's cached votes in a few queries, score."""
        scorer = self.scorer_for(judge)
        requests = [_requests_or_none(scorer, rubric, item, votes) for rubric, item in pairs]
        cached = self._cache_of(judge)
        if cached is not None:
            await cached.prefetch([r for item_requests in requests for r in item_requests or ()])
        try:
            return await scorer.score_many(pairs, on_result, requests)
        finally:
            if cached is not None:
                cached.forget_prefetched()

    def _cache_of(self, judge: str) -> CachedBackend | None:
        if judge == self.config.judge:
            return self.cached
        stack = self.judge(judge)
        return stack if isinstance(stack, CachedBackend) else None

    def _scorer(self, backend: JudgeBackend, template: str | None = None, **scoring: Any) -> RubricScorer:
        """The one place scorers are built: the gateway's sampling, fence key and guard."""
        return RubricScorer(backend, self.config.scoring.model_copy(update=scoring), self.config.sampling,
                            load_template(template or self.config.template), fence_key=self.fence_key,
                            guard=self.guard)

    def _limit(self, backend: JudgeBackend) -> int:
        """Calls in flight for a judge: the configured number, else what the judge asks for."""
        return self._chosen_concurrency or backend.capabilities.concurrency

    def _stack(self, backend: JudgeBackend, cache: bool = True) -> JudgeBackend:
        """Breaker, limit, retries and cache around another judge (fallback, ensemble members,
        writers). Only the outer layers are shared: each judge keeps its own breaker and limit."""
        limit = self._limit(backend)
        if self.config.circuit.enabled:
            backend = CircuitBreakerBackend(backend, self.config.circuit)
        retrying = RetryingBackend(LimitedBackend(backend, limit), self.config.retry)
        self._retrying.append(retrying)
        stack: JudgeBackend = retrying
        return CachedBackend(stack, self.store) if cache and self.store is not None else stack


def _requests_or_none(scorer: RubricScorer, rubric: Rubric, item: Item, votes: int | None) -> list[JudgeRequest] | None:
    """An item's judge requests; None if rendering them fails unexpectedly, so that item alone is
    answered null with a reason (by `score_many`) instead of failing its batch."""
    try:
        return scorer.requests_for(rubric, item, votes)
    except RubricGateError:
        raise
    except Exception:
        return None


def _fence_key(config: GatewayConfig) -> bytes:
    """The fence key: the configured secret, else the key file beside the SQLite cache (the two
    travel together, e.g. on a Docker volume), else the installation's key."""
    if config.fence_secret is not None:
        return key_from_secret(config.fence_secret.get_secret_value())
    database = _sqlite_file(config.cache_url)
    if database is not None:
        return load_or_create_key(Path(f"{database}.fence-key"))
    return installation_key()


def _sqlite_file(url: str | None) -> str | None:
    if not url or not url.startswith("sqlite"):
        return None
    database = make_url(url).database
    if database and database.startswith("file:"):  # a URI filename (`?uri=true`, e.g. `mode=ro`)
        database = database.removeprefix("file:").partition("?")[0]
    return database if database and database != ":memory:" else None
