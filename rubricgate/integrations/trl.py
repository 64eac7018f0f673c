"""TRL reward functions backed by a rubric: `reward_funcs=[rubric_reward("helpfulness", judge=...)]`.

TRL calls a reward function with `prompts`, `completions`, every other dataset column and a few
trainer hooks as keyword arguments, and logs it under the function's `__name__`. The functions
built here turn that call into rubricgate `Item`s, score them on the shared background loop
(gateways hold loop-bound state and must not move to TRL's loop), and return one
`float | None` per completion: `None` tells TRL "no reward for this sample", never a fake 0.

This module imports neither torch nor trl, so it loads (and is tested) without them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar


from rubricgate.errors import JudgeUnavailable, UsageError
from rubricgate.integrations._runtime import loop_thread, with_gateway
from rubricgate.integrations.client import RewardClient
from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.interfaces.settings import NO_CACHE, Settings
from rubricgate.library.rubric_files import RUBRIC_SUFFIXES, resolve_rubric
from rubricgate.models.config import BackendConfig, ScoringConfig
from rubricgate.models.judging import ChatMessage
from rubricgate.models.reward import Item, RewardResult
from rubricgate.models.rubric import Rubric

__all__ = [
    "DEFAULT_CACHE",
    "AsyncRewardFunction",
    "SyncRewardFunction",
    "remote_rubric_reward",
    "remote_rubric_reward_sync",
    "rubric_reward",
    "rubric_reward_sync",
]

logger = logging.getLogger(__name__)
_F = TypeVar("_F", bound=Callable[..., Any])

DEFAULT_CACHE = "default"
"""The cache every entry point uses by default: RUBRICGATE_CACHE, else a SQLite file in the user cache dir."""

Message = Mapping[str, Any]
"""One chat message as TRL passes it: `{"role": ..., "content": ...}` (extra keys ignored)."""
Prompt = str | Sequence[Message]
Completion = str | Sequence[Message]

AsyncRewardFunction = Callable[..., Coroutine[Any, Any, list[float | None]]]
"""`async def (prompts, completions, **columns) -> list[float | None]`, TRL's reward shape."""
SyncRewardFunction = Callable[..., list[float | None]]
"""The blocking twin of `AsyncRewardFunction`, for trainers that do not await."""

_OWN = frozenset({"judge", "backend", "scoring", "cache_url", "votes", "concurrency", "base_url", "api_key"})
"""Config fields set by `rubric_reward`'s own arguments, so not accepted as extra options."""
_Role = Literal["system", "user", "assistant"]
_ROLES: dict[str, _Role] = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_REFERENCE_COLUMNS = ("reference", "ground_truth")
_METRIC_PREFIX = "rubricgate/"


@dataclass(frozen=True)
class _Reward:
    """What the async and sync functions share: input conversion, scoring, metrics."""

    name: str
    score: Callable[[list[Item]], Coroutine[Any, Any, list[RewardResult]]]
    """Builds the coroutine that scores a batch; it must run on the shared loop thread."""
    log_criteria: bool

    def items(self, prompts: Sequence[Prompt], completions: Sequence[Completion],
              columns: Mapping[str, Any]) -> list[Item]:
        if len(prompts) != len(completions):
            raise UsageError(f"{self.name}: got {len(prompts)} prompts but {len(completions)} completions")
        rubrics = _column(columns, "rubric", len(prompts))
        references = next((_column(columns, c, len(prompts)) for c in _REFERENCE_COLUMNS if c in columns),
                          [None] * len(prompts))
        return [
            Item(prompt=_prompt(p), response=_completion(c), reference=_as_text(ref), rubric=_rubric_name(rub))
            for p, c, ref, rub in zip(prompts, completions, references, rubrics, strict=True)
        ]

    def finish(self, results: list[RewardResult], columns: Mapping[str, Any]) -> list[float | None]:
        log_metric = columns.get("log_metric")
        if self.log_criteria and callable(log_metric) and results:
            for metric, value in _metrics(results).items():
                log_metric(metric, value)
        return [r.reward for r in results]


