"""The operator chooses the judges (DESIGN 11): a request may name only judges from the server's
allow-list, `fake:` judges run only when the operator allows them, and request data cannot make
the server open connections to new judges. Real uvicorn on 127.0.0.1, a scripted local judge."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from rubricgate.interfaces.cli import app as cli_app
from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.interfaces.http import ServerSettings, create_app
from rubricgate.interfaces.openrlhf import parse_label
from rubricgate.models.config import BackendConfig, RetryPolicy, ScoringConfig
from tests.support.app_server import AppServer, serving
from tests.support.openai_server import ScriptedJudgeServer

REPO = Path(__file__).resolve().parents[2]
ITEM = {"prompt": "What is 2+2?", "response": "asdf qwerty garbage"}
INLINE = {"id": "inline", "criteria": [{"id": "ok", "kind": "principle", "text": "The response is ok."}]}
SHAPED_YAML = """id: RUBRIC
criteria:
  - {id: ok, kind: principle, text: The response is ok.}
reward:
  judges: [JUDGE]
"""


@pytest.fixture(scope="module")
def judge() -> Iterator[ScriptedJudgeServer]:
    with ScriptedJudgeServer() as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh(judge: ScriptedJudgeServer) -> None:
    judge.reset()
    judge.set_script(None)


@pytest.fixture
def rubric_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "rubrics"
    folder.mkdir()
    for name, judge in (("shaped-second", "openai:second"), ("shaped-other", "openai:other")):
        (folder / f"{name}.yaml").write_text(SHAPED_YAML.replace("RUBRIC", name).replace("JUDGE", judge))
    return folder


def gateway(judge: ScriptedJudgeServer, rubric_dir: Path, allowed: tuple[str, ...] | None) -> Gateway:
    """What `serve --judge openai:judge-model --allow-judge ...` builds."""
    return Gateway.open(GatewayConfig(
        judge="openai:judge-model", backend=BackendConfig(base_url=judge.base_url, timeout_s=10),
        scoring=ScoringConfig(votes=1), retry=RetryPolicy(attempts=1), rubric_dirs=(rubric_dir,),
        allowed_judges=allowed, rubric_paths=False))


@pytest.fixture
def server(judge: ScriptedJudgeServer, rubric_dir: Path) -> Iterator[AppServer]:
    app = create_app(gateway(judge, rubric_dir, ("openai:second",)), ServerSettings(default_rubric="helpfulness"))
    with serving(app) as running:
        yield running


def models(judge: ScriptedJudgeServer) -> set[str]:
    return {call.model for call in judge.calls}


def test_a_request_cannot_pick_a_judge_outside_the_allow_list(server: AppServer, judge: ScriptedJudgeServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        inline = client.post("/v1/reward", json={"rubric": {**INLINE, "reward": {"judges": ["fake:best"]}},
                                                 "items": [ITEM]})
        override = client.post("/v1/reward", json={"rubric": "helpfulness", "reward": {"judges": ["openai:gpt-4o"]},
                                                   "items": [ITEM]})
        in_ensemble = client.post("/v1/reward", json={"rubric": INLINE, "items": [ITEM],
                                                      "reward": {"judges": ["openai:second", "openai:gpt-4o"]}})
    for response in (inline, override, in_ensemble):
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["error"] == "usage_error"
        assert "does not allow" in body["message"]
        assert "allowed: openai:judge-model, openai:second" in body["message"]
    assert judge.calls == [], "a refused request reached a judge"


def test_an_allowed_judge_is_used_and_a_rubric_file_naming_another_is_refused(
        server: AppServer, judge: ScriptedJudgeServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        chosen = client.post("/v1/reward", json={"rubric": INLINE, "reward": {"judges": ["openai:second"]},
                                                 "items": [ITEM]})
        from_file = client.post("/v1/reward", json={"rubric": "shaped-second", "items": [ITEM]})
        refused_file = client.post("/v1/reward", json={"rubric": "shaped-other", "items": [ITEM]})
    assert chosen.status_code == 200 and from_file.status_code == 200, (chosen.text, from_file.text)
    assert models(judge) == {"second"}
    assert refused_file.status_code == 400 and "'openai:other'" in refused_file.json()["message"]
    assert "allowed: openai:judge-model, openai:second" in refused_file.json()["message"]


def test_openrlhf_labels_cannot_pick_a_judge(server: AppServer, judge: ScriptedJudgeServer) -> None:
    def get_reward(label: str) -> httpx.Response:
        return httpx.post(f"{server.url}/get_reward", timeout=30,
                          json={"query": ["Q: 2+2? A: 4"], "prompts": ["Q: 2+2?"], "labels": [label]})

    assert get_reward('{"rubric": "helpfulness", "judges": ["fake:best"]}').status_code == 400
    assert get_reward('{"rubric": "helpfulness", "reward": {"judges": ["fake:best"]}}').status_code == 400
    refused = get_reward("rubric:shaped-other")
    assert refused.status_code == 400 and "allowed: openai:judge-model, openai:second" in refused.json()["message"]
    assert judge.calls == []
    assert get_reward('{"rubric": "shaped-second"}').status_code == 200
    assert models(judge) == {"second"}


def test_label_parsing_refuses_judge_keys_rather_than_ignoring_them() -> None:
    for key in ("judge", "judges", "reward"):
        with pytest.raises(Exception, match="judges and reward shaping come from the server"):
            parse_label(f'{{"rubric": "helpfulness", "{key}": "fake:best"}}', {"helpfulness"})
    assert parse_label('{"rubric": "helpfulness", "note": "kept"}', {"helpfulness"}).rubric == "helpfulness"


def _sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:  # closed while we looked
            pass
    return count


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts sockets through /proc")
def test_new_judge_specs_in_requests_open_no_connections(server: AppServer, judge: ScriptedJudgeServer) -> None:
    """Before: every new `openai:<model>` spec built a judge stack with its own connection pool,
    sent to the server's judge URL with the server's key, never released (400 specs, 400 sockets)."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        client.get("/healthz")
        before = _sockets()
        statuses = {client.post("/v1/reward", json={"rubric": INLINE, "reward": {"judges": [f"openai:m{i}"]},
                                                     "items": [ITEM]}).status_code for i in range(200)}
        after = _sockets()
    assert statuses == {400}
    assert judge.calls == []
    assert after - before <= 4, f"{after - before} sockets opened by refused judge specs"


