"""verl's custom reward function: loaded by file path and called exactly the way verl calls it.

The loaders and manager loops below restate verl's own code (verl-project/verl):
`verl/utils/import_utils.py::load_module` and `verl/trainer/ppo/reward.py::get_custom_reward_fn`
(current and legacy), `verl/workers/reward_manager/naive.py` and `batch.py`, and the
reward loop's `compute_rm_score` key handling. The judge is scripted (`fake:*`) or a real
OpenAI-compatible server on 127.0.0.1; the cache is a real SQLite file in `tmp_path`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import math
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI, Request

import rubricgate.integrations.verl as verl_module
from rubricgate.errors import UsageError
from tests.conftest import REPO
from tests.support.openai_server import ScriptedJudgeServer

VERL_FILE = str(Path(verl_module.__file__))
HELPFULNESS = ["addresses_request", "no_placeholders", "correctness", "completeness", "actionability", "clarity"]
FIXED_KEYS = ["score", "unscorable", "agreement", "cached", "judge_calls", "flag/fallback", "flag/parse_error",
              "flag/injection_suspected", "flag/hard_rule_failed", "flag/partial_votes", "flag/cache_unavailable"]


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A real SQLite cache per test, a scripted judge, and none of the developer's settings."""
    for name in ("RUBRICGATE_URL", "RUBRICGATE_API_KEY", "RUBRICGATE_RUBRIC", "RUBRICGATE_VOTES",
                 "RUBRICGATE_UNSCORABLE_SCORE", "RUBRICGATE_JUDGE_MODEL", "RUBRICGATE_MODEL_DIR"):
        monkeypatch.delenv(name, raising=False)
    cache = tmp_path / "verl-cache.db"
    monkeypatch.setenv("RUBRICGATE_CACHE", str(cache))  # a bare path means a SQLite file
    monkeypatch.setenv("RUBRICGATE_JUDGE", "fake:best")
    return cache


# ------------------------------------------------------------------ verl, restated