def rubric_reward(
    rubric: str | Rubric,
    judge: str | None = None,
    *,
    votes: int | None = None,
    cache: str | None = DEFAULT_CACHE,
    judge_base_url: str | None = None,
    api_key: str | None = None,
    concurrency: int | None = None,
    name: str | None = None,
    log_criteria: bool = True,
    **options: Any,
) -> AsyncRewardFunction:
    """An `async def reward(prompts, completions, **columns)` for TRL's GRPOTrainer.

    Every argument left out comes from `Settings` (the `RUBRICGATE_*` variables, then the
    defaults the CLI and `serve` use too), so this function scores exactly as `rubricgate score`.

    Args:
        rubric: rubric id (user dirs, then the shipped library), file path, or `Rubric`.
        judge: judge spec `kind:model` (default: RUBRICGATE_JUDGE, else the embedded smoke-test judge).
        votes: self-consistency votes per completion (default: RUBRICGATE_VOTES, else 3; cached per vote).
        cache: SQLAlchemy URL or SQLite path; `None` or `"none"` disables the cache; the default is
            RUBRICGATE_CACHE, else the user cache dir (the CLI's cache).
        judge_base_url: OpenAI-compatible endpoint for `openai:`/`litellm:` judges.
        api_key: the judge's API key (never logged, never part of a cache key).
        concurrency: judge calls in flight at once (default: RUBRICGATE_CONCURRENCY, else the
            judge's own: 32 over HTTP, 8 embedded, 256 for `vllm:`).
        name: the function's `__name__` (TRL logs `rewards/<name>/mean`); default `rubric_<id>`.
        log_criteria: send per-criterion means and the unscorable share to TRL's `log_metric`.
        **options: further `GatewayConfig`, `ScoringConfig` or `BackendConfig` fields
            (e.g. `deadline_s=60`, `timeout_s=20`, `retry=RetryPolicy(...)`, `rubric_dirs=(...)`).

    A dataset column `rubric` overrides the rubric per sample; `reference` or `ground_truth`
    becomes the item's reference. Unscorable completions get `None`.
    """
    return _async(_local(rubric, judge, votes, cache, judge_base_url, api_key, concurrency, name, log_criteria,
                         options))


def rubric_reward_sync(
    rubric: str | Rubric,
    judge: str | None = None,
    *,
    votes: int | None = None,
    cache: str | None = DEFAULT_CACHE,
    judge_base_url: str | None = None,
    api_key: str | None = None,
    concurrency: int | None = None,
    name: str | None = None,
    log_criteria: bool = True,
    **options: Any,
) -> SyncRewardFunction:
    """Blocking twin of `rubric_reward` for trainers that call reward functions synchronously.

    Scores on the shared background loop, so it works from any thread; it raises `UsageError`
    when called inside a running event loop (await `rubric_reward`'s function there instead).
    """
    return _sync(_local(rubric, judge, votes, cache, judge_base_url, api_key, concurrency, name, log_criteria,
                        options))


def remote_rubric_reward(
    base_url: str,
    rubric: str | Rubric,
    api_key: str | None = None,
    *,
    votes: int | None = None,
    name: str | None = None,
    log_criteria: bool = True,
    timeout_s: float = 600.0,
) -> AsyncRewardFunction:
    """Like `rubric_reward`, but scored by a running `rubricgate serve` at `base_url`.

    The judge, cache and rubric library live on the server (one shared cache for many
    trainer processes); `votes=None` uses the server's default. If the server cannot be
    reached the batch gets `None` rewards and a warning instead of killing a long run.
    """
    return _async(_remote(base_url, rubric, api_key, votes, name, log_criteria, timeout_s))


def remote_rubric_reward_sync(
    base_url: str,
    rubric: str | Rubric,
    api_key: str | None = None,
    *,
    votes: int | None = None,
    name: str | None = None,
    log_criteria: bool = True,
    timeout_s: float = 600.0,
) -> SyncRewardFunction:
    """Blocking twin of `remote_rubric_reward` (refuses inside a running event loop)."""
    return _sync(_remote(base_url, rubric, api_key, votes, name, log_criteria, timeout_s))


def _async(core: _Reward) -> AsyncRewardFunction:
    """TRL's shape: awaited on the trainer's loop, scored on the shared loop thread."""

    async def reward(prompts: Sequence[Prompt], completions: Sequence[Completion],
                     **columns: Any) -> list[float | None]:
        items = core.items(prompts, completions, columns)
        return core.finish(await loop_thread().arun(core.score(items)), columns)

    return _named(reward, core.name)


