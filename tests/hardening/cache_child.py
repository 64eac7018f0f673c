"""A child process for the durability tests: score items into a shared SQLite cache.

    python -m tests.hardening.cache_child CACHE_URL START COUNT [--judge SPEC] [--base-url URL]
                                          [--start-at EPOCH] [--concurrency N]

Scores items START..START+COUNT-1 (votes=1) against `helpfulness` through a real Gateway. After
an item's result is reported, its votes are committed, so the child prints each finished vote's
cache key (`done <key>`) and flushes. It waits until `--start-at` (wall clock) so siblings start
together. It exits 0 when every item was scored and 3 when any item is unscorable, printing the
reason (`fail <reason>`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from rubricgate.cache.keys import cache_key
from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.models.config import BackendConfig, ScoringConfig
from rubricgate.models.reward import Item, RewardResult

RUBRIC = "helpfulness"


def items(start: int, count: int) -> list[Item]:
    return [Item(id=str(i), prompt=f"Question {i}: why is the sky blue?",
                 response=f"Rayleigh scattering: air scatters blue light more than red. ({i})")
            for i in range(start, start + count)]


async def run(args: argparse.Namespace) -> int:
    config = GatewayConfig(judge=args.judge, backend=BackendConfig(base_url=args.base_url, timeout_s=30),
                           scoring=ScoringConfig(votes=1, concurrency=args.concurrency), cache_url=args.cache)
    batch = items(args.start, args.count)
    failed = 0
    async with Gateway.open(config) as gateway:
        rubric = gateway.rubric(RUBRIC)
        keys = [[cache_key(gateway.backend.name, r) for r in gateway.scorer().requests_for(rubric, item)]
                for item in batch]
        delay = args.start_at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)

        def report(index: int, result: RewardResult) -> None:
            nonlocal failed
            if result.reward is None:
                failed += 1
                print(f"fail {result.reason}", flush=True)
                return
            sys.stdout.write("".join(f"done {key}\n" for key in keys[index]))
            sys.stdout.flush()

        await gateway.score(batch, RUBRIC, on_result=report)
    return 3 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("cache")
    parser.add_argument("start", type=int)
    parser.add_argument("count", type=int)
    parser.add_argument("--judge", default="fake:best")
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--start-at", type=float, default=0.0)
    parser.add_argument("--concurrency", type=int, default=8)
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
