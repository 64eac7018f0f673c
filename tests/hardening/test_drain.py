"""SIGTERM drain: `rubricgate serve` (its own process) answers every admitted request; an item the
slow scripted judge finishes within `--drain-timeout` gets its reward, one it does not gets
`reward: null` with reason `shutdown`, never a 500. Loopback only, one request per case."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support.openai_server import ScriptedJudgeServer

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(("latency_s", "drain_s", "scored"), [
    (4.0, 8.0, True),    # longer than the old fixed window would allow for its share; finishes: a reward
    (30.0, 1.0, False),  # outlasts the drain: null with reason shutdown, and the server exits soon after
])
def test_sigterm_answers_the_admitted_request(tmp_path: Path, latency_s: float, drain_s: float, scored: bool) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUBRICGATE_")}
    with ScriptedJudgeServer(latency_s=latency_s) as judge:
        server = subprocess.Popen(
            [sys.executable, "-m", "rubricgate", "serve", "--port", str(port), "--judge", "openai:judge-model",
             "--judge-base-url", judge.base_url, "--rubric", "helpfulness", "--votes", "1",
             "--timeout", "60", "--cache", str(tmp_path / "cache.db"), "--drain-timeout", str(drain_s)],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            replies: list[httpx.Response] = []
            body = {"items": [{"id": "slow", "prompt": "What is 2+2?", "response": "4"}]}
            caller = threading.Thread(target=lambda: replies.append(
                httpx.post(f"{url}/v1/reward", json=body, timeout=90)))
            caller.start()
            for _ in range(100):  # admitted: the judge has the call
                if judge.call_count:
                    break
                time.sleep(0.05)
            assert judge.call_count, "the request never reached the judge"
            signalled = time.monotonic()
            server.send_signal(signal.SIGTERM)
            caller.join(timeout=90)
            _, stderr = server.communicate(timeout=60)
            stopped_s = time.monotonic() - signalled
        finally:
            if server.poll() is None:
                server.kill()
                server.communicate()
    [reply] = replies
    assert reply.status_code == 200, (reply.text, stderr[-2000:])
    [result] = reply.json()["results"]
    if scored:
        assert result["reward"] is not None, result
    else:
        assert result["reward"] is None and result["reason"].startswith("shutdown"), result
        assert stopped_s < drain_s + 10, f"the server took {stopped_s:.1f}s to stop"
    assert "Traceback" not in stderr, stderr[-2000:]
