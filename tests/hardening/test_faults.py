"""Judge faults: retries, a circuit breaker that stops hammering a dead judge, a fallback judge,
and a bounded load run over HTTP while the judge injects 30 % faults (loopback only)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from rubricgate.errors import CircuitOpen, JudgeRejected, JudgeUnavailable
from rubricgate.interfaces.cli import app as cli_app
from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.judges.circuit import CircuitBreakerBackend, FallbackBackend
from rubricgate.judges.fake import FakeBackend, best_reply
from rubricgate.judges.retry import RetryingBackend
from rubricgate.models.config import BackendConfig, CircuitPolicy, JudgeCapabilities, RetryPolicy, ScoringConfig
from rubricgate.models.judging import JudgeReply, JudgeRequest
from rubricgate.models.reward import Item
from tests.support.fault_run import fault_run
from tests.support.openai_server import Reply, ScriptedJudgeServer

ITEMS = [Item(id=str(i), prompt="What is the capital of France?", response=f"Paris. ({i})") for i in range(40)]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Flaky:
    """A judge that fails while `down` is set, counting every call that reached it."""

    name = "flaky:judge"
    prefers_rationale = True
    capabilities = JudgeCapabilities()

    def __init__(self) -> None:
        self.down = True
        self.calls = 0

    async def complete(self, request: JudgeRequest) -> JudgeReply:
        self.calls += 1
        if self.down:
            raise JudgeUnavailable("flaky:judge: HTTP 503")
        return JudgeReply(text=best_reply(request.form), backend=self.name)

    async def aclose(self) -> None:
        return None


def request() -> JudgeRequest:
    from rubricgate.judges.prompts import load_template, render_messages, verdict_form
    from rubricgate.library.rubric_files import resolve_rubric

    rubric = resolve_rubric("helpfulness")
    form = verdict_form(rubric)
    return JudgeRequest(messages=render_messages(load_template(), rubric, ITEMS[0], form), form=form,
                        template_version="t", rubric_ref=rubric.ref)


async def test_breaker_opens_after_consecutive_failures_then_probes_and_closes() -> None:
    judge, clock = Flaky(), Clock()
    breaker = CircuitBreakerBackend(judge, CircuitPolicy(failure_threshold=3, open_s=10), clock=clock)
    for _ in range(3):
        with pytest.raises(JudgeUnavailable):
            await breaker.complete(request())
    assert breaker.state == "open" and breaker.opened == 1
    for _ in range(50):  # a dead judge is no longer called
        with pytest.raises(CircuitOpen):
            await breaker.complete(request())
    assert judge.calls == 3 and breaker.refused == 50
    clock.now = 10.0
    assert breaker.state == "half_open"
    with pytest.raises(JudgeUnavailable):  # the probe fails: open again for another open_s
        await breaker.complete(request())
    assert judge.calls == 4 and breaker.state == "open"
    judge.down = False
    clock.now = 20.0
    await breaker.complete(request())  # the probe succeeds
    assert breaker.state == "closed" and judge.calls == 5
    await breaker.complete(request())
    assert judge.calls == 6


async def test_breaker_ignores_scattered_failures_and_permanent_errors() -> None:
    calls = 0

    async def sometimes(request: JudgeRequest) -> JudgeReply:
        nonlocal calls
        calls += 1
        if calls % 3 == 0:
            raise JudgeUnavailable("every third call fails")
        if calls % 5 == 0:
            raise JudgeRejected("a 400 means the judge is up")
        return JudgeReply(text=best_reply(request.form), backend="j")

    judge = Flaky()
    judge.complete = sometimes  # type: ignore[method-assign]
    breaker = CircuitBreakerBackend(judge, CircuitPolicy(failure_threshold=2))
    for _ in range(60):
        try:
            await breaker.complete(request())
        except (JudgeUnavailable, JudgeRejected) as exc:
            assert not isinstance(exc, CircuitOpen)
    assert breaker.opened == 0 and calls == 60


async def test_retries_skip_an_open_circuit() -> None:
    judge = Flaky()
    breaker = CircuitBreakerBackend(judge, CircuitPolicy(failure_threshold=1, open_s=60))
    retrying = RetryingBackend(breaker, RetryPolicy(attempts=5, initial_wait_s=0, max_wait_s=0))
    with pytest.raises(CircuitOpen):  # first attempt fails and opens it; the second is refused, not retried
        await retrying.complete(request())
    assert judge.calls == 1 and retrying.retries == 1 and breaker.refused == 1


async def test_fallback_answers_when_the_primary_is_unavailable() -> None:
    primary, fallback = Flaky(), FakeBackend(lambda r: best_reply(r.form), name="fake:fallback")
    backend = FallbackBackend(primary, fallback)
    reply = await backend.complete(request())
    assert reply.backend == "fake:fallback" and backend.used == 1 and backend.name == "flaky:judge"
    primary.down = False
    assert (await backend.complete(request())).backend == "flaky:judge"


@pytest.fixture
def dead_judge() -> Iterator[ScriptedJudgeServer]:
    with ScriptedJudgeServer(lambda call: Reply.error(503, "down for maintenance")) as server:
        yield server


@pytest.fixture
def spare_judge() -> Iterator[ScriptedJudgeServer]:
    with ScriptedJudgeServer() as server:  # answers schema-valid verdicts
        yield server


def gateway_config(primary: ScriptedJudgeServer, cache_url: str | None, fallback: ScriptedJudgeServer | None = None,
                   open_s: float = 30.0) -> GatewayConfig:
    return GatewayConfig(
        judge="openai:judge-model", backend=BackendConfig(base_url=primary.base_url, timeout_s=5),
        fallback_judge="openai:spare-model" if fallback else None,
        fallback_backend=BackendConfig(base_url=fallback.base_url, timeout_s=5) if fallback else None,
        scoring=ScoringConfig(votes=1, concurrency=8, deadline_s=30),
        retry=RetryPolicy(attempts=3, initial_wait_s=0.001, max_wait_s=0.01),
        circuit=CircuitPolicy(failure_threshold=5, open_s=open_s), cache_url=cache_url)


async def test_dead_judge_is_not_hammered_and_the_fallback_takes_over(dead_judge: ScriptedJudgeServer,
                                                                      spare_judge: ScriptedJudgeServer,
                                                                      cache_url: str) -> None:
    config = gateway_config(dead_judge, cache_url, spare_judge)
    async with Gateway.open(config) as gateway:
        results = await gateway.score(ITEMS, "helpfulness")
        assert all(r.reward is not None and "fallback" in r.flags for r in results)
        assert all(r.judge == "openai:judge-model" for r in results)
        assert gateway.breaker is not None and gateway.breaker.opened == 1
        # 40 items x 3 attempts would be 120 calls; the breaker stops after 5 failures (+ those in flight)
        assert len(dead_judge.calls) <= 5 + config.scoring.concurrency
        assert len(spare_judge.calls) == len(ITEMS)
        assert gateway.store is not None
        stats = gateway.store.stats()
        assert stats["by_judge"] == {"openai:spare-model": len(ITEMS)}  # cached under the judge that answered


async def test_recovered_judge_is_probed_and_used_again(spare_judge: ScriptedJudgeServer, cache_url: str) -> None:
    with ScriptedJudgeServer(lambda call: Reply.error(500)) as primary:
        config = gateway_config(primary, cache_url, spare_judge, open_s=0.5)
        async with Gateway.open(config) as gateway:
            first = await gateway.score(ITEMS[:10], "helpfulness")
            assert all("fallback" in r.flags for r in first)
            primary.set_script(None)  # the judge comes back
            await asyncio.sleep(0.6)
            again = await gateway.score(ITEMS[10:20], "helpfulness")  # one probe; the rest still go to the spare
            assert gateway.breaker is not None and gateway.breaker.state == "closed"
            assert all(r.reward is not None for r in again)
            assert sum("fallback" not in r.flags for r in again) >= 1
            later = await gateway.score(ITEMS[20:30], "helpfulness")
            assert all(r.reward is not None and "fallback" not in r.flags for r in later)


async def test_without_a_fallback_a_dead_judge_gives_null_with_a_reason_fast(dead_judge: ScriptedJudgeServer) -> None:
    async with Gateway.open(gateway_config(dead_judge, None)) as gateway:
        results = await gateway.score(ITEMS, "helpfulness")
    assert all(r.reward is None and r.reason for r in results)
    assert sum("CircuitOpen" in (r.reason or "") for r in results) >= len(ITEMS) - 5 - 8
    assert len(dead_judge.calls) <= 5 + 8


def test_cli_fallback_judge_option(tmp_path: Path) -> None:
    """`score --fallback-judge`: the main judge is unreachable (closed port), the fallback answers."""
    runner = CliRunner()
    result = runner.invoke(cli_app, [
        "score", "--rubric", "helpfulness", "--prompt", "Hi?", "--response", "Hello!", "--json",
        "--judge", "openai:nobody", "--judge-base-url", "http://127.0.0.1:9/v1", "--timeout", "2",
        "--fallback-judge", "fake:best", "--cache", str(tmp_path / "c.db"), "--votes", "1"])
    assert result.exit_code == 0, result.output
    assert '"fallback"' in result.output and '"reward": 1.0' in result.output


def check_fault_run(report_items: int, concurrency: int, tmp_path: Path, deadline_s: float) -> None:
    report = fault_run(tmp_path / "faults.db", items=report_items, concurrency=concurrency, fault_rate=0.3,
                       votes=3, deadline_s=deadline_s)
    print("\n".join(f"{k:32s} {v}" for k, v in report.rows()))
    assert sum(report.faults.values()) > 0.2 * report.judge_calls  # the faults really happened
    assert report.transport_errors == 0 and set(report.statuses) == {200}  # never crashed, never a 5xx
    assert report.answered == report_items and report.null_without_reason == 0  # every item: reward or null+reason
    assert report.cached_failures == 0 and report.cache_rows > 0  # never caches a failure
    assert report.scored >= report_items // 2
    # the reply deadline is the item deadline x 1.1 + 0.25 s; allow for a loaded 2-core machine
    assert report.percentile(99) <= deadline_s * 1.25 + 1.0


def test_faulty_judge_over_http_answers_every_item(tmp_path: Path) -> None:
    check_fault_run(200, 32, tmp_path, deadline_s=10.0)


@pytest.mark.slow
def test_two_thousand_items_at_concurrency_64_with_30_percent_faults(tmp_path: Path) -> None:
    check_fault_run(2000, 64, tmp_path, deadline_s=10.0)


def test_server_stays_up_and_healthy_after_judge_faults(tmp_path: Path) -> None:
    from rubricgate.interfaces.http import ServerSettings, create_app
    from tests.support.app_server import serving

    with ScriptedJudgeServer(fault_rate=1.0, fault_kinds=["reset", "malformed", "server_error"]) as judge:
        config = gateway_config(judge, f"sqlite:///{tmp_path / 'c.db'}")
        with serving(create_app(Gateway.open(config), ServerSettings(default_rubric="helpfulness"))) as server:
            body = {"items": [{"prompt": "q", "response": f"a{i}"} for i in range(20)]}
            response = httpx.post(f"{server.url}/v1/reward", json=body, timeout=60)
            assert response.status_code == 200
            assert all(r["reward"] is None and r["reason"] for r in response.json()["results"])
            health = httpx.get(f"{server.url}/healthz", timeout=10)
            assert health.status_code == 200 and health.json()["judge_circuit"] == "open"  # 20 items x 3 tries, 5 to open
