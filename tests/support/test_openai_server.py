"""Tests of the scripted OpenAI-compatible server, over real HTTP on 127.0.0.1.

Clients: plain httpx and litellm (``openai/`` provider with ``api_base``), the way
rubricgate reaches hosted judges and vLLM servers.
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no cost-map fetch at import

import asyncio
import json
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import litellm
import pytest

from tests.support.openai_server import (
    DEFAULT_TEXT,
    FAULT_KINDS,
    ChatCall,
    Reply,
    ScriptedJudgeServer,
    extract_schema,
    generate_from_schema,
    sequence,
)

litellm.suppress_debug_info = True

MESSAGES = [
    {"role": "system", "content": "You are a strict judge."},
    {"role": "user", "content": "Compare answer A and answer B."},
]

# Nested objects, enums, arrays, a $ref into $defs, anyOf with null — the shapes
# pydantic's model_json_schema() produces for a judge verdict.
VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "verdict": {"type": "string", "enum": ["A", "B", "tie"]},
        "score": {"type": "integer", "minimum": 1, "maximum": 5},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "criteria": {
            "type": "array",
            "minItems": 1,
            "items": {"$ref": "#/$defs/Criterion"},
        },
        "meta": {
            "type": "object",
            "properties": {
                "severity": {"type": "string", "enum": ["low", "medium", "high"]},
                "flags": {"type": "array", "items": {"type": "string", "enum": ["bias", "length"]}},
                "safe": {"type": "boolean"},
                "note": {"anyOf": [{"type": "string", "maxLength": 40}, {"type": "null"}]},
            },
            "required": ["severity", "flags", "safe", "note"],
            "additionalProperties": False,
        },
    },
    "required": ["verdict", "score", "confidence", "criteria", "meta"],
    "additionalProperties": False,
    "$defs": {
        "Criterion": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 3},
                "rating": {"type": "integer", "enum": [0, 1, 2]},
                "weight": {"type": "number", "exclusiveMinimum": 0, "maximum": 2},
            },
            "required": ["name", "rating", "weight"],
            "additionalProperties": False,
        }
    },
}

VERDICT_VALIDATOR = jsonschema.Draft202012Validator(VERDICT_SCHEMA)

RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "verdict", "schema": VERDICT_SCHEMA, "strict": True},
}


@pytest.fixture
def server() -> Iterator[ScriptedJudgeServer]:
    with ScriptedJudgeServer() as srv:
        yield srv


def _litellm_kwargs(srv: ScriptedJudgeServer, **extra: Any) -> dict[str, Any]:
    return {
        "model": "openai/judge-model",
        "api_base": srv.base_url,
        "api_key": "sk-test",
        "max_retries": 0,
        "messages": MESSAGES,
        **extra,
    }


def _post(srv: ScriptedJudgeServer, body: dict[str, Any], timeout: float = 2.0) -> httpx.Response:
    return httpx.post(f"{srv.base_url}/chat/completions", json=body, timeout=timeout)


# ------------------------------------------------------------------ basics


def test_binds_loopback_and_serves_health_and_models(server: ScriptedJudgeServer) -> None:
    assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
    assert server._sock is not None and server._sock.getsockname()[0] == "127.0.0.1"
    health = httpx.get(f"{server.url}/health", timeout=2)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    models = httpx.get(f"{server.base_url}/models", timeout=2).json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["judge-model"]


def test_plain_request_gets_full_chat_completion(server: ScriptedJudgeServer) -> None:
    resp = _post(server, {"model": "judge-model", "messages": MESSAGES})
    assert resp.status_code == 200
    data = resp.json()
    assert data["object"] == "chat.completion"
    assert data["id"].startswith("chatcmpl-")
    assert isinstance(data["created"], int) and data["model"] == "judge-model"
    choice = data["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": DEFAULT_TEXT, "refusal": None}
    assert choice["finish_reason"] == "stop"
    words_in = sum(len(m["content"].split()) for m in MESSAGES)
    assert data["usage"] == {
        "prompt_tokens": words_in,
        "completion_tokens": len(DEFAULT_TEXT.split()),
        "total_tokens": words_in + len(DEFAULT_TEXT.split()),
    }


async def test_default_script_returns_schema_valid_json_via_litellm(
    server: ScriptedJudgeServer,
) -> None:
    resp = await litellm.acompletion(**_litellm_kwargs(server, response_format=RESPONSE_FORMAT))
    value = json.loads(resp.choices[0].message.content)
    jsonschema.validate(value, VERDICT_SCHEMA)
    assert value["verdict"] in ("A", "B", "tie")
    assert value["meta"]["severity"] in ("low", "medium", "high")
    assert resp.usage.prompt_tokens == sum(len(m["content"].split()) for m in MESSAGES)
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    # the server saw the OpenAI-format response_format untouched
    sent = server.calls[0].body["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["schema"] == VERDICT_SCHEMA
    # deterministic: the same request gets the same answer
    again = await litellm.acompletion(**_litellm_kwargs(server, response_format=RESPONSE_FORMAT))
    assert again.choices[0].message.content == resp.choices[0].message.content


def test_default_script_understands_json_object_and_vllm_guided_json(
    server: ScriptedJudgeServer,
) -> None:
    small = {
        "type": "object",
        "properties": {"label": {"enum": ["yes", "no"]}},
        "required": ["label"],
    }
    bodies = [
        {"response_format": {"type": "json_object", "schema": small}},
        {"guided_json": small},
        {"structured_outputs": {"json": json.dumps(small)}},
    ]
    for extra in bodies:
        data = _post(server, {"model": "m", "messages": MESSAGES, **extra}).json()
        jsonschema.validate(json.loads(data["choices"][0]["message"]["content"]), small)
    # JSON mode without a schema still answers with a JSON object
    data = _post(
        server, {"model": "m", "messages": MESSAGES, "response_format": {"type": "json_object"}}
    ).json()
    assert isinstance(json.loads(data["choices"][0]["message"]["content"]), dict)


@pytest.mark.parametrize(
    "schema",
    [
        VERDICT_SCHEMA,
        {"type": "integer", "exclusiveMinimum": 3, "exclusiveMaximum": 6},
        {"type": "integer", "minimum": 10, "multipleOf": 5},
        {"type": "number", "minimum": -1.5, "maximum": -1.25},
        {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "multipleOf": 0.25},
        {"type": "string", "minLength": 12, "maxLength": 14},
        {"type": "string", "format": "date-time"},
        {"type": "array", "items": {"type": "boolean"}, "minItems": 3, "maxItems": 3},
        {"type": "array", "items": {"type": "integer"}, "maxItems": 0},
        {"type": "array", "prefixItems": [{"const": "x"}, {"type": "null"}]},
        {"type": ["null", "string"], "enum": ["p", "q", None]},
        {"oneOf": [{"type": "integer", "minimum": 100}, {"type": "string", "maxLength": 1}]},
        {
            "allOf": [
                {"properties": {"a": {"type": "integer"}}, "required": ["a"]},
                {"properties": {"b": {"const": 7}}, "required": ["b"]},
            ]
        },
        {"type": "object", "required": ["anything"]},
    ],
)
def test_schema_generator_produces_valid_values(schema: dict[str, Any]) -> None:
    jsonschema.validate(generate_from_schema(schema), schema)
    for seed in range(20):
        jsonschema.validate(generate_from_schema(schema, rng=random.Random(seed)), schema)


def test_schema_generator_enum_first_or_seeded_choice() -> None:
    schema = {"type": "string", "enum": ["x", "y", "z"]}
    assert generate_from_schema(schema) == "x"
    picks = {generate_from_schema(schema, rng=random.Random(seed)) for seed in range(30)}
    assert picks == {"x", "y", "z"}
    assert extract_schema({"messages": []}) == (None, False)


def test_logprobs_follow_the_content(server: ScriptedJudgeServer) -> None:
    server.set_script(lambda call: Reply.text("Score: 4 out of 5"))
    data = _post(
        server, {"model": "m", "messages": MESSAGES, "logprobs": True, "top_logprobs": 3}
    ).json()
    entries = data["choices"][0]["logprobs"]["content"]
    assert [e["token"] for e in entries] == ["Score:", " 4", " out", " of", " 5"]
    for entry in entries:
        assert entry["logprob"] < 0 and len(entry["top_logprobs"]) == 3
        top = entry["top_logprobs"]
        assert top[0]["token"] == entry["token"]
        assert [t["logprob"] for t in top] == sorted((t["logprob"] for t in top), reverse=True)
        assert sum(math.exp(t["logprob"]) for t in top) <= 1.0 + 1e-9
        assert len({t["token"] for t in top}) == 3
    assert [t["token"] for t in entries[1]["top_logprobs"]] == [" 4", " 5", " 6"]
    # no logprobs asked -> none sent
    plain = _post(server, {"model": "m", "messages": MESSAGES}).json()
    assert plain["choices"][0]["logprobs"] is None


async def test_logprobs_through_litellm(server: ScriptedJudgeServer) -> None:
    resp = await litellm.acompletion(
        **_litellm_kwargs(server, response_format=RESPONSE_FORMAT, logprobs=True, top_logprobs=2)
    )
    content = resp.choices[0].message.content
    tokens = resp.choices[0].logprobs.content
    assert "".join(t.token for t in tokens) == content
    assert all(len(t.top_logprobs) == 2 for t in tokens)


# ------------------------------------------------------------------ errors


async def test_429_surfaces_as_rate_limit_error(server: ScriptedJudgeServer) -> None:
    server.set_script(lambda call: Reply.error(429, retry_after=0.1))
    raw = _post(server, {"model": "m", "messages": MESSAGES})
    assert raw.status_code == 429
    assert raw.headers["retry-after"] == "0.1" and raw.headers["retry-after-ms"] == "100"
    assert raw.json()["error"]["code"] == "rate_limit_exceeded"
    with pytest.raises(litellm.RateLimitError):
        await litellm.acompletion(**_litellm_kwargs(server))
    assert len(server.calls) == 2  # max_retries=0: exactly one request from litellm


@pytest.mark.parametrize(
    ("status", "exc"),
    [
        (500, litellm.InternalServerError),
        (503, litellm.ServiceUnavailableError),
        (400, litellm.BadRequestError),
        (401, litellm.AuthenticationError),
    ],
)
async def test_http_errors_map_to_litellm_exceptions(
    server: ScriptedJudgeServer, status: int, exc: type[Exception]
) -> None:
    server.set_script(lambda call: Reply.error(status))
    with pytest.raises(exc):
        await litellm.acompletion(**_litellm_kwargs(server))
    assert _post(server, {"model": "m", "messages": MESSAGES}).status_code == status


async def test_slow_reply_hits_client_timeout(server: ScriptedJudgeServer) -> None:
    server.set_script(lambda call: Reply.slow(5.0, then=Reply.text("too late")))
    started = time.monotonic()
    with pytest.raises(litellm.Timeout):
        await litellm.acompletion(**_litellm_kwargs(server, timeout=0.2))
    assert time.monotonic() - started < 1.0
    with pytest.raises(httpx.ReadTimeout):
        _post(server, {"model": "m", "messages": MESSAGES}, timeout=0.1)
    # a short delay is just a delay
    server.set_script(lambda call: Reply.text("on time", delay_s=0.15))
    started = time.monotonic()
    resp = await litellm.acompletion(**_litellm_kwargs(server, timeout=2))
    assert resp.choices[0].message.content == "on time"
    assert time.monotonic() - started >= 0.15


def test_connection_reset_malformed_and_truncated_bodies(server: ScriptedJudgeServer) -> None:
    body = {"model": "m", "messages": MESSAGES}
    server.set_script(lambda call: Reply.reset())
    with pytest.raises(httpx.ReadError):  # TCP RST, no response at all
        _post(server, body)
    server.set_script(lambda call: Reply.cut_off())
    with pytest.raises(httpx.RemoteProtocolError):  # body shorter than Content-Length
        _post(server, body)
    server.set_script(lambda call: Reply.malformed())
    resp = _post(server, body)
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        resp.json()
    server.set_script(lambda call: Reply.truncated("The answer is clearly B because"))
    data = _post(server, body).json()
    assert data["choices"][0]["message"]["content"] == "The answer is c"
    assert data["choices"][0]["finish_reason"] == "length"
    # the server survives all of it
    server.set_script(None)
    assert _post(server, body).json()["choices"][0]["message"]["content"] == DEFAULT_TEXT


async def test_reset_and_malformed_through_litellm(server: ScriptedJudgeServer) -> None:
    # litellm reports both as InternalServerError (an openai "Connection error." / JSON error)
    for reply in (Reply.reset(), Reply.malformed()):
        server.set_script(lambda call, reply=reply: reply)
        with pytest.raises(litellm.InternalServerError):
            await litellm.acompletion(**_litellm_kwargs(server))


# ------------------------------------------------------------------ recording and scripting


async def test_calls_record_every_request(server: ScriptedJudgeServer) -> None:
    seen: list[int] = []

    def script(call: ChatCall) -> Reply | str:
        seen.append(call.index)
        return Reply.text(f"reply {call.index} to {call.last_user_text.split()[0]}")

    server.set_script(script)
    resp = await litellm.acompletion(**_litellm_kwargs(server, temperature=0.0, max_tokens=64))
    assert resp.choices[0].message.content == "reply 0 to Compare"
    _post(server, {"model": "other", "messages": [{"role": "user", "content": "second"}]})

    calls = server.calls
    assert [c.index for c in calls] == [0, 1] == seen
    first = calls[0]
    assert first.model == "judge-model"
    assert first.messages == MESSAGES
    assert first.body["temperature"] == 0.0 and first.body["max_tokens"] == 64
    assert first.headers["authorization"] == "Bearer sk-test"
    assert all(name == name.lower() for name in first.headers)
    assert calls[1].model == "other" and calls[1].prompt_text == "second"
    assert first.received_at <= calls[1].received_at
    server.reset()
    assert server.calls == []
    _post(server, {"model": "m", "messages": MESSAGES})
    assert server.calls[0].index == 0


def test_sequence_async_scripts_and_broken_scripts(server: ScriptedJudgeServer) -> None:
    body = {"model": "m", "messages": MESSAGES}
    server.set_script(sequence(Reply.error(429), "second", then=Reply.json({"ok": True})))
    assert _post(server, body).status_code == 429
    assert _post(server, body).json()["choices"][0]["message"]["content"] == "second"
    assert _post(server, body).json()["choices"][0]["message"]["content"] == '{"ok": true}'

    async def async_script(call: ChatCall) -> Reply:
        await asyncio.sleep(0)
        return Reply.text("from async")

    server.set_script(async_script)
    assert _post(server, body).json()["choices"][0]["message"]["content"] == "from async"

    def broken(call: ChatCall) -> Reply:
        raise KeyError("oops")

    server.set_script(broken)
    resp = _post(server, body)
    assert resp.status_code == 500 and "KeyError" in resp.json()["error"]["message"]
    assert len(server.errors) == 1 and isinstance(server.errors[0], KeyError)


def test_api_key_and_bad_requests() -> None:
    with ScriptedJudgeServer(api_key="sk-right") as srv:
        url = f"{srv.base_url}/chat/completions"
        body = {"model": "m", "messages": MESSAGES}
        assert httpx.post(url, json=body, timeout=2).status_code == 401
        ok = httpx.post(url, json=body, headers={"Authorization": "Bearer sk-right"}, timeout=2)
        assert ok.status_code == 200
        bad = httpx.post(
            url, content=b"{not json", headers={"Authorization": "Bearer sk-right"}, timeout=2
        )
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
        assert len(srv.calls) == 3


def test_streaming_sse(server: ScriptedJudgeServer) -> None:
    server.set_script(lambda call: Reply.text("alpha beta gamma"))
    body = {
        "model": "m",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream("POST", f"{server.base_url}/chat/completions", json=body, timeout=2) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "alpha beta gamma"
    assert chunks[-1]["usage"]["completion_tokens"] == 3


# ------------------------------------------------------------------ latency, concurrency, shutdown


async def test_latency_applies_and_requests_run_concurrently() -> None:
    with ScriptedJudgeServer(latency_s=0.2, jitter_s=0.05, seed=3) as srv:
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=2) as client:
            started = time.monotonic()
            responses = await asyncio.gather(
                *(
                    client.post("/chat/completions", json={"model": "m", "messages": MESSAGES})
                    for _ in range(10)
                )
            )
            elapsed = time.monotonic() - started
    assert all(r.status_code == 200 for r in responses)
    assert 0.2 <= elapsed < 0.2 * 10 / 2  # every request waited, and not one after another
    assert sorted(c.index for c in srv.calls) == list(range(10))


def test_stop_does_not_wait_for_sleeping_replies() -> None:
    srv = ScriptedJudgeServer(lambda call: Reply.slow(30.0)).start()
    errors: list[BaseException] = []

    def client() -> None:
        try:
            _post(srv, {"model": "m", "messages": MESSAGES}, timeout=5)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=client)
    thread.start()
    deadline = time.monotonic() + 1
    while not srv.calls and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    srv.stop()
    thread.join(timeout=2)
    assert time.monotonic() - started < 1.0
    assert not thread.is_alive() and errors == []  # the sleeping reply was answered at stop
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{srv.port}/health", timeout=0.5)


# ------------------------------------------------------------------ fault injection


def _fault_run(seed: int, n: int = 50) -> tuple[list[str], list[str | None]]:
    """n sequential requests against a fresh server; the outcome of each, and the
    fault the server says it injected."""
    outcomes: list[str] = []
    with ScriptedJudgeServer(fault_rate=0.3, seed=seed, fault_delay_s=5.0) as srv:
        with httpx.Client(base_url=srv.base_url, timeout=0.15) as client:
            for _ in range(n):
                try:
                    resp = client.post(
                        "/chat/completions",
                        json={
                            "model": "m",
                            "messages": MESSAGES,
                            "response_format": RESPONSE_FORMAT,
                        },
                    )
                except httpx.TimeoutException:
                    outcomes.append("timeout")
                    continue
                except (httpx.ReadError, httpx.RemoteProtocolError):
                    outcomes.append("reset")
                    continue
                if resp.status_code != 200:
                    outcomes.append(str(resp.status_code))
                    continue
                try:
                    data = resp.json()
                except json.JSONDecodeError:
                    outcomes.append("malformed")
                    continue
                choice = data["choices"][0]
                try:
                    VERDICT_VALIDATOR.validate(json.loads(choice["message"]["content"]))
                except (json.JSONDecodeError, jsonschema.ValidationError):
                    assert choice["finish_reason"] == "length"
                    outcomes.append("truncated")
                else:
                    outcomes.append("ok")
        faults = [c.fault for c in srv.calls]
    assert len(faults) == n
    return outcomes, faults


def test_fault_rate_mixes_faults_and_is_repeatable() -> None:
    outcomes, faults = _fault_run(seed=11)
    counts = Counter(outcomes)
    expected = {
        None: "ok",
        "timeout": "timeout",
        "rate_limit": "429",
        "server_error": "500",
        "unavailable": "503",
        "malformed": "malformed",
        "truncated": "truncated",
        "reset": "reset",
    }
    assert outcomes == [expected[f] for f in faults]  # each fault looks like what it says
    assert 30 <= counts["ok"] <= 45  # ~70% successes
    assert len(set(outcomes) - {"ok"}) >= 4  # a real mix of fault kinds
    again, faults_again = _fault_run(seed=11)
    assert again == outcomes and faults_again == faults


async def test_fault_rate_through_litellm_is_repeatable() -> None:
    async def run(seed: int) -> list[str]:
        kinds = tuple(k for k in FAULT_KINDS if k != "timeout")
        names: list[str] = []
        with ScriptedJudgeServer(fault_rate=0.3, seed=seed, fault_kinds=kinds) as srv:
            for _ in range(20):
                try:
                    await litellm.acompletion(**_litellm_kwargs(srv, timeout=30))  # generous: a loaded machine must not turn a draw into a timeout
                    names.append("ok")
                except Exception as exc:
                    names.append(type(exc).__name__)
        return names

    first = await run(5)
    assert first == await run(5)
    assert first != await run(6)
    assert "ok" in first and {"RateLimitError", "InternalServerError"} & set(first)
