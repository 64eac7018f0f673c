"""A local OpenAI-compatible judge server for benchmarks, in its own process, on 127.0.0.1 only.

    python bench/judge_server.py --latency 0.05 --jitter 0.02 --fault-rate 0.01
    # prints its base URL (http://127.0.0.1:PORT/v1), serves until stdin closes or --max-seconds pass

It is the test suite's ScriptedJudgeServer (tests/support/openai_server.py): it answers
structured-output requests (json_schema / json_object / guided_json) with schema-valid JSON,
other requests with `--text`, reports prompt/completion token usage (word counts) and logprobs on
request, and adds seeded latency, jitter and faults (429 with Retry-After, 500, 503, malformed
bodies, truncated replies, connection resets; `timeout` faults only when named in --fault-kinds).
Benchmarks start it through `judge_server(...)`, so its CPU time does not share their GIL.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FAST_FAULTS = ("rate_limit", "server_error", "unavailable", "malformed", "truncated", "reset")
PROMETHEUS_TEXT = "Feedback: The response answers the question clearly and correctly. [RESULT] 4"
"""Free-text answer (no schema requested) in the format prometheus-eval's parser reads."""


@contextmanager
def judge_server(latency_s: float = 0.05, jitter_s: float = 0.02, fault_rate: float = 0.0, seed: int = 0,
                 fault_kinds: tuple[str, ...] = FAST_FAULTS, text: str = PROMETHEUS_TEXT,
                 max_seconds: float = 1800) -> Iterator[str]:
    """Run the judge in a child process; yields its base URL (`http://127.0.0.1:PORT/v1`)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--latency", str(latency_s), "--jitter", str(jitter_s),
               "--fault-rate", str(fault_rate), "--seed", str(seed), "--fault-kinds", ",".join(fault_kinds),
               "--text", text, "--max-seconds", str(max_seconds)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"judge server did not start (printed {url!r})")
        yield url
    finally:
        if process.stdin is not None:
            process.stdin.close()  # the server exits when its stdin closes
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.terminate()
            process.wait(timeout=15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added to every reply")
    parser.add_argument("--jitter", type=float, default=0.02, help="extra uniform random seconds in [0, jitter]")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of requests that get a fault")
    parser.add_argument("--fault-kinds", default=",".join(FAST_FAULTS), help="comma-separated subset of FAULT_KINDS")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--text", default=PROMETHEUS_TEXT, help="answer to requests without a JSON schema")
    parser.add_argument("--max-seconds", type=float, default=1800, help="stop by itself after this long")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from tests.support.openai_server import ScriptedJudgeServer

    server = ScriptedJudgeServer(latency_s=args.latency, jitter_s=args.jitter, fault_rate=args.fault_rate,
                                 seed=args.seed, fault_kinds=args.fault_kinds.split(","), default_text=args.text,
                                 fault_delay_s=5.0, keep_calls=1000)
    with server:
        print(server.base_url, flush=True)
        done = threading.Event()
        threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
        deadline = time.monotonic() + args.max_seconds
        while not done.is_set() and time.monotonic() < deadline:
            done.wait(0.5)
        print(f"served {server.call_count} requests", file=sys.stderr)


if __name__ == "__main__":
    main()