def _call_with_kwargs(raw_fn: Callable[..., Any], extra_kwargs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
    return raw_fn(*args, **{**kwargs, **extra_kwargs})


async def _call_with_kwargs_async(raw_fn: Callable[..., Any], extra_kwargs: dict[str, Any], *args: Any,
                                  **kwargs: Any) -> Any:
    return await raw_fn(*args, **{**kwargs, **extra_kwargs})


def load_like_verl(name: str, reward_kwargs: dict[str, Any] | None = None) -> Callable[..., Any]:
    """Current verl: a module named `custom_module_<hash>`, never put in sys.modules."""
    spec = importlib.util.spec_from_file_location(f"custom_module_{hash(os.path.abspath(VERL_FILE))}", VERL_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    raw_fn = getattr(module, name)
    kwargs = dict(reward_kwargs or {})
    if not inspect.iscoroutinefunction(raw_fn):
        return partial(_call_with_kwargs, raw_fn, kwargs)
    return partial(_call_with_kwargs_async, raw_fn, kwargs)


def load_like_legacy_verl(name: str, reward_kwargs: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """verl <= 0.5: `spec_from_file_location("custom_module", path)` registered in sys.modules."""
    spec = importlib.util.spec_from_file_location("custom_module", VERL_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "custom_module", module)
    spec.loader.exec_module(module)
    raw_fn = getattr(module, name)

    def wrapped_fn(*args: Any, **kwargs: Any) -> Any:
        return raw_fn(*args, **kwargs, **reward_kwargs)

    return wrapped_fn


def row(prompt: Any, response: str, ground_truth: str = "", **extra: Any) -> dict[str, Any]:
    return {"data_source": "chat", "response": response, "reward_model": {"ground_truth": ground_truth},
            "extra_info": {"prompt": prompt, **extra}}


def run_naive_manager(fn: Callable[..., Any], rows: list[dict[str, Any]]) -> tuple[np.ndarray, dict[str, list[Any]]]:
    """`NaiveRewardManager.__call__`: keyword call per sample, every dict key appended to a list."""
    reward_tensor = np.zeros((len(rows), 8), dtype=np.float32)
    reward_extra_info: dict[str, list[Any]] = defaultdict(list)
    for i, data_item in enumerate(rows):
        extra_info = dict(data_item["extra_info"])
        extra_info["num_turns"] = None
        extra_info["rollout_reward_scores"] = {}
        score = fn(data_source=data_item["data_source"], solution_str=data_item["response"],
                   ground_truth=data_item["reward_model"]["ground_truth"], extra_info=extra_info)
        reward = score["score"] if isinstance(score, dict) else score
        if isinstance(score, dict):
            for key, value in score.items():
                reward_extra_info[key].append(value)
        reward_tensor[i, 7] = reward  # raises for None, like torch does
    return reward_tensor, reward_extra_info


def check_trainer_accepts(reward_tensor: np.ndarray, reward_extra_info: dict[str, list[Any]], n: int) -> None:
    """What ray_trainer / _validate / process_validation_metrics then do with the extra info."""
    assert np.isfinite(reward_tensor).all()
    assert "reward" not in reward_extra_info  # _validate appends its own "reward" list
    for key, values in reward_extra_info.items():
        assert len(values) == n, key  # DataProto rejects a column of another length
        column = np.array(values)
        if isinstance(values[0], str):
            assert all(isinstance(v, str) for v in values), key  # validation skips str keys by the first value
            continue
        assert column.dtype.kind == "f", key
        assert math.isfinite(float(np.mean(column))), key


def assemble_like_reward_loop(outputs: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """`RewardLoopManager.compute_rm_score`: columns from the first sample's keys."""
    keys = list(outputs[0].keys())
    return {key: np.array([info[key] for info in outputs]) for key in keys}


# ------------------------------------------------------------------ loading and calling

@pytest.mark.parametrize("loader", ["current", "legacy"])
def test_loaded_by_file_path_like_verl_and_called_with_its_keywords(loader: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    kwargs = {"rubric": "helpfulness"}
    fn = load_like_verl("compute_score", kwargs) if loader == "current" else \
        load_like_legacy_verl("compute_score", kwargs, monkeypatch)
    rows = [row("What is the capital of France?", "Paris is the capital of France.", "Paris"),
            row([{"role": "user", "content": "Name a primary colour."}], "Red.")]

    reward_tensor, extra = run_naive_manager(fn, rows)

    assert reward_tensor[:, 7].tolist() == [1.0, 1.0]
    assert extra["unscorable"] == [0.0, 0.0]
    assert all(ref.startswith("helpfulness@") for ref in extra["rubric"])
    check_trainer_accepts(reward_tensor, extra, len(rows))


def test_the_file_loaded_by_path_serves_the_package_functions() -> None:
    spec = importlib.util.spec_from_file_location("custom_module_x", VERL_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("compute_score", "compute_score_async", "compute_score_batch"):
        fn = getattr(module, name)
        assert fn is getattr(verl_module, name)
        assert pickle.loads(pickle.dumps(fn)) is fn  # Ray and process pools pickle it by reference


def test_every_sample_has_the_same_keys_unscorable_ones_included() -> None:
    fn = load_like_verl("compute_score", {"rubric": "helpfulness"})
    rows = [
        row("Explain DNS briefly.", "DNS maps names to addresses.", judge="fake:best"),
        row("Explain DNS briefly.", "DNS maps names to addresses.", judge="fake:garbage"),
        row("Explain DNS briefly.", "Bananas.", judge="fake:worst"),
        row("Write a haiku.", "Autumn moon rises", principle="Follow the 5-7-5 syllable form."),
        row("Summarise the text.", "Short summary.", rubric="concise-writing"),
    ]

    reward_tensor, extra = run_naive_manager(fn, rows)

    check_trainer_accepts(reward_tensor, extra, len(rows))
    assert list(extra) == FIXED_KEYS + [f"criterion/{c}" for c in HELPFULNESS] + ["rubric", "reason"]
    best, garbage, worst, principle, other = (dict(zip(extra, values, strict=True)) for values in zip(*extra.values(),
                                                                                                  strict=True))
    assert best["score"] == 1.0 and best["reason"] == "" and best["criterion/correctness"] == 1.0
    assert garbage["score"] == 0.0 and garbage["unscorable"] == 1.0 and garbage["flag/parse_error"] == 1.0
    assert "VerdictParseError" in str(garbage["reason"]) and garbage["agreement"] == 0.0
    assert worst["unscorable"] == 0.0 and float(worst["score"]) < 0.5
    assert str(principle["rubric"]).startswith("verl-principle@") and principle["criterion/clarity"] == 0.0
    assert str(other["rubric"]).startswith("concise-writing@")
    columns = assemble_like_reward_loop([dict(zip(extra, values, strict=True))
                                         for values in zip(*extra.values(), strict=True)])
    assert all(len(column) == len(rows) for column in columns.values())


def test_unscorable_score_is_configurable_and_must_be_finite() -> None:
    fn = load_like_verl("compute_score", {"rubric": "helpfulness", "unscorable_score": 0.5})
    _, extra = run_naive_manager(fn, [row("Hi?", "Hello.", judge="fake:garbage")])
    assert extra["score"] == [0.5] and extra["unscorable"] == [1.0]
    bad = load_like_verl("compute_score", {"rubric": "helpfulness", "unscorable_score": "nan"})
    with pytest.raises(UsageError, match="finite"):
        run_naive_manager(bad, [row("Hi?", "Hello.")])


def test_judgments_are_cached_in_the_sqlite_file_from_the_environment(_env: Path) -> None:
    fn = load_like_verl("compute_score", {"rubric": "helpfulness", "votes": 2})
    rows = [row("What is 2 + 2?", "4.")]

    _, first = run_naive_manager(fn, rows)
    _, again = run_naive_manager(fn, rows)
    _, other_prompt = run_naive_manager(fn, [row("What is 3 + 1?", "4.")])

    assert _env.exists()
    assert first["cached"] == [0.0] and first["judge_calls"] == [2.0]
    assert again["cached"] == [1.0] and again["judge_calls"] == [0.0] and again["score"] == first["score"]
    assert other_prompt["cached"] == [0.0]  # the prompt from extra_info is part of the judged request


async def test_async_variant_is_awaited_concurrently_like_the_reward_loop() -> None:
    fn = load_like_verl("compute_score_async", {"rubric": "helpfulness"})
    assert inspect.iscoroutinefunction(fn)  # the reward loop's test on the wrapped partial

    outputs = await asyncio.gather(*(
        fn(data_source="chat", solution_str=f"Answer {i}.", ground_truth="",
           extra_info={"prompt": f"Question {i}?", "judge": "fake:garbage" if i == 2 else "fake:best"})
        for i in range(4)))

    assert [o["score"] for o in outputs] == [1.0, 1.0, 0.0, 1.0]
    assert outputs[2]["unscorable"] == 1.0
    assert len({tuple(o) for o in outputs}) == 1
    assert all(len(column) == 4 for column in assemble_like_reward_loop(outputs).values())


async def test_sync_function_refuses_to_block_a_running_loop() -> None:
    with pytest.raises(UsageError, match="event loop"):
        verl_module.compute_score(data_source="chat", solution_str="Hi.", ground_truth="",
                                  extra_info={"prompt": "Hello?"}, rubric="helpfulness")


def test_batch_variant_takes_the_batch_managers_arguments() -> None:
    fn = load_like_verl("compute_score_batch", {"rubric": "helpfulness"})
    extra_infos = np.array([{"prompt": "Name a fruit."}, {"prompt": "Name a fruit.", "judge": "fake:garbage"},
                            {"prompt": "Name a tree.", "rubric": "concise-writing"}], dtype=object)

    scores = fn(data_sources=np.array(["chat"] * 3, dtype=object), solution_strs=["Apple.", "Pear.", "Oak."],
                ground_truths=["", None, ""], extra_infos=extra_infos)

    assert [s["score"] for s in scores] == [1.0, 0.0, 1.0]
    assert [s["unscorable"] for s in scores] == [0.0, 1.0, 0.0]
    assert len({tuple(s) for s in scores}) == 1
    with pytest.raises(UsageError, match="align"):
        fn(data_sources=["chat"], solution_strs=["a", "b"], ground_truths=[""], extra_infos=[{}])


def test_missing_prompt_or_rubric_says_how_to_fix_it() -> None:
    fn = load_like_verl("compute_score", {"rubric": "helpfulness"})
    with pytest.raises(UsageError, match=r"extra_info\['prompt'\]"):
        fn(data_source="chat", solution_str="Hi.", ground_truth="", extra_info={"split": "train"})
    no_rubric = load_like_verl("compute_score")
    with pytest.raises(UsageError, match="RUBRICGATE_RUBRIC"):
        no_rubric(data_source="chat", solution_str="Hi.", ground_truth="", extra_info={"prompt": "Hello?"})
    with pytest.raises(UsageError, match="role"):
        fn(data_source="chat", solution_str="Hi.", ground_truth="",
           extra_info={"prompt": [{"role": "robot", "content": "beep"}]})


# ------------------------------------------------------------------ real servers on 127.0.0.1

def test_verl_reward_model_router_serves_as_the_judge(monkeypatch: pytest.MonkeyPatch) -> None:
    """With `reward_router_address` (verl's own judge server) the judge sees prompt, rubric and reference."""
    monkeypatch.delenv("RUBRICGATE_JUDGE")
    with ScriptedJudgeServer(model_name="Qwen/Qwen3-8B") as server:
        fn = load_like_verl("compute_score", {"rubric": "helpfulness", "votes": 1})
        score = fn(data_source="chat", solution_str="Paris is the capital of France.", ground_truth="Paris",
                   extra_info={"prompt": [{"role": "user", "content": "Name the capital of France."}]},
                   reward_router_address=f"127.0.0.1:{server.port}",
                   reward_model_tokenizer=SimpleNamespace(name_or_path="Qwen/Qwen3-8B"))

        assert score["unscorable"] == 0.0 and 0.0 <= float(score["score"]) <= 1.0
        [call] = server.calls
    assert call.model == "Qwen/Qwen3-8B"
    text = json.dumps(call.messages)
    assert "Name the capital of France." in text and "Paris is the capital of France." in text
    assert "Reference answer" in text and "Paris" in text
    assert "correctness" in text  # the rubric's criteria reach the judge


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """`app` on a real uvicorn server on 127.0.0.1 with a free port; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_remote_mode_sends_items_to_a_running_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    """RUBRICGATE_URL: samples go to `POST /v1/reward`; a null reward still yields the same keys."""
    received: list[dict[str, Any]] = []
    app = FastAPI()

    @app.post("/v1/reward")
    async def reward(request: Request) -> dict[str, Any]:
        body = await request.json()
        received.append(body)
        results = []
        for item in body["items"]:
            down = item["response"] == "???"
            results.append({"reward": None if down else 0.75, "reason": "judge down" if down else None,
                            "rubric": "helpfulness@0123456789ab", "judge": "remote", "votes": 1,
                            "criteria": [{"id": "clarity", "kind": "principle", "weight": 1.0,
                                          "value": None if down else 0.5, "source": "judge"}]})
        return {"results": results}

    with serve(app) as url:
        monkeypatch.setenv("RUBRICGATE_URL", url)
        fn = load_like_verl("compute_score", {"rubric": "helpfulness", "votes": 5})
        reward_tensor, extra = run_naive_manager(fn, [row("Say hi.", "Hi!", "Hello"), row("Say hi.", "???")])

    check_trainer_accepts(reward_tensor, extra, 2)
    assert extra["score"] == [0.75, 0.0] and extra["unscorable"] == [0.0, 1.0]
    assert extra["reason"] == ["", "judge down"] and extra["criterion/clarity"] == [0.5, 0.0]
    assert received[0]["rubric"] == "helpfulness" and received[0]["votes"] == 5
    assert received[0]["items"] == [{"prompt": "Say hi.", "response": "Hi!", "reference": "Hello"}]


def test_example_script_runs() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUBRICGATE_")}
    done = subprocess.run([sys.executable, str(REPO / "examples" / "verl_reward.py")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:2] == ["1.0", "0.0"]
    assert "helpfulness@" in done.stdout
