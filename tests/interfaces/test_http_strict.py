"""Strict request types, the key on the schema and docs, `Allow` on 405, rubric references as
input, responses and error codes on /metrics, and the run summary counting retried judge calls."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from rubricgate.interfaces.cli import app as cli_app
from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.interfaces.http import ServerSettings, create_app
from rubricgate.models.config import ScoringConfig
from tests.support.openai_server import Reply, ScriptedJudgeServer, sequence

KEY = "strict-test-key-41b7"
ITEM = {"prompt": "What is 2+2?", "response": "4"}


def client_for(api_key: str | None = None) -> TestClient:
    gateway = Gateway.open(GatewayConfig(judge="fake:best", scoring=ScoringConfig(votes=1, deadline_s=10)))
    return TestClient(create_app(gateway, ServerSettings(default_rubric="helpfulness", api_key=api_key)),
                      raise_server_exceptions=False)


@pytest.fixture
def client() -> Iterator[TestClient]:
    with client_for() as test_client:
        yield test_client


@pytest.mark.parametrize("votes", ["3", True, False, 2.5, "x", 0, [3]])
def test_votes_must_be_a_json_integer(client: TestClient, votes: object) -> None:
    reply = client.post("/v1/reward", json={"items": [ITEM], "votes": votes})
    assert reply.status_code == 422, reply.text
    assert reply.json()["error"] == "invalid_request" and "votes" in reply.json()["message"]


@pytest.mark.parametrize("votes", [2, 2.0])  # 2.0 is an integer in JSON Schema
def test_votes_as_an_integer_are_used(client: TestClient, votes: object) -> None:
    reply = client.post("/v1/reward", json={"items": [ITEM], "votes": votes})
    assert reply.status_code == 200 and reply.json()["results"][0]["votes"] == 2


@pytest.mark.parametrize("item_id", [True, 1.5])
def test_item_ids_are_text_or_integers(client: TestClient, item_id: object) -> None:
    assert client.post("/v1/reward", json={"items": [{**ITEM, "id": item_id}]}).status_code == 422


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json", "/metrics", "/v1/rubrics"])
def test_the_key_guards_the_schema_and_docs_too(path: str) -> None:
    with client_for(KEY) as client:
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get(path, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        assert client.get("/healthz").status_code == 200  # the one open route


def test_without_a_key_the_docs_are_open(client: TestClient) -> None:
    assert client.get("/openapi.json").json()["info"]["title"] == "rubricgate"
    assert "swagger" in client.get("/docs").text.lower()


@pytest.mark.parametrize(("method", "path", "allow"), [("GET", "/v1/reward", "POST"), ("DELETE", "/healthz", "GET"),
                                                         ("PUT", "/get_reward", "POST")])
def test_405_names_the_allowed_methods(client: TestClient, method: str, path: str, allow: str) -> None:
    reply = client.request(method, path)
    assert reply.status_code == 405 and reply.headers["allow"] == allow
    assert reply.json()["error"] == "http_error"


def test_the_rubric_reference_results_carry_is_accepted_as_input(client: TestClient) -> None:
    first = client.post("/v1/reward", json={"rubric": "helpfulness", "items": [ITEM]}).json()["results"][0]
    ref = first["rubric"]
    assert ref.startswith("helpfulness@")
    again = client.post("/v1/reward", json={"rubric": ref, "items": [ITEM]})
    assert again.status_code == 200 and again.json()["results"][0]["rubric"] == ref
    stale = client.post("/v1/reward", json={"rubric": "helpfulness@0123456789ab", "items": [ITEM]})
    assert stale.status_code == 400 and stale.json()["error"] == "usage_error"
    assert "0123456789ab" in stale.json()["message"] and ref in stale.json()["message"]


def test_a_reference_with_a_reward_override_is_accepted(client: TestClient) -> None:
    override = {"length_penalty": {"target_words": 50}}
    shaped = client.post("/v1/reward", json={"rubric": "helpfulness", "reward": override, "items": [ITEM]})
    assert shaped.status_code == 200, shaped.text
    ref = shaped.json()["results"][0]["rubric"]
    again = client.post("/v1/reward", json={"rubric": ref, "reward": override, "items": [ITEM]})
    assert again.status_code == 200, again.text


def test_metrics_count_responses_by_class_and_error_code(client: TestClient) -> None:
    client.post("/v1/reward", json={"items": [ITEM]})
    client.post("/v1/reward", json={"items": [ITEM], "votes": "3"})                       # 422 invalid_request
    client.post("/v1/reward", json={"rubric": "no-such-rubric", "items": [ITEM]})         # 400 usage_error
    client.get("/v1/reward")                                                               # 405 http_error
    client.post("/v1/reward", content=b"x" * (9 * 1024 * 1024),
                headers={"content-type": "application/json"})                              # 413 payload_too_large
    text = client.get("/metrics").text
    assert 'rubricgate_responses_total{class="2xx"} 1.0' in text
    assert 'rubricgate_responses_total{class="4xx"} 4.0' in text
    assert 'rubricgate_responses_total{class="5xx"} 0.0' in text
    for code, count in [("invalid_request", 1), ("usage_error", 1), ("http_error", 1), ("payload_too_large", 1),
                        ("judge_unavailable", 0), ("cache_error", 0), ("internal_error", 0)]:
        assert f'rubricgate_errors_total{{code="{code}"}} {count:.1f}' in text, code


def test_the_run_summary_counts_retried_judge_calls(tmp_path: Path) -> None:
    script = sequence(Reply.error(503), Reply.error(503), then=Reply.default())
    with ScriptedJudgeServer(script) as judge:
        result = CliRunner().invoke(cli_app, [
            "score", "--judge", "openai:judge-model", "--judge-base-url", judge.base_url, "--cache", "none",
            "--votes", "1", "--rubric", "helpfulness", "--prompt", "What is 2+2?", "--response", "4"])
        calls = judge.call_count
    assert calls == 3  # two 503s, then the answer
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stderr.splitlines() if "judge calls" in line)
    assert row.split()[-2] == "3" or row.rstrip(" │|").split()[-1] == "3", row
