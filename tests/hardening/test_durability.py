"""The SQLite cache under several writer processes and under SIGKILL.

- 8 processes start together on a fresh database file and score overlapping item ranges: none
  sees "database is locked" (or any other error), and no row is lost.
- A process killed with SIGKILL in the middle of a batch leaves a database that passes
  `PRAGMA integrity_check` and holds every judgment the process reported finished (the child
  prints a vote's key only after `on_result`, i.e. after its commit, and flushes).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.openai_server import ScriptedJudgeServer

REPO = Path(__file__).resolve().parents[2]
CHILD = [sys.executable, "-m", "tests.hardening.cache_child"]


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUBRICGATE_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def rows(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {key for (key,) in conn.execute("SELECT key FROM judgments")}


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def done_keys(output: str) -> set[str]:
    return {line.split()[1] for line in output.splitlines() if line.startswith("done ")}


def test_eight_processes_write_one_cache_without_lock_errors_or_lost_rows(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    url = f"sqlite:///{db}"
    processes, per_process, stride = 8, 250, 125  # neighbours overlap by half: same keys written twice
    start_at = time.time() + 4.0  # every child imports, opens the (new) database, then starts at once
    children = [subprocess.Popen([*CHILD, url, str(p * stride), str(per_process), "--start-at", str(start_at)],
                                 cwd=REPO, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for p in range(processes)]
    outputs = [child.communicate(timeout=240) for child in children]

    for child, (out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, f"exit {child.returncode}: {err[-2000:]} {out[-500:]}"
        assert "locked" not in (out + err).lower() and "Traceback" not in err
    reported = set().union(*(done_keys(out) for out, _ in outputs))
    expected_items = stride * (processes - 1) + per_process
    assert len(reported) == expected_items
    stored = rows(db)
    assert stored == reported  # every reported judgment is there, and nothing else
    assert integrity(db) == "ok"


@pytest.fixture(scope="module")
def slow_judge() -> Iterator[ScriptedJudgeServer]:
    with ScriptedJudgeServer(latency_s=0.02, jitter_s=0.02) as server:
        yield server


@pytest.mark.parametrize("kill_after", [5, 60, 240])
def test_sigkill_mid_batch_keeps_every_finished_judgment(tmp_path: Path, slow_judge: ScriptedJudgeServer,
                                                          kill_after: int) -> None:
    db = tmp_path / "killed.db"
    child = subprocess.Popen([*CHILD, f"sqlite:///{db}", "0", "2000", "--judge", "openai:judge-model",
                              "--base-url", slow_judge.base_url, "--concurrency", "16"],
                             cwd=REPO, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while len(lines) < kill_after and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        if line.startswith("done "):
            lines.append(line)
    child.send_signal(signal.SIGKILL)  # mid-batch: judge calls in flight, commits under way
    rest, err = child.communicate(timeout=30)  # whatever it flushed before dying
    assert child.returncode == -signal.SIGKILL, err[-2000:]
    reported = done_keys("".join(lines) + rest)
    assert len(reported) >= kill_after, f"child reported only {len(reported)} judgments: {err[-2000:]}"
    stored = rows(db)
    assert integrity(db) == "ok"
    assert reported <= stored, f"{len(reported - stored)} finished judgments missing after SIGKILL"
    assert len(stored) < 2000  # it really was killed mid-batch
