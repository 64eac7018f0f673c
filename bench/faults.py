"""Fault tolerance over HTTP: a 30 %-faulty judge, and a dead judge with a fallback.

Usage: python bench/faults.py [--items N] [--concurrency C] [--fault-rate F] [--votes K]
                              [--deadline S] [--timeout S] [--dead-items M]

1. Fault run: the local OpenAI-compatible judge (tests/support/openai_server.py, a child process on
   127.0.0.1) injects F faults, drawn evenly from timeouts (sleeps 3x the client timeout), 429 with
   Retry-After, 500, 503, malformed JSON bodies, truncated replies and connection resets. The
   reward server is the real app on real uvicorn (127.0.0.1); C clients post one item each to
   /v1/reward until N items are answered. Then every cache row is checked to be a complete verdict.
2. Dead judge: the main judge answers every call with 503 and a healthy fallback judge is
   configured; M items, with the circuit breaker on and then off, counting the calls that still
   reached the dead judge.

Everything stays on the loopback interface and stops by itself.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.fault_run import dead_judge_run, fault_run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--fault-rate", type=float, default=0.3)
    parser.add_argument("--votes", type=int, default=3)
    parser.add_argument("--deadline", type=float, default=10.0, help="item deadline, seconds")
    parser.add_argument("--timeout", type=float, default=1.0, help="judge call timeout, seconds")
    parser.add_argument("--dead-items", type=int, default=500, help="items of the dead-judge runs (0 skips them)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        report = fault_run(Path(tmp) / "faults.db", items=args.items, concurrency=args.concurrency,
                           fault_rate=args.fault_rate, votes=args.votes, deadline_s=args.deadline,
                           timeout_s=args.timeout)
    print(f"\nFault run: {args.items} items over HTTP, {args.concurrency} concurrent clients, votes={args.votes}, "
          f"judge timeout {args.timeout:g} s, item deadline {args.deadline:g} s")
    width = max(len(k) for k, _ in report.rows())
    for key, value in report.rows():
        print(f"  {key.ljust(width)}  {value}")

    if args.dead_items:
        print(f"\nDead judge (every call 503) with a fallback judge: {args.dead_items} items, "
              f"{args.concurrency} clients, 4 attempts per call")
        print(f"  {'breaker':8s} {'calls to dead judge':>20s} {'fallback calls':>15s} {'scored':>7s} "
              f"{'flagged fallback':>17s} {'p99 s':>6s} {'wall s':>7s}")
        for breaker in (True, False):
            with tempfile.TemporaryDirectory() as tmp:
                dead = dead_judge_run(Path(tmp) / "dead.db", items=args.dead_items, concurrency=args.concurrency,
                                      breaker=breaker)
            ordered = sorted(dead.latencies_s)
            p99 = ordered[max(0, round(0.99 * len(ordered)) - 1)] if ordered else 0.0
            print(f"  {'on' if breaker else 'off':8s} {dead.dead_calls:20d} {dead.fallback_calls:15d} {dead.scored:7d} "
                  f"{dead.flagged_fallback:17d} {p99:6.2f} {dead.wall_s:7.1f}")


if __name__ == "__main__":
    main()
