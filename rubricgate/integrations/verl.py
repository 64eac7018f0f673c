"""verl adapter: rubric rewards as a `custom_reward_function` (sync, async and batch).

Point verl at this file and name a function; the prompt and rubric come from each row's
`extra_info`, everything else from `reward_kwargs` or `RUBRICGATE_*` variables:

    custom_reward_function.path=$(python -c "import rubricgate.integrations.verl as m; print(m.__file__)")
    custom_reward_function.name=compute_score         # naive / dapo reward managers (sync)
    # name=compute_score_async                         # the reward loop (awaits coroutine functions)
    # name=compute_score_batch + reward_model.reward_manager=batch

What verl does with it (read in the verl source, github.com/volcengine/verl, now verl-project/verl):

- Loading. `verl/trainer/ppo/reward.py::get_custom_reward_fn` imports the file by path:
  older releases with `importlib.util.spec_from_file_location("custom_module", path)` (and
  `sys.modules["custom_module"] = module`), newer ones through
  `verl/utils/import_utils.py::load_extern_object` -> `load_module`, whose module is named
  `custom_module_<hash>` and is *not* put in `sys.modules`. `reward_kwargs` from the config
  are merged into every call as keyword arguments (they win over verl's own). So this file
  uses absolute imports only, and when it runs under such a private name it re-exports the
  package module's functions (end of file): one shared gateway per process, and the
  functions pickle by reference for Ray and process pools.
- Calls. `verl/workers/reward_manager/naive.py` and `dapo.py` call
  `compute_score(data_source=..., solution_str=..., ground_truth=..., extra_info=...)` by
  keyword, one sample at a time; `solution_str` is the response decoded with
  `skip_special_tokens=True`; the prompt is *not* passed (so the dataset must put it in
  `extra_info`); verl adds `extra_info["num_turns"]` and `extra_info["rollout_reward_scores"]`.
  `batch.py` calls `compute_score(data_sources=, solution_strs=, ground_truths=,
  extra_infos=, **reward_kwargs)` once per batch and expects a list: use
  `compute_score_batch`. The reward loop (`verl/experimental/reward_loop/reward_manager/
  naive.py`) checks `inspect.iscoroutinefunction` and awaits an async function (a sync one
  runs in its executor); it adds `reward_router_address=` and `reward_model_tokenizer=` when
  verl serves a reward model. `prime.py` calls `fn(data_source, solution_str, ground_truth,
  extra_info)` positionally in a fresh 64-process pool per step and needs a plain number
  (a dict makes it score the whole batch 0): it is not supported here.
- Results. A dict must carry `"score"`; `reward_tensor[i, last] = score` needs a real number
  (None raises, NaN poisons the GRPO group). Every key is appended to `reward_extra_info`:
  the reward loop builds arrays from the *first* sample's keys (`reward_loop.py::
  compute_rm_score`), the agent loop fills missing keys with None, validation takes
  `np.mean` per key (`metric_utils.py::process_validation_metrics`, string keys skipped) and
  appends its own `"reward"` list, asserting equal lengths. Hence every sample returns the
  same keys, numbers are always finite floats, and no key is called `reward`.

Unscorable is not zero, but verl has no "ignore this sample": an unscorable item returns
`score = unscorable_score` (default 0.0, `reward_kwargs.unscorable_score` or
`RUBRICGATE_UNSCORABLE_SCORE`), `unscorable = 1.0` and its `reason`, so it is visible in logs
and in dumped rollouts. Configuration (first found wins): `extra_info` (`prompt` or
`question`, `rubric`, `principle`, `judge`), then `reward_kwargs` (`rubric`, `judge`,
`judge_base_url`, `judge_model`, `votes`, `cache`, `url`, `api_key`, `unscorable_score`),
then the environment (`RUBRICGATE_RUBRIC`, `RUBRICGATE_JUDGE`, `RUBRICGATE_JUDGE_BASE_URL`,
`RUBRICGATE_JUDGE_API_KEY`, `RUBRICGATE_JUDGE_MODEL`, `RUBRICGATE_VOTES`, `RUBRICGATE_CACHE`,
`RUBRICGATE_URL`, `RUBRICGATE_API_KEY`, `RUBRICGATE_RUBRIC_PATH`, `RUBRICGATE_MODEL_DIR`),
then verl's `reward_router_address` (the judge model verl serves itself, reached as an
OpenAI-compatible endpoint under its tokenizer's `name_or_path`), then the embedded default
judge. With a URL, samples go to a running `rubricgate serve` through `RewardClient` (the
server's judge and cache apply); otherwise they are scored in-process on the shared
background loop. Per-criterion keys (`criterion/<id>`) follow the run rubric (the
`reward_kwargs`/environment one), so they are the same for every sample of the run.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple, get_args

from pydantic import ValidationError

from rubricgate.errors import UsageError
from rubricgate.integrations._runtime import close_at_exit, loop_thread, with_gateway
from rubricgate.integrations.client import RewardClient
from rubricgate.interfaces.gateway import GatewayConfig
from rubricgate.interfaces.settings import Settings
from rubricgate.library.rubric_files import principle_rubric, resolve_rubric
from rubricgate.models.reward import Flag, Item, RewardResult
from rubricgate.models.rubric import Rubric

__all__ = ["compute_score", "compute_score_async", "compute_score_batch"]

_PACKAGE_MODULE = "rubricgate.integrations.verl"
_FLAGS: tuple[str, ...] = get_args(Flag)
VerlScore = dict[str, float | str]
"""What each sample returns: `score` plus the same keys for every sample."""


def compute_score(data_source: object, solution_str: str, ground_truth: object = None,
                  extra_info: Mapping[str, Any] | None = None, **kwargs: Any) -> VerlScore:
    """Score one verl sample against its rubric (blocking; verl's naive and dapo managers).

    Args:
        data_source: the row's `data_source` (logged by verl; not used for scoring).
        solution_str: the decoded response to grade.
        ground_truth: `reward_model.ground_truth`; a non-empty string becomes the reference.
        extra_info: the row's `extra_info`: `prompt` (text or chat messages) or `question`,
            optional `rubric` (name or path), `principle` (text) and `judge` (`kind:model`).
        **kwargs: verl's `reward_kwargs` and call extras (see the module docstring).

    Returns:
        `{"score": float, ...}` with the same keys for every sample of the run.

    Raises:
        UsageError: no prompt or rubric, a bad judge spec, or called inside an event loop.
    """
    settings = _settings(kwargs)
    sample = _sample(solution_str, ground_truth, extra_info, settings)
    [result] = loop_thread().run(_score_samples([sample], settings))
    return _as_verl(result, settings)


async def compute_score_async(data_source: object, solution_str: str, ground_truth: object = None,
                              extra_info: Mapping[str, Any] | None = None, **kwargs: Any) -> VerlScore:
    """`compute_score` as a coroutine function, for verl's reward loop (`name=compute_score_async`).

    The reward loop awaits coroutine functions, so many samples are judged concurrently; the
    work runs on rubricgate's background loop, whatever loop awaits it.
    """
    settings = _settings(kwargs)
    sample = _sample(solution_str, ground_truth, extra_info, settings)
    [result] = await loop_thread().arun(_score_samples([sample], settings))
    return _as_verl(result, settings)


def compute_score_batch(data_sources: Iterable[object], solution_strs: Iterable[str],
                        ground_truths: Iterable[object], extra_infos: Iterable[Mapping[str, Any] | None] | None = None,
                        **kwargs: Any) -> list[VerlScore]:
    """Score a whole batch in one gateway call (`reward_model.reward_manager=batch`).

    Same arguments as `compute_score`, as parallel sequences (verl passes numpy arrays);
    returns one dict per sample, in order, all with the same keys.
    """
    settings = _settings(kwargs)
    responses = list(solution_strs)
    truths = list(ground_truths)
    infos = list(extra_infos) if extra_infos is not None else [None] * len(responses)
    if not len(responses) == len(truths) == len(infos):
        raise UsageError(f"verl batch has {len(responses)} responses, {len(truths)} ground truths "
                         f"and {len(infos)} extra_infos; they must align")
    samples = [_sample(r, t, i, settings) for r, t, i in zip(responses, truths, infos, strict=True)]
    results = loop_thread().run(_score_samples(samples, settings))
    return [_as_verl(result, settings) for result in results]


class _Settings(NamedTuple):
    """Run-wide configuration: reward_kwargs over `Settings` (the environment and the defaults)."""

    env: Settings
    server_url: str | None
    server_api_key: str | None
    judge: str | None
    """Explicit judge spec; None falls back to verl's router, then the configured judge."""
    judge_base_url: str | None
    judge_model: str | None
    router_address: str | None
    cache: str | None
    """reward_kwargs' cache (URL, path or none); None: the configured cache."""
    rubric: str | None
    votes: int | None
    unscorable_score: float
    rubric_dirs: tuple[Path, ...]


class _Sample(NamedTuple):
    item: Item
    rubric: str | Rubric
    judge: str
    judge_base_url: str | None


def _settings(kwargs: Mapping[str, Any]) -> _Settings:
    env = Settings.load()

    def option(key: str) -> str | None:
        value = kwargs.get(key)
        return None if value is None or value == "" else str(value)

    router = kwargs.get("reward_router_address")
    judge_model = option("judge_model") or env.judge_model
    if judge_model is None and router:
        # verl serves its reward model under the model path its tokenizer was loaded from
        judge_model = getattr(kwargs.get("reward_model_tokenizer"), "name_or_path", None) or None
    votes = option("votes")
    fill = option("unscorable_score")
    try:
        votes_n = int(votes) if votes is not None else None
        fill_value = float(fill) if fill is not None else (env.unscorable_score or 0.0)
    except ValueError as exc:
        raise UsageError(f"verl reward_kwargs: votes must be an integer and unscorable_score a number ({exc})") \
            from None
    if not math.isfinite(fill_value):
        raise UsageError("unscorable_score must be a finite number: verl cannot train on NaN or inf")
    return _Settings(
        env=env,
        server_url=option("url") or env.url,
        server_api_key=option("api_key") or (env.api_key.get_secret_value() if env.api_key else None),
        judge=option("judge"),
        judge_base_url=option("judge_base_url"),
        judge_model=judge_model,
        router_address=str(router) if router else None,
        cache=option("cache"),
        rubric=option("rubric") or env.rubric,
        votes=votes_n,
        unscorable_score=fill_value,
        rubric_dirs=env.rubric_dirs(),
    )


def _sample(solution_str: str, ground_truth: object, extra_info: Mapping[str, Any] | None,
            settings: _Settings) -> _Sample:
    info: Mapping[str, Any] = extra_info if extra_info is not None else {}
    rubric: str | Rubric
    if _text(info.get("rubric")):
        rubric = str(info["rubric"]).strip()
    elif _text(info.get("principle")):
        rubric = _principle_rubric(str(info["principle"]).strip())
    elif settings.rubric:
        rubric = settings.rubric
    else:
        raise UsageError("no rubric for this sample: put a rubric name (or a principle) in extra_info, "
                         "or set reward_kwargs.rubric / RUBRICGATE_RUBRIC")
    judge, base_url = _judge(info, settings)
    reference = ground_truth.strip() if isinstance(ground_truth, str) and ground_truth.strip() else None
    try:
        item = Item.model_validate({"prompt": _prompt(info), "response": solution_str, "reference": reference})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise UsageError(f"verl sample: {where}: {first['msg']} (prompt: a string or a list of "
                         f"{{'role', 'content'}} messages; solution_str: a string)") from None
    return _Sample(item, rubric, judge, base_url)


def _judge(info: Mapping[str, Any], settings: _Settings) -> tuple[str, str | None]:
    if _text(info.get("judge")):
        return str(info["judge"]).strip(), settings.judge_base_url
    if settings.judge:
        return settings.judge, settings.judge_base_url
    if settings.router_address and "judge" not in settings.env.model_fields_set:  # no RUBRICGATE_JUDGE
        if not settings.judge_model:
            raise UsageError("verl passed reward_router_address but no model name: set reward_kwargs.judge_model")
        address = settings.router_address.rstrip("/")
        base = address if "://" in address else f"http://{address}"
        return (f"litellm:openai/{settings.judge_model}",
                settings.judge_base_url or settings.env.judge_base_url or f"{base}/v1")
    return settings.env.judge, settings.judge_base_url


def _prompt(info: Mapping[str, Any]) -> object:
    """`extra_info["prompt"]` (or `question`): text, or chat messages (lists or numpy arrays)."""
    value: object = info.get("prompt")
    if value is None or (isinstance(value, str) and not value.strip()):
        value = info.get("question")
    tolist = getattr(value, "tolist", None)
    if callable(tolist):  # parquet list columns arrive as numpy arrays
        value = tolist()
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, list | tuple) and value:
        return tuple({"role": m.get("role"), "content": m.get("content")} if isinstance(m, Mapping) else m
                     for m in value)
    raise UsageError("no prompt for this sample: verl does not pass it, so put it in extra_info['prompt'] "
                     "(text or chat messages) when you build the parquet")


