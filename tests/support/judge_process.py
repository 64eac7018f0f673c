"""`ScriptedJudgeServer` in a child process, so load tests do not share its GIL.

    with judge_process(fault_rate=0.3, latency_s=0.01) as judge:
        ...  # judge.base_url is http://127.0.0.1:PORT/v1
    judge.stats  # {"calls": N, "faults": {"timeout": n, ...}} once the block has exited

The child serves on 127.0.0.1 until its stdin closes (or `max_seconds` pass), then prints its
call statistics as one JSON line and exits.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


@dataclass
class JudgeProcess:
    base_url: str
    stats: dict[str, Any] = field(default_factory=dict)


@contextmanager
def judge_process(max_seconds: float = 900, **server_kwargs: Any) -> Iterator[JudgeProcess]:
    """Start the child with `ScriptedJudgeServer(**server_kwargs)` (JSON-serialisable arguments)."""
    command = [sys.executable, "-m", "tests.support.judge_process", json.dumps(server_kwargs), str(max_seconds)]
    process = subprocess.Popen(command, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdin is not None
    try:
        url = process.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"judge process did not start (printed {url!r})")
        handle = JudgeProcess(base_url=url)
        yield handle
        process.stdin.close()
        handle.stats = json.loads(process.stdout.readline() or "{}")
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def main() -> None:
    from tests.support.openai_server import ScriptedJudgeServer

    kwargs = json.loads(sys.argv[1])
    max_seconds = float(sys.argv[2])
    kwargs.setdefault("keep_calls", 1000)  # load runs make 10^5 calls: count them, keep a few
    with ScriptedJudgeServer(**kwargs) as server:
        print(server.base_url, flush=True)
        done = threading.Event()
        threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
        deadline = time.monotonic() + max_seconds
        while not done.is_set() and time.monotonic() < deadline:
            done.wait(0.2)
        stats = {"calls": server.call_count, "faults": dict(server.fault_counts)}
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    main()
