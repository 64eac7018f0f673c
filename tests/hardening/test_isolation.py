"""One hostile item never hurts another caller: lone surrogates are normalised at the boundary,
and an unexpected error scoring one item makes only that item null. Real uvicorn on 127.0.0.1,
the scripted OpenAI-compatible judge, a real SQLite cache; ~20 concurrent valid callers beside
the hostile one (bounded, loopback only)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from rubricgate.interfaces.cli import app as cli_app
from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.interfaces.http import ServerSettings, create_app
from rubricgate.judges.fake import best_reply
from rubricgate.models.config import BackendConfig, JudgeCapabilities, ScoringConfig
from rubricgate.models.judging import JudgeReply, JudgeRequest
from rubricgate.models.reward import Item, clean_text
from tests.support.app_server import AppServer, serving
from tests.support.openai_server import ScriptedJudgeServer

VALID_CALLERS = 20
# Raw JSON bodies: the escapes reach the server as written (a lone high, a lone low surrogate).
HOSTILE_BODIES = [
    b'{"items": [{"id": "h1", "prompt": "Say hi.\\ud800", "response": "hi \\ud800 there"}]}',
    b'{"items": [{"id": "h2", "prompt": [{"role": "user", "content": "\\udfff?"}], "response": "\\udc00"}]}',
    b'{"rubric": {"id": "sur", "criteria": [{"id": "a", "kind": "principle", "text": "The response \\ud800 is kind."}]},'
    b' "items": [{"id": "h3", "prompt": "q", "response": "r"}]}',
]


def valid_body(caller: int) -> dict[str, object]:
    return {"items": [{"id": f"v{caller}", "prompt": "What is the capital of France?",
                       "response": f"Paris is the capital of France. ({caller})"}]}


async def storm(url: str, hostile: list[bytes], rounds: int = 3) -> tuple[list[httpx.Response], list[httpx.Response]]:
    """`VALID_CALLERS` valid requests and the hostile ones at once, `rounds` times."""
    valid: list[httpx.Response] = []
    bad: list[httpx.Response] = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        for _ in range(rounds):
            replies = await asyncio.gather(
                *(client.post("/v1/reward", json=valid_body(c)) for c in range(VALID_CALLERS)),
                *(client.post("/v1/reward", content=body, headers={"content-type": "application/json"})
                  for body in hostile))
            valid += replies[:VALID_CALLERS]
            bad += replies[VALID_CALLERS:]
    return valid, bad


@pytest.fixture(scope="module")
def judge() -> Iterator[ScriptedJudgeServer]:
    with ScriptedJudgeServer() as server:  # schema-valid verdicts
        yield server


@pytest.fixture
def server(judge: ScriptedJudgeServer, tmp_path: Path) -> Iterator[AppServer]:
    gateway = Gateway.open(GatewayConfig(judge="openai:judge-model", cache_url=f"sqlite:///{tmp_path / 'cache.db'}",
                                         backend=BackendConfig(base_url=judge.base_url, timeout_s=10),
                                         scoring=ScoringConfig(votes=1, deadline_s=20)))
    # A wide window so the hostile items share micro-batches with the valid ones.
    with serving(create_app(gateway, ServerSettings(default_rubric="helpfulness", batch_window_s=0.05))) as app:
        yield app


def test_lone_surrogates_beside_concurrent_valid_callers(server: AppServer, judge: ScriptedJudgeServer) -> None:
    valid, hostile = asyncio.run(storm(server.url, HOSTILE_BODIES))
    assert [r.status_code for r in valid] == [200] * len(valid)
    assert all(r.json()["results"][0]["reward"] is not None for r in valid)
    for reply in hostile:
        assert reply.status_code == 200, reply.text
        [result] = reply.json()["results"]
        assert result["reward"] is not None or result["reason"]
    # Normalised, not dropped: the judge saw U+FFFD where the lone surrogate was.
    assert any("hi \ufffd there" in json.dumps(call.messages, ensure_ascii=False) for call in judge.calls)
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'rubricgate_responses_total{class="5xx"} 0.0' in metrics
    assert 'rubricgate_errors_total{code="internal_error"} 0.0' in metrics


class TrapJudge:
    """A judge with a bug: an unexpected (non-rubricgate) error for responses holding 'TRAP'."""

    name = "trap:judge"
    prefers_rationale = True
    capabilities = JudgeCapabilities()

    async def complete(self, request: JudgeRequest) -> JudgeReply:
        await asyncio.sleep(0.01)
        if "TRAP" in request.messages[-1].content or any("TRAP" in m.content for m in request.messages):
            raise KeyError("bug in the judge client")
        return JudgeReply(text=best_reply(request.form), backend=self.name)

    async def aclose(self) -> None:
        return None


def test_an_unexpected_error_for_one_item_leaves_its_batch_mates_alone(tmp_path: Path) -> None:
    config = GatewayConfig(judge="trap:judge", scoring=ScoringConfig(votes=1, deadline_s=20))
    gateway = Gateway(config, TrapJudge(), store=None)
    trap = json.dumps({"items": [{"id": "t", "prompt": "q", "response": "TRAP"},
                                 {"id": "ok", "prompt": "q", "response": "fine"}]}).encode()
    with serving(create_app(gateway, ServerSettings(default_rubric="helpfulness", batch_window_s=0.05))) as app:
        valid, hostile = asyncio.run(storm(app.url, [trap], rounds=2))
        metrics = httpx.get(f"{app.url}/metrics").text
    assert [r.status_code for r in valid] == [200] * len(valid)
    assert all(r.json()["results"][0]["reward"] == 1.0 for r in valid)
    for reply in hostile:
        assert reply.status_code == 200, reply.text
        trapped, fine = reply.json()["results"]
        assert trapped["reward"] is None and trapped["reason"].startswith("internal_error: KeyError")
        assert "bug in the judge client" not in trapped["reason"]  # details stay in the server log
        assert fine["reward"] == 1.0
    assert 'rubricgate_responses_total{class="5xx"} 0.0' in metrics


def test_cli_scores_the_other_lines_of_a_file_with_a_lone_surrogate(tmp_path: Path) -> None:
    lines = ['{"id": "1", "prompt": "q", "response": "fine"}',
             '{"id": "2", "prompt": "q\\ud800", "response": "bad \\udfff text"}',
             '{"id": "3", "prompt": "q", "response": "also fine"}']
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(cli_app, ["score", "--judge", "fake:best", "--cache", str(tmp_path / "c.db"),
                                          "--rubric", "helpfulness", "--input", str(source), "--output", str(out)])
    assert result.exit_code == 0, result.output
    written = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in written] == ["1", "2", "3"]
    assert all(r["reward"] is not None for r in written)


@pytest.mark.parametrize(("raw", "clean"), [
    ("a\ud800b", "a\ufffdb"), ("\udfff", "\ufffd"), ("ok \U0001f600", "ok \U0001f600"), ("plain", "plain"),
    (["x\ud800", {"k\udc00": "v"}], ["x\ufffd", {"k\ufffd": "v"}]),
])
def test_clean_text_replaces_only_lone_surrogates(raw: object, clean: object) -> None:
    assert clean_text(raw) == clean


def test_items_are_normalised_whatever_their_source() -> None:
    item = Item.model_validate(json.loads('{"id": "\\ud800", "prompt": [{"role": "user", "content": "\\udfff"}],'
                                          ' "response": "r\\ud800", "reference": "\\ud800"}'))
    assert item.id == item.reference == "\ufffd" and item.response == "r\ufffd"
    assert not isinstance(item.prompt, str) and item.prompt[0].content == "\ufffd"
    item.model_dump_json().encode()  # encodable: no surrogate left
