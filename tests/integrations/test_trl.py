"""TRL reward functions: fast tests with scripted judges, slow ones with a real GRPOTrainer on CPU."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rubricgate.errors import UsageError
from rubricgate.integrations.trl import (
    remote_rubric_reward, remote_rubric_reward_sync, rubric_reward, rubric_reward_sync,
)
from tests.conftest import REPO

HELPFULNESS_CRITERIA = {"addresses_request", "no_placeholders", "correctness", "completeness", "actionability",
                        "clarity"}
CONVERSATION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


@pytest.fixture
def cache(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/c.db"


def short_rubric(folder: Path) -> Path:
    """A rubric whose reward depends on completion length (deterministic check) plus one judged principle."""
    path = folder / "short-answers.yaml"
    path.write_text("""\
id: short-answers
description: Short, clear answers.
criteria:
  - id: brief
    kind: hard_rule
    text: The response is at most 4 words.
    weight: 1
    check: {type: max_words, value: 4}
  - id: clear
    kind: principle
    text: The response is easy to follow.
    weight: 1
""")
    return path


# ---------------------------------------------------------------- shape of the function


def test_reward_is_a_coroutine_function_named_after_the_rubric(cache: str) -> None:
    reward = rubric_reward("helpfulness", judge="fake:best", cache=cache)
    assert inspect.iscoroutinefunction(reward)
    assert reward.__name__ == "rubric_helpfulness"
    assert rubric_reward("concise-writing", judge="fake:best", cache=cache).__name__ == "rubric_concise_writing"
    assert rubric_reward("helpfulness", judge="fake:best", cache=cache, name="judge_a").__name__ == "judge_a"
    twin = rubric_reward_sync("concise-writing", judge="fake:best", cache=None)
    assert not inspect.iscoroutinefunction(twin) and twin.__name__ == "rubric_concise_writing"


def test_setup_mistakes_fail_at_construction_not_mid_run(cache: str) -> None:
    with pytest.raises(UsageError, match="unknown rubric"):
        rubric_reward("no-such-rubric", judge="fake:best", cache=cache)
    with pytest.raises(UsageError, match="bad judge"):
        rubric_reward("helpfulness", judge="nonsense", cache=cache)
    with pytest.raises(UsageError, match="unknown option.*temperature_typo"):
        rubric_reward("helpfulness", judge="fake:best", cache=cache, temperature_typo=1)
    with pytest.raises(UsageError, match="deadline_s"):
        rubric_reward("helpfulness", judge="fake:best", cache=cache, deadline_s=-1)


# ---------------------------------------------------------------- inputs and outputs


@pytest.mark.parametrize("conversational", [False, True], ids=["standard", "conversational"])
async def test_rewards_align_with_completions(conversational: bool, cache: str) -> None:
    texts = ["Blue.", "Dear [NAME], the colour is TODO.", "Green is a colour."]
    reward = rubric_reward("helpfulness", judge="fake:best", votes=2, cache=cache)
    if conversational:
        prompts: list[Any] = [CONVERSATION] * 3
        completions: list[Any] = [chat(t) for t in texts]
    else:
        prompts, completions = ["Name a colour."] * 3, texts

    rewards = await reward(prompts=prompts, completions=completions, completion_ids=[[1], [2], [3]],
                           trainer_state=object(), log_extra=lambda column, values: None)

    assert len(rewards) == 3
    assert rewards[0] == rewards[2] == 1.0
    assert rewards[1] is not None and rewards[1] < 1.0  # the placeholder check failed, only for that one


async def test_conversational_completion_grades_the_final_assistant_message(cache: str) -> None:
    reward = rubric_reward("helpfulness", judge="fake:best", votes=1, cache=cache)
    completion = [{"role": "assistant", "content": "Let me look that up. TODO"},
                  {"role": "tool", "content": "colour=blue"},
                  {"role": "assistant", "content": [{"type": "text", "text": "Blue."}]}]
    assert await reward([CONVERSATION], [completion]) == [1.0]


async def test_unscorable_completions_get_none_not_zero(cache: str) -> None:
    logged: dict[str, float] = {}
    reward = rubric_reward("helpfulness", judge="fake:garbage", votes=1, cache=cache)
    rewards = await reward(["q", "q"], ["a", "b"], log_metric=logged.__setitem__)
    assert rewards == [None, None]
    assert logged["rubricgate/unscorable"] == 1.0
    assert logged["rubricgate/no_placeholders"] == 1.0  # the deterministic check still ran
    assert "rubricgate/correctness" not in logged  # no vote scored it: nothing to average


async def test_log_metric_receives_per_criterion_means(cache: str) -> None:
    logged: dict[str, list[float]] = {}
    reward = rubric_reward("helpfulness", judge="fake:best", votes=1, cache=cache)
    await reward(["q"] * 4, ["Fine.", "TODO", "Fine too.", "[NAME] here"],
                 log_metric=lambda name, value: logged.setdefault(name, []).append(value))
    assert set(logged) == {f"rubricgate/{c}" for c in HELPFULNESS_CRITERIA} | {"rubricgate/unscorable"}
    assert logged["rubricgate/no_placeholders"] == [0.5]
    assert logged["rubricgate/clarity"] == [1.0]
    assert logged["rubricgate/unscorable"] == [0.0]

    quiet: list[str] = []
    silent = rubric_reward("helpfulness", judge="fake:best", votes=1, cache=cache, log_criteria=False)
    await silent(["q"], ["Fine."], log_metric=lambda name, value: quiet.append(name))
    assert quiet == []


async def test_dataset_columns_pick_the_rubric_and_reference_per_sample(tmp_path: Path, cache: str) -> None:
    rubric_file = short_rubric(tmp_path)
    reward = rubric_reward("helpfulness", judge="fake:best", votes=1, cache=cache)
    long = "This answer has many more than four words."
    rewards = await reward(["q"] * 3, [long, long, long], rubric=[None, str(rubric_file), str(rubric_file)],
                           ground_truth=[None, 42, "x"])
    assert rewards[0] == 1.0  # helpfulness, no placeholders
    assert rewards[1] == rewards[2] == 0.5  # short-answers: too long, judged clear
    with pytest.raises(UsageError, match="column 'rubric'"):
        await reward(["q"], ["a"], rubric=["helpfulness", "extra"])


def test_reference_and_chat_prompt_reach_the_judge(cache: str) -> None:
    from tests.support.openai_server import ScriptedJudgeServer

    with ScriptedJudgeServer() as judge:
        reward = rubric_reward_sync("helpfulness", judge="litellm:openai/judge-model", judge_base_url=judge.base_url,
                                    api_key="sk-test", votes=1, cache=cache, timeout_s=10)
        rewards = reward([CONVERSATION], [chat("Blue, like the sky.")], reference=["Blue"])
        assert rewards[0] is not None
        text = judge.calls[0].last_user_text
        assert "Blue, like the sky." in text and "Reference answer" in text and "Name a colour." in text


# ---------------------------------------------------------------- sync twin


def test_sync_twin_works_from_plain_sync_code(cache: str) -> None:
    reward = rubric_reward_sync("helpfulness", judge="fake:best", votes=1, cache=cache)
    assert reward(["q", "q"], ["Fine.", "TODO"])[0] == 1.0
    assert reward([CONVERSATION], [chat("Blue.")]) == [1.0]


async def test_sync_twin_refuses_inside_a_running_loop(cache: str) -> None:
    reward = rubric_reward_sync("helpfulness", judge="fake:best", votes=1, cache=cache)
    with pytest.raises(UsageError, match="inside an event loop"):
        reward(["q"], ["a"])


def test_sync_twin_answers_many_threads_at_once(cache: str) -> None:
    reward = rubric_reward_sync("helpfulness", judge="fake:alternate", votes=3, cache=cache)
    answers: dict[int, list[float | None]] = {}
    errors: list[BaseException] = []

    def call(worker: int) -> None:
        try:
            answers[worker] = reward([f"q{worker}"] * 3, [f"answer {worker}", "TODO", f"more {worker}"])
        except BaseException as exc:  # surfaced below, with the worker's traceback
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert sorted(answers) == list(range(8))
    for rewards in answers.values():
        assert len(rewards) == 3 and all(r is not None for r in rewards)
        assert rewards[0] == rewards[2] and rewards[1] is not None and rewards[0] is not None
        assert rewards[1] < rewards[0]


# ---------------------------------------------------------------- remote variant


@pytest.fixture
def reward_server(cache: str) -> Iterator[str]:
    from rubricgate.interfaces.gateway import Gateway, GatewayConfig
    from rubricgate.interfaces.http import ServerSettings, create_app
    from rubricgate.models.config import ScoringConfig
    from tests.support.app_server import serving

    gateway = Gateway.open(GatewayConfig(judge="fake:best", scoring=ScoringConfig(votes=1), cache_url=cache))
    with serving(create_app(gateway, ServerSettings(api_key="secret"))) as server:
        yield server.url


async def test_remote_reward_scores_on_a_running_server(reward_server: str, tmp_path: Path) -> None:
    reward = remote_rubric_reward(reward_server, "helpfulness", api_key="secret")
    assert inspect.iscoroutinefunction(reward) and reward.__name__ == "rubric_helpfulness"
    logged: dict[str, float] = {}
    long = "This answer has many more than four words."
    rewards = await reward([CONVERSATION] * 3, [chat("Blue."), chat("TODO"), chat(long)],
                           rubric=[None, None, str(short_rubric(tmp_path))], log_metric=logged.__setitem__)
    assert rewards[0] == 1.0 and rewards[1] is not None and rewards[1] < 1.0
    assert rewards[2] == 0.5  # a rubric file is read locally and sent inline
    assert logged["rubricgate/no_placeholders"] == 0.5 and logged["rubricgate/unscorable"] == 0.0


def test_remote_sync_twin_and_an_unreachable_server(reward_server: str) -> None:
    reward = remote_rubric_reward_sync(reward_server, "helpfulness", api_key="secret")
    assert reward(["q"], ["Fine."]) == [1.0]
    with pytest.raises(UsageError, match="refused"):
        remote_rubric_reward_sync(reward_server, "helpfulness", api_key="wrong")(["q"], ["a"])
    down = remote_rubric_reward_sync("http://127.0.0.1:9", "helpfulness", timeout_s=2)
    assert down(["q", "q"], ["a", "b"]) == [None, None]  # a server hiccup skips samples, not the run


# ---------------------------------------------------------------- real TRL on CPU (slow)

_TRL_GC_ALIAS = ("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning:transformers.modeling_utils")
"""TRL 1.16 reads transformers 5's deprecated `is_gradient_checkpointing` alias while generating."""


