"""Rewards per second: the embedded judge (uncached) vs cache hits, in one run.

Usage: python bench/rewards.py [--items N] [--votes K]
Prints rewards/s and seconds per judgment for the embedded llama.cpp judge, then rewards/s for
the same batch served from the SQLite cache, in process, and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.models.config import BackendConfig, ScoringConfig
from rubricgate.models.reward import Item

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "chat.jsonl"


def load_items(n: int) -> list[Item]:
    base = [Item.model_validate(json.loads(line)) for line in EXAMPLES.read_text().splitlines() if line.strip()]
    # Distinct responses so nothing is coalesced: repeat the examples with a numbered suffix.
    return [base[i % len(base)].model_copy(update={"id": str(i), "response": f"{_text(base[i % len(base)])} ({i})"})
            for i in range(n)]


def _text(item: Item) -> str:
    if isinstance(item.response, str):
        return item.response
    return item.response[-1].content


async def run(items: list[Item], votes: int, cache_url: str, model_dir: Path | None) -> tuple[float, float, int]:
    config = GatewayConfig(judge="llamacpp:default", backend=BackendConfig(model_dir=model_dir),
                           scoring=ScoringConfig(votes=votes), cache_url=cache_url)
    async with Gateway.open(config) as gw:
        await gw.score(items[:1], "helpfulness")  # load the model outside the timing
        started = time.perf_counter()
        await gw.score(items, "helpfulness")
        cold = time.perf_counter() - started
        calls = gw.counters.misses
    async with Gateway.open(config) as gw:
        started = time.perf_counter()
        await gw.score(items, "helpfulness")
        warm = time.perf_counter() - started
        assert gw.counters.misses == 0
    return cold, warm, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=12)
    parser.add_argument("--votes", type=int, default=3)
    parser.add_argument("--cached-items", type=int, default=2000, help="batch size for the cache-hit run")
    parser.add_argument("--model-dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cold, warm, calls = asyncio.run(run(load_items(args.items), args.votes, f"sqlite:///{tmp}/a.db", args.model_dir))
        print(f"embedded judge: {args.items} items x {args.votes} votes = {calls} judgments in {cold:.2f} s "
              f"-> {args.items / cold:.2f} rewards/s, {cold / max(calls, 1):.3f} s/judgment")
        print(f"cache hits (same batch): {args.items / warm:.1f} rewards/s")
        # A larger batch for a steadier cache-hit figure: fill the cache with a fast scripted judge.
        big = load_items(args.cached_items)
        fill = GatewayConfig(judge="fake:best", scoring=ScoringConfig(votes=args.votes), cache_url=f"sqlite:///{tmp}/b.db")

        async def cached_rate() -> float:
            async with Gateway.open(fill) as gw:
                await gw.score(big, "helpfulness")
            async with Gateway.open(fill) as gw:
                started = time.perf_counter()
                await gw.score(big, "helpfulness")
                return time.perf_counter() - started

        seconds = asyncio.run(cached_rate())
        print(f"cache hits ({args.cached_items} items x {args.votes} votes, SQLite, in process): "
              f"{args.cached_items / seconds:.0f} rewards/s, {seconds / args.cached_items * 1000:.2f} ms/reward")
        print(f"ratio cached/embedded: {(args.cached_items / seconds) / (args.items / cold):.0f}x")


if __name__ == "__main__":
    main()
