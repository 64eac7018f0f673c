"""The HTTP API under hostile input: schemathesis against the OpenAPI schema finds no 5xx,
oversized and malformed bodies get 4xx JSON errors, and keys never leak into logs, metrics or
the cache. Everything runs on real uvicorn on 127.0.0.1."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.interfaces.http import ServerSettings, create_app
from rubricgate.models.config import BackendConfig, RetryPolicy, ScoringConfig
from tests.support.app_server import AppServer, serving
from tests.support.openai_server import ChatCall, Reply, ScriptedJudgeServer

SERVER_KEY = "srv-key-7f3a9c2e1b5d4f60a8e9"
JUDGE_KEY = "sk-judge-secret-3e8d1c0b9a7f6e5d4c3b"


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    cache = tmp_path_factory.mktemp("fuzz") / "cache.db"
    gateway = Gateway.open(GatewayConfig(judge="fake:best", cache_url=f"sqlite:///{cache}",
                                         scoring=ScoringConfig(votes=1, deadline_s=10)))
    app = create_app(gateway, ServerSettings(default_rubric="helpfulness", max_items=32, max_body_bytes=64 * 1024))
    with serving(app) as server:
        yield server


# Every check stays on. Two statuses are widened, each for a reason the schema cannot express:
# a schema-valid body may name a rubric the server does not have or an inline rubric that does
# not validate (400 usage_error), or exceed this server's body/batch limits (413); a body that
# breaks a declared maxLength is over the body limit too, and is refused with 413.
FUZZ_CONFIG = schemathesis.Config.from_dict({"checks": {
    "positive_data_acceptance": {"expected-statuses": ["2xx", "400", "404", "413"]},
    "negative_data_rejection": {"expected-statuses": ["400", "401", "404", "405", "413", "415", "422"]},
}})


def _headline(exc: BaseException) -> str:
    """The first lines of each schemathesis failure (its curl line can be megabytes)."""
    leaves = exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,)
    return "; ".join(f"{type(leaf).__name__}: " + " | ".join(str(leaf).splitlines()[:8])[:600] for leaf in leaves)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_schemathesis_every_check_passes(fuzz_server: AppServer, mode: GenerationMode) -> None:
    """Every operation in the server's own OpenAPI schema, valid and invalid data, ~40 cases each,
    with every schemathesis check on (no 5xx, status codes, content types, headers and bodies as
    declared, invalid data rejected, valid data accepted, 405 with `Allow` for other methods)."""
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json", config=FUZZ_CONFIG)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {"POST /v1/reward", "POST /get_reward", "GET /healthz"} <= {op.label for op in operations}
    failures: list[str] = []
    fuzzed: list[str] = []
    for operation in operations:

        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case: Any) -> None:
            response = case.call_and_validate(base_url=fuzz_server.url, timeout=30)  # every check
            if response.status_code >= 400:
                body = response.json()
                assert isinstance(body, dict) and body.get("message"), f"{response.status_code} without a JSON message"

        try:
            check()
        except Unsatisfiable:  # no invalid input exists (e.g. GET /healthz takes no parameters)
            assert mode is GenerationMode.NEGATIVE, operation.label
            continue
        except (Exception, BaseExceptionGroup) as exc:  # failed checks: collect every operation's, then report
            failures.append(f"{operation.label}: {type(exc).__name__}: {_headline(exc)}")
        fuzzed.append(operation.label)
    assert not failures, failures[:5]
    assert {"POST /v1/reward", "POST /get_reward"} <= set(fuzzed)


@pytest.mark.parametrize(("content", "headers", "status"), [
    (b"{", {"content-type": "application/json"}, 422),                       # truncated JSON
    (b"not json at all", {"content-type": "application/json"}, 422),
    (b"[1, 2, 3]", {"content-type": "application/json"}, 422),              # JSON, wrong shape
    (b'{"items": []}', {"content-type": "application/json"}, 422),          # empty batch
    (b'{"items": [{"prompt": 1}]}', {"content-type": "application/json"}, 422),
    (b'{"items": "x" }', {"content-type": "text/plain"}, 422),
    (b"\xff\xfe\x00garbage", {"content-type": "application/json"}, 422),    # not UTF-8
    ('{"items": [{"prompt": "q", "response": "' + "a" * 70_000 + '"}]}', {"content-type": "application/json"}, 413),
])
def test_malformed_and_oversized_bodies_get_4xx_json(fuzz_server: AppServer, content: bytes | str,
                                                      headers: dict[str, str], status: int) -> None:
    response = httpx.post(f"{fuzz_server.url}/v1/reward", content=content, headers=headers, timeout=30)
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["message"]


def test_oversized_streamed_body_without_length_gets_413(fuzz_server: AppServer) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"items": [{"prompt": "q", "response": "'
        for _ in range(100):
            yield b"a" * 1024
        yield b'"}]}'

    response = httpx.post(f"{fuzz_server.url}/v1/reward", content=chunks(), timeout=30,
                          headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"


def test_too_many_items_and_openrlhf_misalignment_are_4xx(fuzz_server: AppServer) -> None:
    many = {"items": [{"prompt": "q", "response": str(i)} for i in range(33)]}
    assert httpx.post(f"{fuzz_server.url}/v1/reward", json=many, timeout=30).status_code == 413
    bad = {"query": ["a", "b"], "prompts": ["a"], "labels": ["", ""]}
    response = httpx.post(f"{fuzz_server.url}/get_reward", json=bad, timeout=30)
    assert response.status_code == 400 and "same length" in response.json()["message"]


def echoing_judge(call: ChatCall) -> Reply:
    """A provider that echoes the key it got in its error, as some do on auth failures."""
    if "401 please" in call.last_user_text:
        return Reply.error(401, f"Incorrect API key provided: {call.headers.get('authorization', '')}")
    return Reply.default()


def test_keys_never_reach_logs_metrics_or_cache(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    cache = tmp_path / "cache.db"
    with ScriptedJudgeServer(echoing_judge, api_key=JUDGE_KEY) as judge:
        gateway = Gateway.open(GatewayConfig(
            judge="openai:judge-model", cache_url=f"sqlite:///{cache}",
            backend=BackendConfig(base_url=judge.base_url, api_key=JUDGE_KEY, timeout_s=10),  # type: ignore[arg-type]
            scoring=ScoringConfig(votes=1), retry=RetryPolicy(attempts=1)))
        app = create_app(gateway, ServerSettings(api_key=SERVER_KEY, default_rubric="helpfulness"))  # type: ignore[arg-type]
        with serving(app) as server:
            auth = {"Authorization": f"Bearer {SERVER_KEY}"}
            ok = httpx.post(f"{server.url}/v1/reward", headers=auth, timeout=30,
                            json={"items": [{"prompt": "q", "response": "fine"},
                                            {"prompt": "q", "response": "401 please"}]})
            assert ok.status_code == 200
            reasons = [r["reason"] for r in ok.json()["results"] if r["reward"] is None]
            assert reasons and "HTTP 401" in reasons[0]
            wrong = httpx.post(f"{server.url}/v1/reward", headers={"Authorization": f"Bearer {SERVER_KEY[:-1]}x"},
                               json={"items": [{"prompt": "q", "response": "a"}]}, timeout=30)
            assert wrong.status_code == 401 and wrong.json()["message"]
            metrics = httpx.get(f"{server.url}/metrics", headers=auth, timeout=30).text
            health = httpx.get(f"{server.url}/healthz", timeout=30).text
            bodies = ok.text + wrong.text + metrics + health
    captured = capfd.readouterr()
    logs = caplog.text + captured.out + captured.err
    with sqlite3.connect(cache) as conn:
        stored = "\n".join(str(row) for row in conn.execute("SELECT * FROM judgments"))
    assert stored  # something was cached, so the check below looked at real rows
    for secret in (SERVER_KEY, JUDGE_KEY):
        for fragment in (secret, secret[:12], secret[-12:]):
            assert fragment not in logs, "key in logs"
            assert fragment not in bodies, "key in a response, /metrics or /healthz"
            assert fragment not in stored, "key in the cache"
