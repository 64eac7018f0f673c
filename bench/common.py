"""Shared benchmark plumbing: items, a `rubricgate serve` child process, closed-loop load, tables.

All traffic stays on 127.0.0.1; every server is a child process that stops with the benchmark.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # so benchmarks can import tests.support
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm must not fetch a price map

from rubricgate.models.reward import Item  # noqa: E402

JUDGE_MODEL = "judge-model"
RUBRIC = "helpfulness"


def load_items(n: int, offset: int = 0) -> list[Item]:
    """`n` distinct realistic items: the LLMBar sample's chosen and rejected answers and the chat
    examples, repeated with a numbered suffix so no two are identical (nothing is coalesced)."""
    base: list[Item] = []
    for line in (REPO / "tests" / "data" / "llmbar_sample.jsonl").read_text().splitlines():
        row = json.loads(line)
        base += [Item(prompt=row["prompt"], response=row["chosen"]), Item(prompt=row["prompt"], response=row["rejected"])]
    for line in (REPO / "examples" / "chat.jsonl").read_text().splitlines():
        row = json.loads(line)
        base.append(Item(prompt=row["prompt"], response=row["response"]))
    out = []
    for i in range(offset, offset + n):
        item = base[i % len(base)]
        response = item.response if isinstance(item.response, str) else item.response[-1].content
        out.append(Item(id=str(i), prompt=item.prompt, response=f"{response} ({i})"))
    return out


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def rubricgate_server(judge_url: str, votes: int, concurrency: int, cache: str, judge: str = f"openai:{JUDGE_MODEL}",
                      max_seconds: float = 120) -> Iterator[str]:
    """`rubricgate serve` (real uvicorn) in a child process on 127.0.0.1; yields its URL."""
    port = free_port()
    command = [sys.executable, "-m", "rubricgate", "serve", "--port", str(port), "--rubric", RUBRIC,
               "--judge", judge, "--judge-base-url", judge_url, "--votes", str(votes),
               "--concurrency", str(concurrency), "--cache", cache]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + max_seconds
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"rubricgate serve exited: {process.stderr.read() if process.stderr else ''}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("rubricgate serve did not become healthy")
            time.sleep(0.1)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Run:
    """One measured row."""

    name: str
    items: int
    wall_s: float
    latencies_s: list[float]
    failed: int = 0
    note: str = ""

    @property
    def rate(self) -> float:
        return self.items / self.wall_s if self.wall_s else 0.0


async def closed_loop(items: Sequence[Item], callers: int, one: Callable[[Item], Awaitable[bool]]) -> tuple[float, list[float], int]:
    """`callers` concurrent callers, each asking for one reward at a time until all items are done.

    Returns (wall seconds, per-reward latencies, failed rewards).
    """
    queue = iter(items)
    latencies: list[float] = []
    failed = 0

    async def caller() -> None:
        nonlocal failed
        for item in queue:  # one shared iterator: each item is taken once
            started = time.perf_counter()
            ok = await one(item)
            latencies.append(time.perf_counter() - started)
            failed += not ok

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return time.perf_counter() - started, latencies, failed


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]], notes: Sequence[str] = ()) -> None:
    """A plain-text table (first column left-aligned, the rest right-aligned)."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    print(f"\n{title}")
    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))
    for note in notes:
        print(f"  {note}")


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"
