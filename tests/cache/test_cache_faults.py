"""A cache that cannot be read or written degrades to uncached judging; it never fails a vote.

Real faults on real SQLite files: a read-only database (`mode=ro`), a database another process
holds locked past a short busy timeout, a dropped table, plus a store whose writes raise.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from rubricgate.cache.cached import CachedBackend
from rubricgate.cache.store import JudgmentStore, StoredJudgment
from rubricgate.cache.versions import RubricVersionStore
from rubricgate.errors import CacheError, UsageError
from rubricgate.integrations.trl import rubric_reward
from rubricgate.interfaces.cli import app as cli_app
from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.interfaces.http import ServerSettings, create_app
from rubricgate.judges.fake import FakeBackend, best_reply
from rubricgate.library.rubric_files import parse_rubric
from rubricgate.models.config import ScoringConfig
from rubricgate.models.judging import JudgeReply, JudgeRequest
from rubricgate.models.reward import Item
from rubricgate.scoring.scorer import RubricScorer
from tests.support.app_server import serving

RUBRIC = parse_rubric({"id": "demo", "criteria": [
    {"id": "answers", "kind": "hard_rule", "text": "The response answers the question."},
    {"id": "clear", "kind": "principle", "text": "The response is clear."}]})
ITEMS = [Item(id=str(i), prompt=f"Question {i}?", response=f"Answer {i}.") for i in range(4)]
BUSY_TIMEOUT_S = 0.2
_HOLD_LOCK = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()  # hold the lock until the test closes our stdin
"""


def created(db: Path) -> str:
    """A cache database with every table in place (a locked or read-only one cannot create them)."""
    url = f"sqlite:///{db}"
    JudgmentStore(url).close()
    RubricVersionStore(url).close()
    return url


@pytest.fixture
def read_only_url(tmp_path: Path) -> str:
    db = tmp_path / "read-only.db"
    created(db)
    return f"sqlite:///file:{db}?mode=ro&uri=true"


@pytest.fixture
def locked_url(tmp_path: Path) -> Iterator[str]:
    """A cache another process holds with BEGIN EXCLUSIVE for the whole test."""
    db = tmp_path / "locked.db"
    created(db)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(db)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield f"sqlite:///{db}?timeout={BUSY_TIMEOUT_S}"
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)


@pytest.fixture(params=["read_only", "locked"])
def faulty_url(request: pytest.FixtureRequest) -> str:
    """A cache URL whose database takes no writes, for the end-to-end runs."""
    return str(request.getfixturevalue(f"{request.param}_url"))


class FailingWrites(JudgmentStore):
    """A store whose writes raise (a full disk) while `broken` is set."""

    broken = True

    async def put(self, meta: StoredJudgment, reply: JudgeReply) -> None:
        if self.broken:
            raise CacheError("cannot write to cache: disk I/O error (database or disk is full)")
        await super().put(meta, reply)


def best_judge() -> FakeBackend:
    return FakeBackend(lambda request: best_reply(request.form))


def cache_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "rubricgate.cache.cached" and r.levelno == logging.WARNING]


# ------------------------------------------------------------------ the store maps every fault


def test_writes_to_a_read_only_database_raise_cache_error(read_only_url: str) -> None:
    store = JudgmentStore(read_only_url)
    assert store.stats()["judgments"] == 0  # reads work
    with pytest.raises(CacheError, match="cannot write to cache .*readonly database"):
        store.clear()
    store.close()


async def test_a_lock_held_past_the_busy_timeout_is_a_cache_error_and_queued_writes_fail_fast(
        locked_url: str) -> None:
    store = JudgmentStore(locked_url)
    reply = JudgeReply(text="{}", backend="fake:x")
    metas = [StoredJudgment(key=f"k{i}", judge="fake:x", rubric="demo@1", template="t", sample_index=i)
             for i in range(5)]
    started = time.monotonic()
    outcomes = await asyncio.gather(*(store.put(m, reply) for m in metas), return_exceptions=True)
    elapsed = time.monotonic() - started
    assert all(isinstance(o, CacheError) for o in outcomes), outcomes
    assert "database is locked" in str(outcomes[0])
    assert all("the write before it failed" in str(o) for o in outcomes[1:])
    assert elapsed < 5 * BUSY_TIMEOUT_S + 2  # the URL's timeout, waited once, not the 30 s default per write
    assert await store.get_many(["k0"]) == {}  # readers are not blocked (WAL)
    store.close()


async def test_reads_of_a_broken_database_raise_cache_error(tmp_path: Path) -> None:
    db = tmp_path / "broken.db"
    store = JudgmentStore(created(db))
    with sqlite3.connect(db) as connection:
        connection.execute("DROP TABLE judgments")
    with pytest.raises(CacheError, match="cannot read cache .*no such table"):
        await store.get_many(["k"])
    with pytest.raises(CacheError):
        store.stats()
    store.close()


def test_a_database_that_cannot_be_opened_is_a_cache_error(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="cannot open cache"):
        JudgmentStore(f"sqlite:///{tmp_path}")  # a folder, not a file


@pytest.mark.parametrize("timeout", ["soon", "-1"])
def test_a_bad_busy_timeout_in_the_url_is_a_usage_error(tmp_path: Path, timeout: str) -> None:
    with pytest.raises(UsageError, match="timeout"):
        JudgmentStore(f"sqlite:///{tmp_path / 'c.db'}?timeout={timeout}")


def test_the_version_store_maps_database_errors_the_same_way(read_only_url: str) -> None:
    versions = RubricVersionStore(read_only_url)
    assert versions.current("demo") is None
    with pytest.raises(CacheError, match="cannot write to version store .*readonly database"):
        versions.record(RUBRIC, "baseline", "first")
    versions.close()


