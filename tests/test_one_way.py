"""One way through: every entry point configured by the same `RUBRICGATE_*` variables scores the
same items with the same judge, fence key and cache keys, so after the first all are cache hits.

The judge is a real OpenAI-compatible server on 127.0.0.1 that counts its calls: a cache miss
anywhere after the first entry point shows up as a new call.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from rubricgate import Item, open_gateway
from rubricgate.integrations.trl import rubric_reward_sync
from rubricgate.integrations.verl import compute_score
from rubricgate.interfaces.cli import app
from rubricgate.interfaces.settings import Settings, field_variables
from tests.conftest import REPO
from tests.support.openai_server import ScriptedJudgeServer

RUBRIC = "helpfulness"
PAIRS = [
    {"id": "capital", "prompt": "What is the capital of France?", "chosen": "The capital of France is Paris.",
     "rejected": "France is a country in Europe with many cities."},
    {"id": "boil", "prompt": "At what temperature does water boil at sea level?",
     "chosen": "Water boils at 100 degrees Celsius (212 F) at sea level.", "rejected": "It depends on the pot."},
]
ITEMS = [{"id": f"{p['id']}/{side}", "prompt": p["prompt"], "response": p[side]}
         for p in PAIRS for side in ("chosen", "rejected")]


@pytest.fixture
def judge() -> Iterator[ScriptedJudgeServer]:
    with ScriptedJudgeServer(seed=7) as server:
        yield server


@pytest.fixture
def configured(judge: ScriptedJudgeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The whole configuration in the environment, as an operator would set it once."""
    monkeypatch.setenv("RUBRICGATE_JUDGE", "openai:judge-model")
    monkeypatch.setenv("RUBRICGATE_JUDGE_BASE_URL", judge.base_url)
    monkeypatch.setenv("RUBRICGATE_CACHE", str(tmp_path / "cache.db"))
    monkeypatch.setenv("RUBRICGATE_RUBRIC", RUBRIC)
    return tmp_path


def test_every_entry_point_hits_the_first_ones_cache(configured: Path, judge: ScriptedJudgeServer) -> None:
    items_file = configured / "items.jsonl"
    items_file.write_text("".join(json.dumps(i) + "\n" for i in ITEMS))
    pairs_file = configured / "pairs.jsonl"
    pairs_file.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))

    # 1. `rubricgate score` fills the cache: one judge call per vote.
    scored = configured / "scored.jsonl"
    result = CliRunner().invoke(app, ["score", "--rubric", RUBRIC, "--input", str(items_file), "--output", str(scored)])
    assert result.exit_code == 0, result.output
    first = [json.loads(line)["reward"] for line in scored.read_text().splitlines()]
    assert all(r is not None for r in first)
    calls = judge.call_count
    assert calls == len(ITEMS) * Settings().votes

    # 2. The Python API.
    async def python_api() -> list[float | None]:
        async with open_gateway() as gateway:
            results = await gateway.score([Item.model_validate(i) for i in ITEMS], RUBRIC)
        assert all(r.cached for r in results)
        return [r.reward for r in results]

    assert asyncio.run(python_api()) == first
    # 3. TRL's reward function.
    reward = rubric_reward_sync(RUBRIC)
    assert reward([i["prompt"] for i in ITEMS], [i["response"] for i in ITEMS]) == first
    # 4. verl's compute_score.
    verl = [compute_score("chat", i["response"], None, {"prompt": i["prompt"]}) for i in ITEMS]
    assert [v["score"] for v in verl] == first
    assert all(v["cached"] == 1.0 for v in verl)
    # 5. `rubricgate serve`, a real process configured by the same variables.
    with _Served() as url:
        body = httpx.post(f"{url}/v1/reward", json={"items": [{"prompt": i["prompt"], "response": i["response"]}
                                                              for i in ITEMS]}, timeout=60).json()
    assert [r["reward"] for r in body["results"]] == first
    assert all(r["cached"] for r in body["results"])
    # 6. `rubricgate eval` on the same responses as preference pairs.
    result = CliRunner().invoke(app, ["eval", str(pairs_file), "--rubric", RUBRIC, "--json"])
    assert result.exit_code in (0, 1), result.output
    report = json.loads(result.stdout)
    assert report["variants"][0]["judge_calls_run"] == 0

    assert judge.call_count == calls, "an entry point missed the cache"


def test_every_variable_the_readme_names_is_a_setting() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"RUBRICGATE_[A-Z_]+[A-Z]", readme))
    known = set(field_variables().values()) | {"RUBRICGATE_TEST_MODEL_DIR", "RUBRICGATE_SOAK_S"}
    assert named - known == set()


def test_a_malformed_variable_is_a_usage_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUBRICGATE_VOTES", "many")
    result = CliRunner().invoke(app, ["score", "--rubric", RUBRIC, "--prompt", "p", "--response", "r",
                                      "--judge", "fake:best", "--cache", "none"])
    assert result.exit_code == 2
    assert "RUBRICGATE_VOTES" in result.output
    assert "Traceback" not in result.output


def test_explicit_arguments_win_over_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUBRICGATE_VOTES", "5")
    monkeypatch.setenv("RUBRICGATE_JUDGE", "fake:worst")
    settings = Settings()
    assert settings.gateway_config().scoring.votes == 5
    assert settings.gateway_config(votes=2, judge="fake:best").scoring.votes == 2
    assert settings.gateway_config(judge="fake:best").judge == "fake:best"
    assert settings.gateway_config().judge == "fake:worst"


@pytest.mark.parametrize(("spec", "expected"), [("fake:best", 32), ("openai:m", 32), ("openai:m+logprobs", 32)])
def test_concurrency_defaults_to_what_the_judge_asks(spec: str, expected: int) -> None:
    async def run() -> int:
        async with open_gateway(judge=spec, cache="none") as gateway:
            return gateway.concurrency

    assert asyncio.run(run()) == expected


class _Served:
    """`rubricgate serve` in a child process with this process's environment."""

    def __enter__(self) -> str:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.process = subprocess.Popen([sys.executable, "-m", "rubricgate", "serve", "--port", str(port)],
                                        cwd=REPO, env=dict(os.environ), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited: {self.process.communicate()[1]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    return url
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError("serve did not start within 60 s")

    def __exit__(self, *_: object) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.communicate(timeout=60)
