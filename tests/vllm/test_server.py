"""`rubricgate judge serve`: a real supervised vLLM server on the tiny judge, reached by the gateway.

The module starts one `rubricgate judge serve` subprocess; the tests run in file order: health
and printed specs, scoring through `openai:` and `litellm:hosted_vllm/`, a crash of the vLLM
process mid-batch (unscorable items with reasons, then a restart), and a clean Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.vllm.support import free_port, require_vllm

require_vllm()

from rubricgate.errors import JudgeUnavailable, UsageError  # noqa: E402
from rubricgate.interfaces.gateway import Gateway, GatewayConfig  # noqa: E402
from rubricgate.interfaces.judge_server import (  # noqa: E402
    JudgeServer,
    JudgeServerConfig,
    judge_specs,
    vllm_command,
)
from rubricgate.models.config import BackendConfig, RetryPolicy, ScoringConfig  # noqa: E402
from rubricgate.models.judging import SamplingParams  # noqa: E402
from rubricgate.models.reward import Item, RewardResult  # noqa: E402

pytestmark = pytest.mark.vllm

START_TIMEOUT_S = 300.0  # ~25 s on an idle 2-core machine; CI runners are busier
RUBRIC = "factual-qa"
ITEMS = [Item(id=f"q{i}", prompt=f"What is {i} + {i}?", response=f"{i} + {i} = {2 * i}.") for i in range(8)]


@dataclass
class Supervisor:
    """The `rubricgate judge serve` subprocess and what it printed."""

    process: subprocess.Popen[bytes]
    port: int
    model: Path
    stdout: Path
    stderr: Path
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def server_pids(self) -> list[int]:
        return [int(p) for p in re.findall(r"started vLLM server pid (\d+)", self.stderr.read_text())]

    def healthy(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_for(self, condition: Callable[[], bool], what: str, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if self.process.poll() is not None:
                pytest.fail(f"supervisor exited ({self.process.returncode}) waiting for {what}:\n"
                            f"{self.stderr.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} after {timeout_s:g} s:\n{self.stderr.read_text()[-3000:]}")
            time.sleep(0.5)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def supervisor(tiny_judge_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Supervisor]:
    folder = tmp_path_factory.mktemp("judge-serve")
    port = free_port()
    command = [sys.executable, "-m", "rubricgate", "judge", "serve", str(tiny_judge_dir), "--port", str(port),
               "--restarts", "2", "--health-timeout", str(START_TIMEOUT_S), "--log-file", str(folder / "vllm.log"),
               "--", "--enforce-eager"]  # skip torch.compile: starts in half the time on CPU
    with (folder / "out.txt").open("wb") as out, (folder / "err.txt").open("wb") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, start_new_session=True)
    sup = Supervisor(process, port, tiny_judge_dir, folder / "out.txt", folder / "err.txt", folder / "vllm.log")
    try:
        sup.wait_for(lambda: sup.healthy() and "judge server ready" in sup.stdout.read_text(), "healthy judge server")
        yield sup
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        for pid in sup.server_pids():
            if group_alive(pid):
                os.killpg(pid, signal.SIGKILL)


async def score(judge: str, base_url: str, items: list[Item], concurrency: int = 64,
                on_result: Callable[[int, RewardResult], None] | None = None) -> list[RewardResult]:
    # Generous per-call timeout: a busy 2-core CI runner answers 24 concurrent calls slowly.
    config = GatewayConfig(judge=judge, backend=BackendConfig(base_url=base_url, timeout_s=240),
                           scoring=ScoringConfig(votes=3, concurrency=concurrency, deadline_s=600),
                           sampling=SamplingParams(temperature=0.0), retry=RetryPolicy(attempts=1), cache_url=None)
    async with Gateway.open(config) as gateway:
        return await gateway.score(items, RUBRIC, on_result=on_result)


def test_comes_up_healthy_on_loopback_with_judge_defaults_and_prints_the_specs(supervisor: Supervisor) -> None:
    url = supervisor.base_url
    printed = supervisor.stdout.read_text()
    assert f"--judge openai:{supervisor.model} --judge-base-url {url}" in printed
    assert f"--judge litellm:hosted_vllm/{supervisor.model} --judge-base-url {url}" in printed
    [launched] = [line for line in supervisor.log.read_text().splitlines() if line.startswith("==== rubricgate:")]
    for flag in (f"--host 127.0.0.1 --port {supervisor.port}", "--enable-prefix-caching", "--max-model-len 4096",
                 '--structured-outputs-config {"backend":"xgrammar","disable_any_whitespace":true}',
                 "--no-enable-chunked-prefill --max-num-batched-tokens 4096", "--enforce-eager"):
        assert flag in launched
    models = httpx.get(f"{url}/models", timeout=5).json()
    assert [m["id"] for m in models["data"]] == [str(supervisor.model)]


@pytest.mark.parametrize("kind", ["openai", "openai+logprobs", "litellm"])
async def test_gateway_scores_through_the_server(supervisor: Supervisor, kind: str) -> None:
    judge = {"openai": f"openai:{supervisor.model}", "openai+logprobs": f"openai:{supervisor.model}+logprobs",
             "litellm": f"litellm:hosted_vllm/{supervisor.model}"}[kind]
    results = await score(judge, supervisor.base_url, ITEMS)

    assert all(r.reward is not None and r.reason is None for r in results), [r.reason for r in results]
    assert all(r.votes == 3 and r.tokens.prompt > 500 for r in results)
    if kind == "openai":
        again = await score(judge, supervisor.base_url, ITEMS[:4])
        assert [r.reward for r in again] == [r.reward for r in results[:4]], "greedy scores repeat through the server"


async def test_killing_the_server_makes_in_flight_items_unscorable_and_the_supervisor_restarts_it(
        supervisor: Supervisor) -> None:
    [pid] = supervisor.server_pids()
    items = [Item(id=f"k{i}", prompt=f"Name a colour ({i}).", response=f"Blue, number {i}.") for i in range(40)]
    first_done = asyncio.Event()
    scoring = asyncio.create_task(score(f"openai:{supervisor.model}", supervisor.base_url, items, concurrency=4,
                                        on_result=lambda index, result: first_done.set()))
    await asyncio.wait_for(first_done.wait(), 120)
    os.kill(pid, signal.SIGKILL)  # the vLLM server process only, not the supervisor or the group
    results = await scoring

    unscorable = [r for r in results if r.reward is None]
    assert unscorable and len(unscorable) < len(items)
    # transport errors, or the gateway's circuit breaker refusing calls to the dead judge
    assert all(r.reason and re.search(r"JudgeUnavailable|CircuitOpen", r.reason) for r in unscorable), \
        [r.reason for r in unscorable][:3]
    assert all(r.reward is not None for r in results if r.reason is None)
    assert not any(r.reward == 0 for r in unscorable)

    supervisor.wait_for(lambda: len(supervisor.server_pids()) == 2, "restart")
    supervisor.wait_for(supervisor.healthy, "health after the restart")
    assert "exited with code -9; restart 1/2" in supervisor.stderr.read_text()
    assert not group_alive(pid), "the crashed server's engine core and workers were cleaned up"
    after = await score(f"openai:{supervisor.model}", supervisor.base_url, ITEMS[:2])
    assert all(r.reward is not None for r in after)


def test_ctrl_c_stops_the_whole_process_group(supervisor: Supervisor) -> None:
    pids = supervisor.server_pids()
    supervisor.process.send_signal(signal.SIGINT)
    assert supervisor.process.wait(60) == 0
    assert "judge server stopped" in supervisor.stderr.read_text()
    assert not any(group_alive(pid) for pid in pids), "the engine core and workers went down with the server"
    assert not supervisor.healthy()


def test_extra_vllm_args_override_the_judge_defaults() -> None:
    config = JudgeServerConfig(model="Qwen/Qwen3-8B", gpu_memory_utilization=0.5,
                               extra_args=("--max-model-len", "16384", "--served-model-name", "judge",
                                           "--no-enable-prefix-caching"))
    command = vllm_command(config, module="vllm.entrypoints.openai.api_server", cpu=False)
    assert command[:5] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", "Qwen/Qwen3-8B"]
    assert command.count("--max-model-len") == 1 and "--enable-prefix-caching" not in command
    assert command[command.index("--gpu-memory-utilization") + 1] == "0.5"
    assert "--disable-uvicorn-access-log" in command and "--structured-outputs-config" in command
    assert "--no-enable-chunked-prefill" not in command
    on_cpu = vllm_command(config, module="m", cpu=True)  # whole prefills: seeded requests crash chunked ones
    assert on_cpu[on_cpu.index("--no-enable-chunked-prefill") + 1:][:2] == ["--max-num-batched-tokens", "16384"]
    assert judge_specs(config) == {"openai": "openai:judge", "litellm": "litellm:hosted_vllm/judge",
                                   "base_url": "http://127.0.0.1:8100/v1"}
    default = vllm_command(JudgeServerConfig(model="Qwen/Qwen3-8B"), module="m", cpu=False)
    assert default[default.index("--max-model-len") + 1] == "8192"


def test_refuses_an_open_bind_without_a_key_and_a_busy_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    with pytest.raises(UsageError, match="without an API key"):
        JudgeServer(JudgeServerConfig(model="m", host="0.0.0.0")).check()
    port = free_port()
    with held_port(port):
        with pytest.raises(UsageError, match=f"cannot bind 127.0.0.1:{port}"):
            JudgeServer(JudgeServerConfig(model="m", port=port)).check()


def test_gives_up_after_the_allowed_restarts_with_the_cause(tmp_path: Path) -> None:
    crash = tmp_path / "crash.sh"
    crash.write_text("#!/bin/sh\necho 'ValueError: no such model' >&2\nexit 3\n")
    crash.chmod(0o755)
    config = JudgeServerConfig(model="m", port=free_port(), restarts=2, backoff_initial_s=0.01,
                               log_file=tmp_path / "vllm.log", python=str(crash), extra_args=("--api-key", "sekrit"))
    server = JudgeServer(config)
    with pytest.raises(JudgeUnavailable, match=r"exited with code 3 before it was healthy: ValueError: no such model.*"
                                               r"gave up after 2 restarts"):
        server.supervise(threading.Event())
    assert (server.starts, server.restarts_used, server.pid) == (3, 2, None)
    log = (tmp_path / "vllm.log").read_text()
    assert log.count("==== rubricgate:") == 3 and "--api-key ***" in log and "sekrit" not in log


@contextlib.contextmanager
def held_port(port: int) -> Iterator[None]:
    """A listening socket on the port for the length of the block."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        yield