def _principle_rubric(principle: str) -> Rubric:
    return principle_rubric(principle, "verl-principle", "A principle given in a verl sample's extra_info.",
                            "extra_info['principle']")


async def _score_samples(samples: list[_Sample], settings: _Settings) -> list[RewardResult]:
    """Score on the loop thread, one gateway call per (judge, rubric) group, results in order."""
    groups: dict[tuple[str, str | None, str], list[int]] = {}
    for index, sample in enumerate(samples):
        key = sample.rubric if isinstance(sample.rubric, str) else sample.rubric.ref
        groups.setdefault((sample.judge, sample.judge_base_url, key), []).append(index)
    results: list[RewardResult | None] = [None] * len(samples)
    for indices in groups.values():
        first = samples[indices[0]]
        items = [samples[i].item for i in indices]
        if settings.server_url:
            scored = await _client(settings).score(items, first.rubric, settings.votes)
        else:
            config = _gateway_config(settings, first.judge, first.judge_base_url)
            rubric = first.rubric
            scored = await with_gateway(config, lambda gateway: gateway.score(items, rubric))
        for index, result in zip(indices, scored, strict=True):
            results[index] = result
    return [r for r in results if r is not None]


_clients: dict[tuple[str, str | None], RewardClient] = {}
"""Remote clients by (url, api key); touched only on the loop thread that owns their pools."""