def _tiny_policy(folder: Path) -> str:
    spec = importlib.util.spec_from_file_location("_tiny_policy", REPO / "examples" / "_tiny_policy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.tiny_policy(folder))


@pytest.mark.slow
@pytest.mark.filterwarnings(_TRL_GC_ALIAS)
@pytest.mark.parametrize("conversational", [False, True], ids=["standard", "conversational"])
def test_grpo_trainer_trains_on_rubric_rewards(conversational: bool, tmp_path: Path, cache: str) -> None:
    pytest.importorskip("trl")
    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    questions = ["why is the sky blue", "tell me a short answer", "explain the rain", "name two trees"]
    prompts: list[Any] = [[{"role": "user", "content": q}] for q in questions] if conversational else questions
    dataset = Dataset.from_dict({"prompt": prompts, "ground_truth": ["blue", "yes", "water", "oak"]})
    # Rewards must vary within a group: the length check splits random completions, votes=1 judges "clear".
    reward = rubric_reward(str(short_rubric(tmp_path)), judge="fake:best", votes=1, cache=cache)
    args = GRPOConfig(output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=4,
                      num_generations=4, max_completion_length=16, learning_rate=1e-3, logging_steps=1,
                      use_cpu=True, bf16=False, activation_checkpointing=False, report_to=[], save_strategy="no")
    trainer = GRPOTrainer(model=_tiny_policy(tmp_path / "policy"), reward_funcs=[reward], args=args,
                          train_dataset=dataset)
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}

    trainer.train()

    steps = [entry for entry in trainer.state.log_history if "rewards/rubric_short_answers/mean" in entry]
    assert len(steps) == 2
    for entry in steps:
        assert 0.0 <= entry["rewards/rubric_short_answers/mean"] <= 1.0
        assert entry["rubricgate/clear"] == 1.0 and entry["rubricgate/unscorable"] == 0.0
        assert 0.0 <= entry["rubricgate/brief"] <= 1.0 and math.isfinite(entry["grad_norm"])
    assert any(entry["reward_std"] > 0 for entry in steps), steps
    assert any(not torch.equal(before[name], p) for name, p in trainer.model.named_parameters())


