"""The benchmark scripts run end to end at toy sizes (their numbers are not checked: they print)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def bench(script: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUBRICGATE_")}
    done = subprocess.run([sys.executable, f"bench/{script}", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_throughput_prints_every_row() -> None:
    out = bench("throughput.py", "--items", "8", "--naive-items", "2", "--concurrency", "4", "--latency", "0.01")
    for row in ("rubricgate in-process, openai:", "rubricgate in-process, litellm:", "rubricgate over HTTP",
                "naive: sequential litellm.completion", "vs naive"):
        assert row in out
    assert "prometheus-eval" in out  # a row, or the printed reason it was skipped


def test_cache_bench_serves_every_reward_from_the_cache() -> None:
    out = bench("cache.py", "--items", "20", "--concurrency", "4", "--http-batch", "8", "--latency", "0.01")
    assert "cached, in process, one batch" in out and "cached, HTTP, 4 clients x 1 item" in out


def test_token_bench_compares_one_call_with_one_call_per_criterion() -> None:
    out = bench("tokens.py", "--items", "2")
    assert "helpfulness" in out and "per crit. / one" in out