def test_messages_never_show_the_database_password() -> None:
    with pytest.raises((CacheError, UsageError)) as raised:
        JudgmentStore("postgresql+nosuchdriver://user:hunter2@127.0.0.1:1/cache")
    assert "hunter2" not in str(raised.value)


# ------------------------------------------------------------------ the cache wrapper degrades


async def test_failed_writes_keep_the_reply_flag_it_and_warn_once(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    store = FailingWrites(f"sqlite:///{tmp_path / 'c.db'}")
    judge = best_judge()
    cached = CachedBackend(judge, store)
    results = await RubricScorer(cached, ScoringConfig(votes=3)).score_many([(RUBRIC, i) for i in ITEMS])
    assert [r.reward for r in results] == [1.0] * len(ITEMS)
    assert all("cache_unavailable" in r.flags for r in results)
    assert cached.counters.errors >= 1 and cached.counters.stored == 0
    assert len(judge.requests) == 3 * len(ITEMS)
    assert len(cache_warnings(caplog)) == 1  # once per burst, not per vote
    store.close()


async def test_the_cache_is_retried_after_a_burst_and_used_again(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    store = FailingWrites(f"sqlite:///{tmp_path / 'c.db'}")
    cached = CachedBackend(best_judge(), store, retry_s=0.0)
    scorer = RubricScorer(cached, ScoringConfig(votes=1))
    assert "cache_unavailable" in (await scorer.score(RUBRIC, ITEMS[0])).flags
    store.broken = False
    with caplog.at_level(logging.INFO, logger="rubricgate.cache.cached"):
        recovered = await scorer.score(RUBRIC, ITEMS[1])
    assert "cache_unavailable" not in recovered.flags and cached.counters.stored == 1
    assert any("works again" in r.getMessage() for r in caplog.records)
    again = await scorer.score(RUBRIC, ITEMS[1])
    assert again.cached and again.judge_calls == 0
    store.close()


async def test_unreadable_cache_sends_every_vote_to_the_judge(tmp_path: Path) -> None:
    db = tmp_path / "broken.db"
    store = JudgmentStore(created(db))
    judge = best_judge()
    cached = CachedBackend(judge, store)
    scorer = RubricScorer(cached, ScoringConfig(votes=2))
    with sqlite3.connect(db) as connection:
        connection.execute("DROP TABLE judgments")
    requests = [scorer.requests_for(RUBRIC, item) for item in ITEMS]
    assert await cached.prefetch([r for rs in requests for r in rs]) == 0
    results = await scorer.score_many([(RUBRIC, i) for i in ITEMS], requests=requests)
    cached.forget_prefetched()
    assert all(r.reward == 1.0 and "cache_unavailable" in r.flags and not r.cached for r in results)
    assert len(judge.requests) == 2 * len(ITEMS)
    store.close()


async def test_a_cache_error_from_any_judge_stack_is_an_error_vote_not_a_crash() -> None:
    def cache_down(request: JudgeRequest) -> str:
        raise CacheError("cache sqlite:///x.db: database is locked")

    results = await RubricScorer(FakeBackend(cache_down), ScoringConfig(votes=2)).score_many(
        [(RUBRIC, i) for i in ITEMS])
    assert all(r.reward is None and "CacheError" in (r.reason or "") for r in results)
    assert all("cache_unavailable" in r.flags for r in results)


# ------------------------------------------------------------------ edges: CLI, HTTP, TRL


def test_score_command_answers_every_item_and_exits_0(faulty_url: str, tmp_path: Path) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps(i.model_dump(mode="json")) + "\n" for i in ITEMS))
    out = tmp_path / "scored.jsonl"
    rubric = tmp_path / "demo.yaml"
    rubric.write_text(json.dumps(RUBRIC.model_dump(mode="json", by_alias=True, exclude_defaults=True)))
    result = CliRunner().invoke(cli_app, ["score", "--judge", "fake:best", "--cache", faulty_url, "--rubric",
                                          str(rubric), "--input", str(items), "--output", str(out)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == len(ITEMS)
    assert all(line["reward"] == 1.0 and "cache_unavailable" in line["flags"] for line in lines)
    assert "Traceback" not in result.output and "cache errors" in result.stderr


def test_serve_answers_every_item_and_counts_cache_errors(faulty_url: str) -> None:
    gateway = Gateway.open(GatewayConfig(judge="fake:best", cache_url=faulty_url, scoring=ScoringConfig(votes=2)))
    app = create_app(gateway, ServerSettings(default_rubric="helpfulness"))
    with serving(app) as server:
        body = {"items": [{"id": i.id, "prompt": i.prompt, "response": i.response} for i in ITEMS]}
        response = httpx.post(f"{server.url}/v1/reward", json=body, timeout=30)
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert all(r["reward"] is not None and "cache_unavailable" in r["flags"] for r in results)
        openrlhf = httpx.post(f"{server.url}/get_reward", json={"query": ["Answer."], "prompts": ["Q?"]}, timeout=30)
        assert openrlhf.status_code == 200 and openrlhf.json()["extra_logs"]["unscorable"] == [0.0]
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    errors = next(line for line in metrics.splitlines() if line.startswith("rubricgate_cache_errors_total"))
    assert float(errors.split()[-1]) >= 1
    assert 'rubricgate_flagged_items_total{flag="cache_unavailable"}' in metrics


async def test_trl_reward_function_answers_every_completion(faulty_url: str,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    reward = rubric_reward("helpfulness", judge="fake:best", votes=2, cache=faulty_url)
    rewards = await reward(prompts=["Name a colour."] * 3, completions=["Blue.", "Green.", "Red."])
    assert rewards == [1.0, 1.0, 1.0]
    assert cache_warnings(caplog)