@pytest.mark.slow
@pytest.mark.filterwarnings(_TRL_GC_ALIAS)
def test_grpo_trainer_with_the_embedded_judge(tmp_path: Path, cache: str, model_dir: Path) -> None:
    """The real default judge (llama.cpp on the CPU) inside a real trainer: the zero-setup path."""
    pytest.importorskip("trl")
    pytest.importorskip("llama_cpp")
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    dataset = Dataset.from_dict({"prompt": [[{"role": "user", "content": "Why is the sky blue?"}]] * 2})
    reward = rubric_reward("helpfulness", votes=1, cache=cache, model_dir=model_dir)
    args = GRPOConfig(output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=4,
                      num_generations=4, max_completion_length=16, logging_steps=1, use_cpu=True, bf16=False,
                      activation_checkpointing=False, report_to=[], save_strategy="no")
    trainer = GRPOTrainer(model=_tiny_policy(tmp_path / "policy"), reward_funcs=[reward], args=args,
                          train_dataset=dataset)
    trainer.train()
    entry = next(e for e in trainer.state.log_history if "rewards/rubric_helpfulness/mean" in e)
    assert 0.0 <= entry["rewards/rubric_helpfulness/mean"] <= 1.0, entry
    assert entry["rubricgate/unscorable"] < 1.0


@pytest.mark.slow
def test_example_script_runs_offline(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RUBRICGATE_JUDGE": "fake:alternate",
           "RUBRICGATE_CACHE": f"sqlite:///{tmp_path}/c.db"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(REPO / "examples" / "trl_grpo.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rewards/rubric_helpfulness/mean" in done.stdout
    assert time.perf_counter() - started < 120


def test_module_imports_without_torch_or_trl() -> None:
    code = ("import sys, rubricgate.integrations.trl; "
            "assert not {'torch', 'trl', 'transformers'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_async_reward_runs_off_the_callers_loop(cache: str) -> None:
    """TRL awaits on its own loop thread; the gateway stays on rubricgate's loop across callers."""
    reward = rubric_reward("helpfulness", judge="fake:best", votes=1, cache=cache)
    first = asyncio.run(reward(["q"], ["Fine."]))
    second = asyncio.run(reward(["q"], ["Also fine."]))  # a new loop: loop-bound state must not break
    assert first == second == [1.0]