def _sync(core: _Reward) -> SyncRewardFunction:
    def reward(prompts: Sequence[Prompt], completions: Sequence[Completion], **columns: Any) -> list[float | None]:
        items = core.items(prompts, completions, columns)
        return core.finish(loop_thread().run(core.score(items)), columns)

    return _named(reward, core.name)


def _local(rubric: str | Rubric, judge: str | None, votes: int | None, cache: str | None, judge_base_url: str | None,
           api_key: str | None, concurrency: int | None, name: str | None, log_criteria: bool,
           options: dict[str, Any]) -> _Reward:
    """Validate everything up front, so a typo fails at setup and not hours into a run."""
    config = _gateway_config(judge, votes, cache, judge_base_url, api_key, concurrency, options)
    default = rubric if isinstance(rubric, Rubric) else resolve_rubric(rubric, config.rubric_dirs)
    # Open the shared gateway now (judge spec, extras, cache URL); blocking once at setup is fine,
    # and `submit` rather than `run` keeps this usable from notebooks, whose cells run in a loop.
    loop_thread().submit(with_gateway(config, _opened)).result()

    def score(items: list[Item]) -> Coroutine[Any, Any, list[RewardResult]]:
        async def use(gateway: Gateway) -> list[RewardResult]:
            return await gateway.score(items, default)

        return with_gateway(config, use)

    return _Reward(name=name or _function_name(default.id), score=score, log_criteria=log_criteria)


async def _opened(gateway: Gateway) -> None:
    return None


def _remote(base_url: str, rubric: str | Rubric, api_key: str | None, votes: int | None, name: str | None,
            log_criteria: bool, timeout_s: float) -> _Reward:
    # The client's HTTP pool is bound to the loop that first uses it: always the shared loop.
    client = RewardClient(base_url, api_key, timeout_s=timeout_s)
    default = _remote_rubric(rubric)
    label = default.id if isinstance(default, Rubric) else _rubric_label(default)
    per_sample: dict[str, str | Rubric] = {}  # `rubric` column values, files read once

    def rubric_for(key: str | None) -> str | Rubric:
        if key is None:
            return default
        if key not in per_sample:
            per_sample[key] = _remote_rubric(key)
        return per_sample[key]

    def score(items: list[Item]) -> Coroutine[Any, Any, list[RewardResult]]:
        async def run() -> list[RewardResult]:
            # The server takes one rubric per request: one request per rubric named by the batch.
            groups: dict[str | None, list[int]] = {}
            for index, item in enumerate(items):
                groups.setdefault(item.rubric, []).append(index)
            keys = list(groups)
            outcomes = await asyncio.gather(*(client.score(
                [items[i].model_copy(update={"rubric": None}) for i in groups[key]],
                rubric_for(key), votes) for key in keys), return_exceptions=True)
            results: list[RewardResult | None] = [None] * len(items)
            for key, outcome in zip(keys, outcomes, strict=True):
                if isinstance(outcome, JudgeUnavailable):
                    # A server hiccup must not end a multi-day run: skip these samples, loudly.
                    logger.warning("rubricgate server unavailable; %d samples get no reward: %s",
                                   len(groups[key]), outcome)
                    outcome = [RewardResult(reward=None, reason=f"JudgeUnavailable: {outcome}", rubric=label,
                                            judge=f"remote:{client.base_url}", votes=0) for _ in groups[key]]
                elif isinstance(outcome, BaseException):
                    raise outcome
                for index, result in zip(groups[key], outcome, strict=True):
                    results[index] = result
            return [r for r in results if r is not None]

        return run()

    return _Reward(name=name or _function_name(label), score=score, log_criteria=log_criteria)


def _remote_rubric(rubric: str | Rubric) -> str | Rubric:
    """The server resolves rubric ids itself; a file path is read here and sent inline."""
    if isinstance(rubric, str) and (Path(rubric).suffix in RUBRIC_SUFFIXES or "/" in rubric):
        return resolve_rubric(rubric)
    return rubric