def test_a_server_built_without_an_allow_list_accepts_only_its_own_judges(
        judge: ScriptedJudgeServer, rubric_dir: Path) -> None:
    """create_app around a Python-built gateway (allow-list None): requests still cannot add judges."""
    app = create_app(gateway(judge, rubric_dir, None), ServerSettings(default_rubric="helpfulness"))
    with serving(app) as running:
        refused = httpx.post(f"{running.url}/v1/reward", timeout=30,
                             json={"rubric": INLINE, "reward": {"judges": ["openai:second"]}, "items": [ITEM]})
        own = httpx.post(f"{running.url}/v1/reward", timeout=30,
                         json={"rubric": INLINE, "reward": {"judges": ["openai:judge-model"]}, "items": [ITEM]})
    assert refused.status_code == 400 and "allowed: openai:judge-model" in refused.json()["message"]
    assert own.status_code == 200
    assert models(judge) == {"judge-model"}


async def test_the_gateway_builds_no_judge_outside_its_allow_list(judge: ScriptedJudgeServer, rubric_dir: Path) -> None:
    """Python callers get the same rule when they set an allow-list (None: any judge)."""
    from rubricgate.errors import UsageError
    from rubricgate.models.reward import Item

    async with gateway(judge, rubric_dir, ("openai:second",)) as gw:
        with pytest.raises(UsageError, match="not allowed"):
            gw.scorer_for("openai:other")
        with pytest.raises(UsageError, match="does not allow"):
            gw.rubric("shaped-other")
        [result] = await gw.score([Item(prompt="p", response="r")], "shaped-second")
        assert result.reward is not None
    async with gateway(judge, rubric_dir, None) as anything:
        assert anything.allowed_judges is None
        anything.scorer_for("openai:other")


