"""Rewards per second and per-reward latency: rubricgate vs a naive reward function vs prometheus-eval.

Usage: python bench/throughput.py [--items N] [--votes K] [--concurrency C] [--latency S] [--jitter S]
                                  [--fault-rate F] [--naive-items M]

Every row grades realistic items (LLMBar answers, chat examples) against the `helpfulness` rubric,
K votes each, against the same local OpenAI-compatible judge (bench/judge_server.py, a child
process on 127.0.0.1 with latency, jitter and an optional fault rate), all in one run:

- rubricgate in-process, `openai:` judge (pooled aiohttp) and `litellm:` judge: C concurrent callers,
  one reward per call (a closed loop); judge calls in flight up to C x K; a fresh SQLite cache.
- rubricgate in-process, one batch: a single `Gateway.score(N items)` call (what the TRL reward
  function does per step); per-reward latency is counted from the batch start.
- rubricgate over HTTP: `rubricgate serve` (uvicorn, child process) and C concurrent clients
  posting one item each to /v1/reward (how OpenRLHF's remote reward calls arrive).
- naive: the sequential reward function TRL users write by hand: for each completion, for each
  vote, `litellm.completion(...)`, same judge prompt and JSON schema as rubricgate.
- prometheus-eval's LiteLLM grader (`PrometheusEval(LiteLLM(...)).absolute_grade`, sequential)
  and its AsyncLiteLLM variant (batched, C x K at once), when the package is installed.

The sequential rows grade the first M items (--naive-items); rates are per item either way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from common import JUDGE_MODEL, RUBRIC, Run, closed_loop, load_items, ms, percentile, print_table, rubricgate_server
from judge_server import judge_server

from rubricgate.integrations.client import RewardClient
from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.judges.prompts import load_template, render_messages, response_text, verdict_form
from rubricgate.library.rubric_files import resolve_rubric
from rubricgate.models.config import BackendConfig, ScoringConfig
from rubricgate.models.reward import Item


def gateway_config(spec: str, url: str, votes: int, concurrency: int, cache_url: str) -> GatewayConfig:
    return GatewayConfig(judge=spec, backend=BackendConfig(base_url=url, timeout_s=30),
                         scoring=ScoringConfig(votes=votes, concurrency=concurrency), cache_url=cache_url)


async def rubricgate_closed_loop(name: str, spec: str, url: str, items: list[Item], votes: int, callers: int,
                                 cache_url: str) -> Run:
    async with Gateway.open(gateway_config(spec, url, votes, callers * votes, cache_url)) as gateway:
        await gateway.score(load_items(4, offset=10_000), RUBRIC)  # warm up: imports, connections

        async def one(item: Item) -> bool:
            [result] = await gateway.score([item], RUBRIC)
            return result.reward is not None

        wall, latencies, failed = await closed_loop(items, callers, one)
    return Run(name, len(items), wall, latencies, failed)


async def rubricgate_batch(url: str, items: list[Item], votes: int, callers: int, cache_url: str) -> Run:
    async with Gateway.open(gateway_config(f"openai:{JUDGE_MODEL}", url, votes, callers * votes, cache_url)) as gateway:
        await gateway.score(load_items(4, offset=10_000), RUBRIC)
        started = time.perf_counter()
        results = await gateway.score(items, RUBRIC)
        wall = time.perf_counter() - started
    return Run("rubricgate in-process, one batch, openai:", len(items), wall, [r.latency_ms / 1000 for r in results],
               sum(r.reward is None for r in results), "latency from batch start")


async def rubricgate_http(url: str, items: list[Item], votes: int, callers: int, cache: str) -> Run:
    with rubricgate_server(url, votes, callers * votes, cache) as server:
        client = RewardClient(server, timeout_s=120)
        try:
            await client.score(load_items(4, offset=10_000), RUBRIC)

            async def one(item: Item) -> bool:
                [result] = await client.score([item], RUBRIC)
                return result.reward is not None

            wall, latencies, failed = await closed_loop(items, callers, one)
        finally:
            await client.aclose()
    return Run("rubricgate over HTTP (uvicorn), openai:", len(items), wall, latencies, failed)


def naive_reward_function(url: str, votes: int) -> Any:
    """What TRL users write by hand: one blocking litellm call per completion per vote, in a loop."""
    import litellm

    rubric = resolve_rubric(RUBRIC)
    template = load_template()
    form = verdict_form(rubric)
    schema = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": form.json_schema()}}

    def reward(prompts: list[str], completions: list[str], **_: Any) -> tuple[list[float], list[float], int]:
        rewards, latencies, failed = [], [], 0
        for prompt, completion in zip(prompts, completions, strict=True):
            started = time.perf_counter()
            item = Item(prompt=prompt, response=completion)
            messages = [m.model_dump() for m in render_messages(template, rubric, item, form)]
            scores = []
            for vote in range(votes):
                try:
                    response = litellm.completion(model=f"openai/{JUDGE_MODEL}", api_base=url, api_key="sk-local",
                                                  messages=messages, response_format=schema, temperature=0.7,
                                                  seed=vote, timeout=30)
                    verdict = json.loads(response.choices[0].message.content)
                    values = [f.labels.index(str(verdict[f.id]["score"])) / (len(f.labels) - 1) for f in form.fields]
                    scores.append(sum(values) / len(values))
                except Exception:  # noqa: BLE001 - what a hand-written reward does: skip the vote
                    continue
            failed += not scores
            rewards.append(sum(scores) / len(scores) if scores else 0.0)
            latencies.append(time.perf_counter() - started)
        return rewards, latencies, failed

    return reward


def naive_run(url: str, items: list[Item], votes: int) -> Run:
    reward = naive_reward_function(url, votes)
    reward([str(items[0].prompt)], ["warm-up"])
    prompts = [str(i.prompt) for i in items]
    completions = [response_text(i) for i in items]
    started = time.perf_counter()
    _, latencies, failed = reward(prompts, completions)
    return Run("naive: sequential litellm.completion per completion", len(items), time.perf_counter() - started,
               latencies, failed, "failed votes skipped, reward 0 if none")


def prometheus_run(url: str, items: list[Item], votes: int, concurrent: int | None) -> Run | str:
    """prometheus-eval's grader on the same items (K grades each); a string says why it was skipped."""
    try:
        from prometheus_eval import PrometheusEval
        from prometheus_eval.litellm import AsyncLiteLLM, LiteLLM
        from prometheus_eval.prompts import ABSOLUTE_PROMPT_WO_REF, SCORE_RUBRIC_TEMPLATE
    except ImportError as exc:
        return f"prometheus-eval not importable ({exc}); `pip install prometheus-eval` to add this row"
    os.environ.setdefault("OPENAI_API_KEY", "sk-local-bench")  # its LiteLLM passes no key; loopback only
    model: Any = (LiteLLM(f"openai/{JUDGE_MODEL}", api_base=url) if concurrent is None else
                  AsyncLiteLLM(f"openai/{JUDGE_MODEL}", batch_size=concurrent, requests_per_minute=10**9, api_base=url))
    judge = PrometheusEval(model=model, absolute_grade_template=ABSOLUTE_PROMPT_WO_REF)
    rubric = SCORE_RUBRIC_TEMPLATE.format(
        criteria="Is the response helpful: on point, correct, complete enough to act on, and clear?",
        score1_description="Off-topic or wrong.", score2_description="Mostly unhelpful.",
        score3_description="Partly helpful.", score4_description="Helpful with small gaps.",
        score5_description="Fully helpful, correct and clear.")
    instructions = [str(i.prompt) for i in items for _ in range(votes)]
    responses = [response_text(i) for i in items for _ in range(votes)]
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):  # tqdm bars and prints
        judge.absolute_grade(instructions=instructions[:votes], responses=responses[:votes], rubric=rubric, params={})
        started = time.perf_counter()
        try:
            _, scores = judge.absolute_grade(instructions=instructions, responses=responses, rubric=rubric, params={})
        except Exception as exc:  # noqa: BLE001 - report how it failed instead of a number
            return f"prometheus-eval {'LiteLLM' if concurrent is None else 'AsyncLiteLLM'} crashed after " \
                   f"{time.perf_counter() - started:.1f} s: {type(exc).__name__}: {str(exc)[:120]}"
        wall = time.perf_counter() - started
    per_item = [scores[i * votes:(i + 1) * votes] for i in range(len(items))]
    failed = sum(all(s is None for s in group) for group in per_item)
    name = ("prometheus-eval LiteLLM grader (sequential)" if concurrent is None
            else f"prometheus-eval AsyncLiteLLM grader (batch of {concurrent})")
    return Run(name, len(items), wall, [], failed, "batch API: no per-reward latency")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=256, help="items per concurrent row (N)")
    parser.add_argument("--votes", type=int, default=3, help="votes per item (K)")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent callers (C)")
    parser.add_argument("--naive-items", type=int, default=32, help="items for the sequential rows")
    parser.add_argument("--latency", type=float, default=0.05, help="judge latency per call, seconds")
    parser.add_argument("--jitter", type=float, default=0.02, help="extra random judge latency, seconds")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of judge calls that fail")
    parser.add_argument("--skip-prometheus", action="store_true")
    args = parser.parse_args()

    items = load_items(args.items)
    naive_items = items[:args.naive_items]
    runs: list[Run] = []
    skipped: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, judge_server(args.latency, args.jitter, args.fault_rate) as url:
        def cache(name: str) -> str:
            return f"sqlite:///{Path(tmp) / name}.db"

        runs.append(asyncio.run(rubricgate_closed_loop("rubricgate in-process, openai: (aiohttp)", f"openai:{JUDGE_MODEL}",
                                                       url, items, args.votes, args.concurrency, cache("a"))))
        runs.append(asyncio.run(rubricgate_batch(url, items, args.votes, args.concurrency, cache("b"))))
        runs.append(asyncio.run(rubricgate_closed_loop("rubricgate in-process, litellm:", f"litellm:openai/{JUDGE_MODEL}",
                                                       url, items, args.votes, args.concurrency, cache("c"))))
        runs.append(asyncio.run(rubricgate_http(url, items, args.votes, args.concurrency, cache("d"))))
        naive = naive_run(url, naive_items, args.votes)
        runs.append(naive)
        if args.skip_prometheus:
            skipped.append("prometheus-eval rows skipped (--skip-prometheus)")
        else:
            for concurrent, subset in ((None, naive_items), (args.concurrency * args.votes, items)):
                outcome = prometheus_run(url, subset, args.votes, concurrent)
                if isinstance(outcome, str):
                    skipped.append(outcome)
                    if "not importable" in outcome:
                        break
                else:
                    runs.append(outcome)

    rows = [[r.name, str(r.items), str(r.failed), f"{r.wall_s:.2f}", f"{r.rate:.1f}",
             ms(percentile(r.latencies_s, 50)), ms(percentile(r.latencies_s, 99)), f"{r.rate / naive.rate:.1f}x",
             r.note] for r in runs]
    print_table(
        f"throughput: {args.votes} votes per reward, {args.concurrency} concurrent callers (judge calls in flight "
        f"<= {args.concurrency * args.votes}), judge latency {args.latency * 1000:.0f} ms + up to "
        f"{args.jitter * 1000:.0f} ms jitter, fault rate {args.fault_rate:g}, {os.cpu_count()} CPUs",
        ["row", "items", "failed", "wall s", "rewards/s", "p50 ms", "p99 ms", "vs naive", "note"], rows,
        [f"skipped: {s}" for s in skipped])


if __name__ == "__main__":
    main()