def _gateway_config(judge: str | None, votes: int | None, cache: str | None, judge_base_url: str | None,
                    api_key: str | None, concurrency: int | None, options: dict[str, Any]) -> GatewayConfig:
    """`Settings` plus these arguments; each extra option goes to the config that owns it, and
    an unknown one is a usage error (a typo must fail at setup, not hours into a run)."""
    scoring = {k: options.pop(k) for k in list(options) if k in ScoringConfig.model_fields and k not in _OWN}
    backend = {k: options.pop(k) for k in list(options) if k in BackendConfig.model_fields and k not in _OWN}
    unknown = sorted(k for k in options if k not in GatewayConfig.model_fields or k in _OWN)
    if unknown:
        allowed = sorted({*ScoringConfig.model_fields, *BackendConfig.model_fields, *GatewayConfig.model_fields} - _OWN)
        raise UsageError(f"unknown option(s) {', '.join(unknown)} for rubric_reward; allowed: {', '.join(allowed)}")
    extra_dirs = tuple(options.pop("rubric_dirs", ()))
    timeout_s = backend.pop("timeout_s", None)
    settings = Settings.load()
    return settings.gateway_config(
        judge=judge, judge_base_url=judge_base_url, judge_api_key=api_key, votes=votes, concurrency=concurrency,
        timeout_s=timeout_s, cache=None if cache == DEFAULT_CACHE else cache or NO_CACHE, rubric_dirs=extra_dirs,
        scoring=scoring, backend=backend, **options)


def _prompt(value: object) -> str | tuple[ChatMessage, ...]:
    if isinstance(value, str):
        return value
    return _messages(value, "prompt")


def _completion(value: object) -> str:
    """The graded text: the completion, or its final assistant message."""
    if isinstance(value, str):
        return value
    for message in reversed(_messages(value, "completion")):
        if message.role == "assistant":
            return message.content
    raise UsageError("a conversational completion has no assistant message; nothing to grade")


def _messages(value: object, what: str) -> tuple[ChatMessage, ...]:
    if not isinstance(value, Sequence) or not all(isinstance(m, Mapping) for m in value):
        raise UsageError(f"each {what} must be a string or a list of {{'role', 'content'}} messages, "
                         f"got {type(value).__name__}")
    # Tool results and other roles become user turns: the judge sees them as context only.
    return tuple(ChatMessage(role=_ROLES.get(str(m.get("role")), "user"), content=_content(m.get("content")))
                 for m in value)


def _content(content: object) -> str:
    """Text of a message; multimodal parts keep their text parts only."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping) and p.get("type") == "text")
    return str(content)


def _column(columns: Mapping[str, Any], key: str, size: int) -> list[Any]:
    values = columns.get(key)
    if values is None:
        return [None] * size
    if isinstance(values, str) or not isinstance(values, Sequence) or len(values) != size:
        raise UsageError(f"column {key!r} must be a list with one value per completion ({size})")
    return list(values)


def _as_text(value: object) -> str | None:
    """References may be numbers or structures (math answers, test cases): the judge reads text."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _rubric_name(value: object) -> str | None:
    if value is None or (isinstance(value, str) and not value):
        return None
    if not isinstance(value, str):
        raise UsageError(f"column 'rubric' must hold rubric names or paths, got {type(value).__name__}")
    return value


def _rubric_label(rubric: str) -> str:
    """An id for naming a remote reward: the local rubric's id if it resolves here, else the name."""
    try:
        return resolve_rubric(rubric).id
    except UsageError:
        path = Path(rubric)
        return path.stem if path.suffix in RUBRIC_SUFFIXES else rubric


def _function_name(rubric_id: str) -> str:
    return "rubric_" + "".join(ch if ch.isalnum() else "_" for ch in rubric_id)


def _named(function: _F, name: str) -> _F:
    function.__name__ = function.__qualname__ = name
    return function


def _metrics(results: list[RewardResult]) -> dict[str, float]:
    """Per-criterion means over scored values, plus the share of completions with no reward."""
    sums: dict[str, list[float]] = {}
    for result in results:
        for criterion in result.criteria:
            if criterion.value is not None and math.isfinite(criterion.value):
                sums.setdefault(criterion.id, []).append(criterion.value)
    metrics = {f"{_METRIC_PREFIX}{cid}": sum(values) / len(values) for cid, values in sorted(sums.items())}
    metrics[f"{_METRIC_PREFIX}unscorable"] = sum(r.reward is None for r in results) / len(results)
    return metrics
