"""A bounded load run against the reward server over HTTP while the judge injects faults.

The judge is `ScriptedJudgeServer` with a seeded fault rate (timeouts, 429 with Retry-After, 500,
503, malformed bodies, truncated replies, connection resets); the reward server is the real app on
real uvicorn; `concurrency` clients post one item each to `/v1/reward` (how OpenRLHF calls arrive)
until every item is answered. Everything listens on 127.0.0.1 and the run stops by itself.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from rubricgate.cache.store import JudgmentStore
from rubricgate.errors import VerdictParseError
from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.interfaces.http import ServerSettings, create_app
from rubricgate.judges.parse import is_complete, parse_verdict
from rubricgate.judges.prompts import verdict_form
from rubricgate.library.rubric_files import resolve_rubric
from rubricgate.models.config import BackendConfig, CircuitPolicy, RetryPolicy, ScoringConfig
from rubricgate.models.judging import JudgeReply
from tests.support.app_server import serving
from tests.support.judge_process import judge_process
from tests.support.openai_server import FAULT_KINDS

RUBRIC = "helpfulness"


@dataclass
class FaultRunReport:
    """What a fault run saw, client side and in the cache."""

    items: int
    concurrency: int
    fault_rate: float
    deadline_s: float
    wall_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    scored: int = 0
    null: int = 0
    null_without_reason: int = 0
    reasons: collections.Counter[str] = field(default_factory=collections.Counter)
    transport_errors: int = 0
    judge_calls: int = 0
    faults: collections.Counter[str] = field(default_factory=collections.Counter)
    cache_rows: int = 0
    cached_failures: int = 0
    flags: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def answered(self) -> int:
        return self.scored + self.null

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        if not ordered:
            return 0.0
        return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]

    def rows(self) -> list[tuple[str, str]]:
        """The report as (what, value) rows for a table."""
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items()))
        reasons = ", ".join(f"{k} {v}" for k, v in self.reasons.most_common())
        return [
            ("items / concurrency", f"{self.items} / {self.concurrency}"),
            ("judge fault rate", f"{self.fault_rate:.0%}"),
            ("judge calls (faults injected)", f"{self.judge_calls} ({sum(self.faults.values())}: {kinds})"),
            ("HTTP statuses", ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))),
            ("client transport errors", str(self.transport_errors)),
            ("answered", f"{self.answered} of {self.items}"),
            ("scored / null with reason", f"{self.scored} / {self.null - self.null_without_reason}"),
            ("null reasons", reasons or "-"),
            ("flags", ", ".join(f"{k} {v}" for k, v in sorted(self.flags.items())) or "-"),
            ("cache rows / failures cached", f"{self.cache_rows} / {self.cached_failures}"),
            ("latency p50 / p99 / max", f"{self.percentile(50):.2f} / {self.percentile(99):.2f} / "
                                        f"{max(self.latencies_s, default=0):.2f} s (deadline {self.deadline_s:g} s)"),
            ("wall time / rewards per s", f"{self.wall_s:.1f} s / {self.items / self.wall_s:.0f}"),
        ]


def fault_run(cache: Path, items: int = 2000, concurrency: int = 64, fault_rate: float = 0.3, votes: int = 3,
              deadline_s: float = 5.0, timeout_s: float = 1.0, latency_s: float = 0.01, seed: int = 8) -> FaultRunReport:
    """Run it; `cache` is the SQLite file the server writes (checked afterwards).

    The judge runs in a child process; the server (real uvicorn) in a thread of this process; the
    clients are aiohttp (httpx's pool costs O(connections) syscalls per request at this fan-out).
    """
    report = FaultRunReport(items=items, concurrency=concurrency, fault_rate=fault_rate, deadline_s=deadline_s)
    with judge_process(latency_s=latency_s, jitter_s=latency_s, fault_rate=fault_rate, seed=seed,
                       fault_kinds=list(FAULT_KINDS), fault_delay_s=timeout_s * 3, retry_after_s=0.05) as judge:
        config = GatewayConfig(
            judge="openai:judge-model", cache_url=f"sqlite:///{cache}",
            backend=BackendConfig(base_url=judge.base_url, timeout_s=timeout_s),
            scoring=ScoringConfig(votes=votes, concurrency=concurrency, deadline_s=deadline_s),
            retry=RetryPolicy(attempts=4, initial_wait_s=0.05, max_wait_s=1.0),
            circuit=CircuitPolicy(failure_threshold=16, open_s=2.0))
        app = create_app(Gateway.open(config), ServerSettings(default_rubric=RUBRIC))
        with serving(app) as server:
            started = time.perf_counter()
            asyncio.run(_clients(server.url, items, concurrency, deadline_s, report))
            report.wall_s = time.perf_counter() - started
    report.judge_calls = judge.stats.get("calls", 0)
    report.faults.update(judge.stats.get("faults", {}))
    _check_cache(cache, report)
    return report


async def _clients(url: str, items: int, concurrency: int, deadline_s: float, report: FaultRunReport) -> None:
    queue = iter(range(items))
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=deadline_s * 4 + 30)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as session:

        async def caller() -> None:
            for i in queue:
                body = {"items": [{"id": str(i), "prompt": f"Question {i}: how do plants make food?",
                                   "response": f"Plants use photosynthesis: light, water and CO2 make sugar. ({i})"}]}
                started = time.perf_counter()
                try:
                    async with session.post("/v1/reward", json=body) as response:
                        status = response.status
                        data = await response.json(content_type=None)
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    report.transport_errors += 1
                    report.reasons[f"client {type(exc).__name__}"] += 1
                    continue
                report.latencies_s.append(time.perf_counter() - started)
                report.statuses[status] += 1
                if status == 200:
                    _count(data["results"][0], report)

        await asyncio.gather(*(caller() for _ in range(concurrency)))


def _count(result: dict[str, Any], report: FaultRunReport) -> None:
    report.flags.update(result["flags"])
    if result["reward"] is not None:
        report.scored += 1
        return
    report.null += 1
    reason = result.get("reason") or ""
    if not reason:
        report.null_without_reason += 1
    first_error = reason.split("first error: ", 1)[-1]
    report.reasons[first_error.split(":", 1)[0] or "?"] += 1


def _check_cache(cache: Path, report: FaultRunReport) -> None:
    """Every stored row must be a complete verdict: failures are never cached."""
    form = verdict_form(resolve_rubric(RUBRIC), rationale=True)
    store = JudgmentStore(f"sqlite:///{cache}")
    try:
        for row in store.export():
            report.cache_rows += 1
            reply = JudgeReply.model_validate_json(row["reply"])
            try:
                complete = is_complete(parse_verdict(reply, form), form)
            except VerdictParseError:
                complete = False
            report.cached_failures += not complete
    finally:
        store.close()


@dataclass
class DeadJudgeReport:
    """A run against a judge that answers every call with 503, with a healthy fallback judge."""

    items: int
    breaker: bool
    wall_s: float = 0.0
    dead_calls: int = 0
    fallback_calls: int = 0
    scored: int = 0
    flagged_fallback: int = 0
    latencies_s: list[float] = field(default_factory=list)


def dead_judge_run(cache: Path, items: int = 500, concurrency: int = 64, breaker: bool = True) -> DeadJudgeReport:
    """Main judge dead (always 503), fallback judge healthy; clients over HTTP as in `fault_run`."""
    report = DeadJudgeReport(items=items, breaker=breaker)
    with judge_process(fault_rate=1.0, fault_kinds=["unavailable"], latency_s=0.005) as dead, \
            judge_process(latency_s=0.01, jitter_s=0.01) as spare:
        config = GatewayConfig(
            judge="openai:judge-model", cache_url=f"sqlite:///{cache}",
            backend=BackendConfig(base_url=dead.base_url, timeout_s=1.0),
            fallback_judge="openai:spare-model", fallback_backend=BackendConfig(base_url=spare.base_url, timeout_s=1.0),
            scoring=ScoringConfig(votes=1, concurrency=concurrency, deadline_s=10.0),
            retry=RetryPolicy(attempts=4, initial_wait_s=0.05, max_wait_s=0.5),
            circuit=CircuitPolicy(enabled=breaker, failure_threshold=16, open_s=30.0))
        app = create_app(Gateway.open(config), ServerSettings(default_rubric=RUBRIC))
        faults = FaultRunReport(items=items, concurrency=concurrency, fault_rate=1.0, deadline_s=10.0)
        with serving(app) as server:
            started = time.perf_counter()
            asyncio.run(_clients(server.url, items, concurrency, 10.0, faults))
            report.wall_s = time.perf_counter() - started
    report.dead_calls = dead.stats.get("calls", 0)
    report.fallback_calls = spare.stats.get("calls", 0)
    report.scored = faults.scored
    report.flagged_fallback = faults.flags.get("fallback", 0)
    report.latencies_s = faults.latencies_s
    return report
