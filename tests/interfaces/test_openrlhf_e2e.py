"""OpenRLHF's own client code (replicated in tests/support) against the real server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.interfaces.http import ServerSettings, create_app
from rubricgate.interfaces.openrlhf import OPENRLHF_LOG_KEYS
from rubricgate.models.config import BackendConfig, ScoringConfig
from tests.support.app_server import AppServer, serving
from tests.support.openai_server import ChatCall, Reply, ScriptedJudgeServer
from tests.support.openrlhf_client import (
    chatml_tokenizer, experience_info, legacy_padded_queries, make_query, remote_rm_fn, single_turn_reward,
)

QUESTIONS = ["What is the capital of France?", "Name the largest planet.", "What is 2 + 2?", "Who wrote Hamlet?"]


def passes_if_marked(call: ChatCall) -> Reply:
    """Passes responses containing 'GOOD', fails the rest."""
    best = "GOOD" in call.last_user_text.split("<response-", 1)[1]
    schema = call.body["response_format"]["json_schema"]["schema"]
    return Reply.json({f: {"rationale": "r", "score": spec["properties"]["score"]["enum"][-1 if best else 0]}
                       for f, spec in schema["properties"].items()})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    with ScriptedJudgeServer(passes_if_marked) as judge:
        gateway = Gateway.open(GatewayConfig(
            judge="openai:judge-model", backend=BackendConfig(base_url=judge.base_url),
            scoring=ScoringConfig(votes=1, concurrency=64),
            cache_url=f"sqlite:///{tmp_path_factory.mktemp('c') / 'cache.db'}"))
        with serving(create_app(gateway, ServerSettings(default_rubric="factual-qa"))) as running:
            yield running


def rollouts(n: int) -> tuple[list[str], list[str], list[str]]:
    tokenizer = chatml_tokenizer()
    prompts, queries, answers = [], [], []
    for i in range(n):
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": QUESTIONS[i % 4] + f" #{i}"}],
                                               tokenize=False, add_generation_prompt=True)
        answer = f"{'GOOD' if i % 2 == 0 else 'bad'} answer {i}"
        response_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        prompts.append(prompt)
        queries.append(make_query(tokenizer, prompt, response_ids))
        answers.append(answer)
    return prompts, queries, answers


async def test_current_openrlhf_single_turn_executor_trains_unchanged(server: AppServer) -> None:
    prompts, queries, _ = rollouts(32)
    url = f"{server.url}/get_reward"
    outputs = await asyncio.gather(*(single_turn_reward(url, q, p, "") for q, p in zip(queries, prompts)))
    for i, output in enumerate(outputs):
        assert output["reward"] == [1.0 if i % 2 == 0 else 0.0], output
        info = experience_info(output)  # the tensors OpenRLHF builds from the reply
        assert float(info["reward"][0][0]) == output["reward"][0]
        assert set(OPENRLHF_LOG_KEYS) <= set(info)


def test_legacy_batched_client_with_padded_queries(server: AppServer) -> None:
    tokenizer = chatml_tokenizer()
    prompts, _, answers = rollouts(6)
    responses = [tokenizer(a, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for a in answers]
    queries = legacy_padded_queries(tokenizer, prompts, responses)
    assert any(q.startswith("<|endoftext|>") for q in queries)  # left padding really is there
    rewards = remote_rm_fn(f"{server.url}/get_reward", queries, prompts, [""] * 6)
    assert rewards.tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