# --------------------------------------------------------------------------- `serve` flags

def invoke_serve(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli_app, ["serve", "--cache", "none", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize("args", [
    ["--judge", "fake:best"],
    ["--judge", "openai:m", "--allow-judge", "fake:best"],
    ["--judge", "openai:m", "--fallback-judge", "fake:worst"],
])
def test_serve_refuses_test_judges_unless_allowed(args: list[str]) -> None:
    code, output = invoke_serve(*args)
    assert code == 2 and "--allow-test-judges" in output, output


def test_serve_fails_at_startup_when_its_default_rubric_names_a_judge_not_allowed(rubric_dir: Path) -> None:
    code, output = invoke_serve("--allow-test-judges", "--judge", "fake:worst", "--rubric-dir", str(rubric_dir),
                                "--rubric", "shaped-other")
    assert code == 2 and "does not allow: 'openai:other'" in output and "allowed: fake:worst" in output, output
    code, output = invoke_serve("--judge", "openai:m", "--allow-judge", "openai", "--rubric", "helpfulness")
    assert code == 2 and "want a judge spec kind:model" in output, output


@pytest.fixture
def serve_process(tmp_path: Path, rubric_dir: Path) -> Iterator[str]:
    """`rubricgate serve` in a child process, configured by variables, started in a folder that
    holds a secret file (what a rubric name must never reach)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "secret.env").write_text("DB_PASSWORD: hunter2-do-not-echo\nAPI_TOKEN=abc123\n")
    (cwd / "notes.yaml").write_text("DB_PASSWORD: hunter2-do-not-echo\n")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUBRICGATE_")}
    env.update(PYTHONPATH=str(REPO), RUBRICGATE_ALLOW_TEST_JUDGES="1", RUBRICGATE_ALLOW_JUDGES="fake:best, fake:alternate",
               RUBRICGATE_JUDGE="fake:worst", RUBRICGATE_CACHE="none", RUBRICGATE_RUBRIC="helpfulness",
               RUBRICGATE_RUBRIC_PATH=str(rubric_dir), RUBRICGATE_VOTES="1")
    process = subprocess.Popen([sys.executable, "-m", "rubricgate", "serve", "--port", str(port)], cwd=cwd, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(f"serve exited: {process.communicate()[1]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("serve did not start within 60 s")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        assert process.stderr is not None
        process.stderr.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_serve_end_to_end_allow_list_from_variables_and_rubric_names_only_in_folders(serve_process: str) -> None:
    with httpx.Client(base_url=serve_process, timeout=30) as client:
        allowed = client.post("/v1/reward", json={"rubric": INLINE, "reward": {"judges": ["fake:best"]},
                                                  "items": [ITEM]})
        assert allowed.status_code == 200 and allowed.json()["results"][0]["reward"] == 1.0
        default = client.post("/v1/reward", json={"items": [ITEM]})
        assert default.status_code == 200 and default.json()["results"][0]["reward"] < 0.5  # fake:worst
        refused = client.post("/v1/reward", json={"rubric": INLINE, "reward": {"judges": ["fake:garbage"]},
                                                  "items": [ITEM]})
        assert refused.status_code == 400
        assert "allowed: fake:alternate, fake:best, fake:worst" in refused.json()["message"]
        folder_file = client.post("/v1/reward", json={"rubric": "shaped-other", "items": [ITEM]})
        assert folder_file.status_code == 400 and "does not allow" in folder_file.json()["message"]
        for name in ("secret.env", "notes", "notes.yaml", "./notes.yaml", "../cwd/secret.env"):
            response = client.post("/v1/reward", json={"rubric": name, "items": [ITEM]})
            assert response.status_code == 400, (name, response.text)
            assert "hunter2" not in response.text and "DB_PASSWORD" not in response.text, response.text
        label = client.post("/get_reward", json={"query": ["Q A"], "prompts": ["Q"], "labels": ["rubric:secret.env"]})
        assert label.status_code == 400 and "hunter2" not in label.text and "DB_PASSWORD" not in label.text
