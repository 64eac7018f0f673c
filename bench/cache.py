"""Cached rewards per second, in process and over HTTP, against the uncached judge path.

Usage: python bench/cache.py [--items N] [--votes K] [--concurrency C] [--latency S]

Fills a fresh SQLite cache by grading N items x K votes with the `openai:` judge against the local
judge server (bench/judge_server.py, a child process on 127.0.0.1; that pass is the uncached row),
then grades the same items again, every vote a cache hit:
- in process: one `Gateway.score(N items)` batch, and C concurrent callers asking one reward each;
- over HTTP: `rubricgate serve` (uvicorn, child process) on the same cache file, with one client
  posting batches of --http-batch items, and with C concurrent clients posting one item each.
Every cached row checks that no vote reached the judge.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from common import JUDGE_MODEL, RUBRIC, Run, closed_loop, load_items, ms, percentile, print_table, rubricgate_server
from judge_server import judge_server

from rubricgate.integrations.client import RewardClient
from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.models.config import BackendConfig, ScoringConfig
from rubricgate.models.reward import Item, RewardResult


def config(url: str, votes: int, concurrency: int, cache_url: str) -> GatewayConfig:
    return GatewayConfig(judge=f"openai:{JUDGE_MODEL}", backend=BackendConfig(base_url=url, timeout_s=30),
                         scoring=ScoringConfig(votes=votes, concurrency=concurrency), cache_url=cache_url)


def all_hits(results: list[RewardResult]) -> None:
    missed = [r for r in results if not r.cached or r.judge_calls]
    if missed:
        raise SystemExit(f"{len(missed)} rewards were not served from the cache; the benchmark is invalid")


async def in_process(url: str, items: list[Item], votes: int, callers: int, cache_url: str) -> list[Run]:
    runs = []
    async with Gateway.open(config(url, votes, callers * votes, cache_url)) as gateway:
        started = time.perf_counter()
        results = await gateway.score(items, RUBRIC)
        runs.append(Run("uncached: judge (openai:), one batch, in process", len(items), time.perf_counter() - started,
                        [r.latency_ms / 1000 for r in results], sum(r.reward is None for r in results),
                        "fills the cache; latency from batch start"))
    async with Gateway.open(config(url, votes, callers * votes, cache_url)) as gateway:
        started = time.perf_counter()
        results = await gateway.score(items, RUBRIC)
        wall = time.perf_counter() - started
        all_hits(results)
        runs.append(Run("cached, in process, one batch", len(items), wall, [r.latency_ms / 1000 for r in results],
                        note="latency from batch start"))
        seen: list[RewardResult] = []

        async def one(item: Item) -> bool:
            [result] = await gateway.score([item], RUBRIC)
            seen.append(result)
            return result.reward is not None

        wall, latencies, failed = await closed_loop(items, callers, one)
        all_hits(seen)
        runs.append(Run(f"cached, in process, {callers} callers x 1 item", len(items), wall, latencies, failed))
    return runs


async def over_http(server: str, items: list[Item], callers: int, batch: int) -> list[Run]:
    runs = []
    client = RewardClient(server, timeout_s=120)
    try:
        await client.score(items[:batch], RUBRIC)  # warm up the connection and the server's rubric
        latencies, results = [], []
        started = time.perf_counter()
        for start in range(0, len(items), batch):
            began = time.perf_counter()
            results += await client.score(items[start:start + batch], RUBRIC)
            latencies.append(time.perf_counter() - began)
        wall = time.perf_counter() - started
        all_hits(results)
        runs.append(Run(f"cached, HTTP, 1 client x batches of {batch}", len(items), wall, latencies,
                        note="latency per request"))
        seen: list[RewardResult] = []

        async def one(item: Item) -> bool:
            [result] = await client.score([item], RUBRIC)
            seen.append(result)
            return result.reward is not None

        wall, per_item, failed = await closed_loop(items, callers, one)
        all_hits(seen)
        runs.append(Run(f"cached, HTTP, {callers} clients x 1 item", len(items), wall, per_item, failed))
    finally:
        await client.aclose()
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--votes", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--http-batch", type=int, default=256)
    parser.add_argument("--latency", type=float, default=0.05, help="judge latency per call (uncached row)")
    args = parser.parse_args()
    items = load_items(args.items)
    with tempfile.TemporaryDirectory() as tmp, judge_server(args.latency, 0.02) as url:
        cache_url = f"sqlite:///{Path(tmp) / 'cache.db'}"
        runs = asyncio.run(in_process(url, items, args.votes, args.concurrency, cache_url))
        with rubricgate_server(url, args.votes, args.concurrency * args.votes, cache_url) as server:
            runs += asyncio.run(over_http(server, items, args.concurrency, args.http_batch))
    uncached = runs[0]
    rows = [[r.name, str(r.items), f"{r.wall_s:.2f}", f"{r.rate:,.0f}", f"{r.wall_s / r.items * 1000:.2f}",
             ms(percentile(r.latencies_s, 50)), ms(percentile(r.latencies_s, 99)), f"{r.rate / uncached.rate:.1f}x",
             r.note] for r in runs]
    print_table(f"cache: {args.items} items x {args.votes} votes, SQLite (WAL), judge latency "
                f"{args.latency * 1000:.0f} ms + up to 20 ms jitter, {os.cpu_count()} CPUs",
                ["row", "items", "wall s", "rewards/s", "ms/reward", "p50 ms", "p99 ms", "vs uncached", "note"], rows)


if __name__ == "__main__":
    main()
