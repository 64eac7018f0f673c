"""The reward server on a real uvicorn server on 127.0.0.1, with a scripted local judge."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from typer.testing import CliRunner

from rubricgate.integrations.client import RewardClient
from rubricgate.interfaces.cli import app as cli_app
from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.interfaces.http import ServerSettings, create_app
from rubricgate.interfaces.openrlhf import OPENRLHF_LOG_KEYS
from rubricgate.models.config import BackendConfig, RetryPolicy, ScoringConfig
from rubricgate.models.reward import Item
from tests.support.app_server import AppServer, serving
from tests.support.openai_server import ChatCall, Reply, ScriptedJudgeServer

GOOD = {"prompt": "What is the capital of France?", "response": "Paris is the capital of France."}


@pytest.fixture(scope="module")
def judge() -> Iterator[ScriptedJudgeServer]:
    with ScriptedJudgeServer() as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh(judge: ScriptedJudgeServer) -> None:
    judge.reset()
    judge.set_script(None)


def make_gateway(judge: ScriptedJudgeServer, cache_url: str | None, votes: int = 1) -> Gateway:
    return Gateway.open(GatewayConfig(
        judge="litellm:openai/judge-model", backend=BackendConfig(base_url=judge.base_url, timeout_s=10),
        scoring=ScoringConfig(votes=votes, concurrency=64), retry=RetryPolicy(attempts=2, initial_wait_s=0.01),
        cache_url=cache_url))


@pytest.fixture
def server(judge: ScriptedJudgeServer, cache_url: str) -> Iterator[AppServer]:
    app = create_app(make_gateway(judge, cache_url), ServerSettings(default_rubric="factual-qa", max_items=64,
                                                                     max_body_bytes=1_000_000))
    with serving(app) as running:
        yield running


def judged_by_response(call: ChatCall) -> Reply:
    """A judge that passes responses mentioning Paris and fails the rest (reads the fenced response)."""
    text = call.last_user_text
    response = text.split("<response-", 1)[1]
    best = "Paris" in response
    schema = call.body["response_format"]["json_schema"]["schema"]
    verdict = {field: {"rationale": "r", "score": spec["properties"]["score"]["enum"][-1 if best else 0]}
               for field, spec in schema["properties"].items()}
    return Reply.json(verdict)


async def test_v1_reward_returns_results_in_request_order(server: AppServer, judge: ScriptedJudgeServer) -> None:
    judge.set_script(judged_by_response)
    client = RewardClient(server.url)
    items = [Item(id=str(i), prompt="Capital of France?", response="Paris." if i % 2 == 0 else "No idea.")
             for i in range(6)]
    results = await client.score(items, "factual-qa")
    await client.aclose()
    assert [r.id for r in results] == [str(i) for i in range(6)]
    assert [r.reward for r in results] == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert all(r.rubric.startswith("factual-qa@") for r in results)


def test_v1_reward_accepts_inline_rubrics_and_per_request_votes(server: AppServer, judge: ScriptedJudgeServer) -> None:
    rubric = {"id": "inline", "criteria": [{"id": "ok", "kind": "principle", "text": "The response is ok."}]}
    body = {"rubric": rubric, "items": [GOOD], "votes": 3}
    response = httpx.post(f"{server.url}/v1/reward", json=body, timeout=30)
    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    assert result["rubric"].startswith("inline@") and result["votes"] == 3 and len(judge.calls) == 3


def test_unscorable_items_are_null_with_a_reason(server: AppServer, judge: ScriptedJudgeServer) -> None:
    judge.set_script(lambda call: Reply.text("no json here"))
    response = httpx.post(f"{server.url}/v1/reward", json={"items": [GOOD]}, timeout=30)
    [result] = response.json()["results"]
    assert response.status_code == 200 and result["reward"] is None and "VerdictParseError" in result["reason"]


def test_get_reward_follows_the_openrlhf_contract(server: AppServer, judge: ScriptedJudgeServer) -> None:
    judge.set_script(judged_by_response)
    prompt = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    queries = [prompt + "Paris.<|im_end|><|endoftext|><|endoftext|>", prompt + "Lyon, I think.<|im_end|>"]
    body = {"query": queries, "prompts": [prompt, prompt], "labels": ["helpfulness", "rubric:factual-qa"]}
    response = httpx.post(f"{server.url}/get_reward", json=body, timeout=30)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["rewards"] == [1.0, 0.0] and data["scores"] == [1.0, 0.0]
    assert tuple(data["extra_logs"]) == OPENRLHF_LOG_KEYS
    assert all(len(values) == 2 for values in data["extra_logs"].values())
    graded = [c.last_user_text.split("<response-", 1)[1] for c in judge.calls]
    assert any("\nParis.\n</response-" in g for g in graded)
    assert all("<|im_end|>" not in g and "<|endoftext|>" not in g for g in graded)


def test_get_reward_labels_may_carry_a_principle_and_unscorable_is_flagged(server: AppServer,
                                                                          judge: ScriptedJudgeServer) -> None:
    def script(call: ChatCall) -> Reply:
        if "Never mention cheese" in call.prompt_text:
            return Reply.error(400, "bad")
        return judged_by_response(call)

    judge.set_script(script)
    body = {"query": ["Q: capital? A: Paris", "Q: capital? A: Paris"], "prompts": ["Q: capital? A:"] * 2,
            "labels": ["Answer in one word.", '{"principle": "Never mention cheese."}']}
    data = httpx.post(f"{server.url}/get_reward", json=body, timeout=30).json()
    assert data["extra_logs"]["unscorable"] == [0.0, 1.0]
    assert data["rewards"] == [1.0, 1.0]  # the unscorable sample gets the batch mean, flagged
    assert "Answer in one word." in judge.calls[0].prompt_text


async def test_64_concurrent_openrlhf_callers_are_all_answered(server: AppServer, judge: ScriptedJudgeServer) -> None:
    judge.set_script(judged_by_response)

    async def one(client: httpx.AsyncClient, i: int) -> float:
        answer = "Paris" if i % 2 == 0 else "Berlin"
        body = {"query": [f"Q{i}: capital of France? {answer} ({i})"], "prompts": [f"Q{i}: capital of France?"],
                "labels": [""]}
        response = await client.post(f"{server.url}/get_reward", json=body)
        assert response.status_code == 200
        return float(response.json()["rewards"][0])

    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=64)) as client:
        rewards = await asyncio.gather(*(one(client, i) for i in range(64)))
    assert rewards == [1.0 if i % 2 == 0 else 0.0 for i in range(64)]
    assert len(judge.calls) == 64


def test_auth_is_checked_when_a_key_is_set(judge: ScriptedJudgeServer, cache_url: str) -> None:
    settings = ServerSettings(api_key="s3cret-key", default_rubric="helpfulness")
    with serving(create_app(make_gateway(judge, cache_url), settings)) as running:
        url = f"{running.url}/v1/reward"
        assert httpx.post(url, json={"items": [GOOD]}).status_code == 401
        wrong = httpx.post(url, json={"items": [GOOD]}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "API key" in wrong.json()["message"]
        right = httpx.post(url, json={"items": [GOOD]}, headers={"Authorization": "Bearer s3cret-key"}, timeout=30)
        assert right.status_code == 200
        assert httpx.get(f"{running.url}/healthz").status_code == 200  # liveness needs no key
        assert httpx.get(f"{running.url}/metrics").status_code == 401
        metrics = httpx.get(f"{running.url}/metrics", headers={"Authorization": "Bearer s3cret-key"}).text
        assert "s3cret-key" not in metrics


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"items": [{"prompt": "p", "response": "x" * 300_000}] * 4}, 413, "exceeds"),
        ({"items": [GOOD] * 65}, 413, "at most 64"),
        ({"items": []}, 422, "items"),
        ({"items": [{"prompt": "p"}]}, 422, "response"),
        ({"rubric": "no-such", "items": [GOOD]}, 400, "unknown rubric"),
        ({"rubric": {"id": "x", "criteria": []}, "items": [GOOD]}, 400, "invalid rubric"),
        ({"rubric": "../../etc/passwd", "items": [GOOD]}, 400, "by id"),
        ({"items": [GOOD], "votes": 999}, 400, "limit"),
    ],
)
def test_bad_requests_get_json_errors(server: AppServer, body: dict, status: int, message: str) -> None:
    response = httpx.post(f"{server.url}/v1/reward", json=body, timeout=30)
    assert response.status_code == status, response.text
    assert message in response.json()["message"]


def test_malformed_json_and_streamed_oversize_bodies(judge: ScriptedJudgeServer) -> None:
    settings = ServerSettings(default_rubric="helpfulness", max_body_bytes=4096)
    with serving(create_app(make_gateway(judge, None), settings)) as running:
        bad = httpx.post(f"{running.url}/v1/reward", content=b"{not json", headers={"content-type": "application/json"})
        assert bad.status_code == 422 and bad.json()["error"] == "invalid_request"

        def chunks() -> Iterator[bytes]:
            yield b'{"items": [{"prompt": "p", "response": "'
            for _ in range(10):
                yield b"x" * 1000
            yield b'"}]}'

        streamed = httpx.post(f"{running.url}/v1/reward", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413


def test_metrics_and_rubrics(server: AppServer) -> None:
    httpx.post(f"{server.url}/v1/reward", json={"items": [GOOD]}, timeout=30)
    text = httpx.get(f"{server.url}/metrics").text
    assert 'rubricgate_requests_total{endpoint="/v1/reward",status="200"} 1.0' in text
    assert "rubricgate_judge_calls_total 1.0" in text and "rubricgate_votes_total 1.0" in text
    assert "rubricgate_request_seconds_bucket" in text
    listed = httpx.get(f"{server.url}/v1/rubrics").json()
    assert listed["default"] == "factual-qa" and "helpfulness" in {r["id"] for r in listed["rubrics"]}


def test_graceful_shutdown_finishes_in_flight_requests(judge: ScriptedJudgeServer, cache_url: str) -> None:
    judge.set_script(lambda call: Reply.slow(1.0))
    running = AppServer(create_app(make_gateway(judge, cache_url), ServerSettings(default_rubric="helpfulness"))).start()
    outcome: dict[str, object] = {}

    def call() -> None:
        outcome["response"] = httpx.post(f"{running.url}/v1/reward", json={"items": [GOOD]}, timeout=30)

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.3)
    running.stop()  # asks uvicorn to exit while the judge is still thinking
    caller.join(timeout=30)
    response = outcome["response"]
    assert isinstance(response, httpx.Response) and response.status_code == 200
    assert response.json()["results"][0]["reward"] is not None


def test_serve_refuses_a_public_bind_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUBRICGATE_API_KEY", raising=False)
    result = CliRunner().invoke(cli_app, ["serve", "--host", "0.0.0.0", "--judge", "fake:best", "--allow-test-judges"])
    assert result.exit_code == 2 and "refusing to bind 0.0.0.0 without an API key" in result.stderr


def test_unscorable_reward_policies() -> None:
    from rubricgate.interfaces.openrlhf import openrlhf_response
    from rubricgate.models.reward import RewardResult

    results = [RewardResult(reward=0.2, rubric="r@1", judge="j", votes=1),
               RewardResult(reward=None, reason="x", rubric="r@1", judge="j", votes=1),
               RewardResult(reward=0.6, rubric="r@1", judge="j", votes=1)]
    assert openrlhf_response(results, "batch_mean").rewards == pytest.approx([0.2, 0.4, 0.6])
    assert openrlhf_response(results, -1.0).rewards[1] == -1.0
    assert json.dumps(openrlhf_response(results, "batch_mean").extra_logs["unscorable"]) == "[0.0, 1.0, 0.0]"


def test_reward_spec_can_be_overridden_per_request(server: AppServer, judge: ScriptedJudgeServer) -> None:
    judge.set_script(judged_by_response)
    item = {"prompt": "Capital of France?", "response": "Paris " * 20}
    body = {"items": [item], "reward": {"length_penalty": {"target_words": 10, "weight": 0.3}}}
    [shaped] = httpx.post(f"{server.url}/v1/reward", json=body, timeout=30).json()["results"]
    assert shaped["components"]["length_penalty"] == -0.3 and shaped["reward"] == 0.7
    bad = httpx.post(f"{server.url}/v1/reward", json={"items": [item], "reward": {"ensemble": "avg"}}, timeout=30)
    assert bad.status_code == 400 and "reward.ensemble" in bad.json()["message"]