def _client(settings: _Settings) -> RewardClient:
    assert settings.server_url is not None
    key = (settings.server_url, settings.server_api_key)
    if key not in _clients:
        _clients[key] = RewardClient(settings.server_url, api_key=settings.server_api_key)
        close_at_exit(_clients[key])
    return _clients[key]


def _gateway_config(settings: _Settings, judge: str, base_url: str | None) -> GatewayConfig:
    return settings.env.gateway_config(judge=judge, judge_base_url=base_url, votes=settings.votes,
                                       cache=settings.cache)


@lru_cache(maxsize=32)
def _criterion_ids(rubric: str | None, dirs: tuple[Path, ...]) -> tuple[str, tuple[str, ...]] | None:
    """The run rubric's id and criterion ids, read once per process so the keys never change."""
    if rubric is None:
        return None
    try:
        resolved = resolve_rubric(rubric, dirs)
    except UsageError:
        return None  # a rubric only the remote server knows: no per-criterion keys
    return resolved.id, tuple(c.id for c in resolved.criteria)


def _as_verl(result: RewardResult, settings: _Settings) -> VerlScore:
    """The fixed-key dict verl logs; `fill` stands in wherever there is no number."""
    fill = settings.unscorable_score
    scored = result.reward is not None
    agreement = (1.0 if result.agreement is None else result.agreement) if scored else fill
    out: VerlScore = {
        "score": float(result.reward) if result.reward is not None else fill,
        "unscorable": 0.0 if scored else 1.0,
        "agreement": float(agreement),
        "cached": 1.0 if result.cached else 0.0,
        "judge_calls": float(result.judge_calls),
    }
    for flag in _FLAGS:
        out[f"flag/{flag}"] = 1.0 if flag in result.flags else 0.0
    run_rubric = _criterion_ids(settings.rubric, settings.rubric_dirs)
    if run_rubric is not None:
        rubric_id, criterion_ids = run_rubric
        same = result.rubric.partition("@")[0] == rubric_id
        values = {c.id: c.value for c in result.criteria} if same else {}
        for criterion_id in criterion_ids:
            value = values.get(criterion_id)
            out[f"criterion/{criterion_id}"] = float(value) if value is not None else fill
    out["rubric"] = result.rubric
    out["reason"] = result.reason or ""
    return out


def _text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _use_package_module() -> None:
    """Under verl's private module name, serve the package module's functions instead.

    verl execs this file as `custom_module[_<hash>]`; rebinding the public names keeps one
    set of gateways and clients per process and lets Ray pickle the functions by reference.
    """
    if __name__ == _PACKAGE_MODULE:
        return
    package_module = importlib.import_module(_PACKAGE_MODULE)
    globals().update({name: getattr(package_module, name) for name in __all__})


_use_package_module()
