from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rubricgate.cache.cached import CachedBackend
from rubricgate.cache.keys import cache_key
from rubricgate.cache.store import JudgmentStore
from rubricgate.judges.fake import FakeBackend, best_reply
from rubricgate.judges.prompts import load_template, render_messages, verdict_form
from rubricgate.library.rubric_files import parse_rubric
from rubricgate.models.config import ScoringConfig
from rubricgate.models.judging import JudgeRequest, SamplingParams
from rubricgate.models.reward import Item
from rubricgate.scoring.scorer import RubricScorer

RUBRIC_DATA = {"id": "demo", "criteria": [
    {"id": "answers", "kind": "hard_rule", "text": "The response answers the question."},
    {"id": "clear", "kind": "principle", "text": "The response is clear."}]}
RUBRIC = parse_rubric(RUBRIC_DATA)
ITEM = Item(id="a", prompt="What is 2+2?", response="4")


def request(rubric=RUBRIC, item=ITEM, sampling=SamplingParams(), template_version=None, sample_index=0) -> JudgeRequest:
    template = load_template()
    form = verdict_form(rubric)
    return JudgeRequest(messages=render_messages(template, rubric, item, form), form=form, sampling=sampling,
                        sample_index=sample_index, template_version=template_version or template.version,
                        rubric_ref=rubric.ref)


def test_key_changes_with_everything_that_can_change_a_reply() -> None:
    base = cache_key("fake:a", request())
    edited = parse_rubric({**RUBRIC_DATA, "criteria": [
        {"id": "answers", "kind": "hard_rule", "text": "The response answers the question fully."},
        RUBRIC_DATA["criteria"][1]]})
    variants = {
        "rubric text": cache_key("fake:a", request(rubric=edited)),
        "template": cache_key("fake:a", request(template_version="judge_v1@00000000")),
        "judge": cache_key("fake:b", request()),
        "temperature": cache_key("fake:a", request(sampling=SamplingParams(temperature=0.1))),
        "max tokens": cache_key("fake:a", request(sampling=SamplingParams(max_tokens=64))),
        "response": cache_key("fake:a", request(item=Item(prompt="What is 2+2?", response="5"))),
        "reference": cache_key("fake:a", request(item=Item(prompt="What is 2+2?", response="4", reference="4"))),
        "vote": cache_key("fake:a", request(sample_index=1)),
    }
    for what, key in variants.items():
        assert key != base, what
    assert cache_key("fake:a", request()) == base


async def test_rescoring_comes_from_the_cache_and_more_votes_only_call_for_new_ones(cache_url: str) -> None:
    store = JudgmentStore(cache_url)
    judge = FakeBackend(lambda r: best_reply(r.form))
    first = await RubricScorer(CachedBackend(judge, store), ScoringConfig(votes=3)).score(RUBRIC, ITEM)
    assert len(judge.requests) == 3 and first.judge_calls == 3 and not first.cached
    again = await RubricScorer(CachedBackend(judge, store), ScoringConfig(votes=3)).score(RUBRIC, ITEM)
    assert len(judge.requests) == 3 and again.cached and again.judge_calls == 0
    assert again.reward == first.reward and again.criteria == first.criteria
    more = await RubricScorer(CachedBackend(judge, store), ScoringConfig(votes=5)).score(RUBRIC, ITEM)
    assert sorted(r.sample_index for r in judge.requests[3:]) == [3, 4]
    assert more.judge_calls == 2 and not more.cached
    store.close()


async def test_failures_are_not_cached(cache_url: str) -> None:
    store = JudgmentStore(cache_url)
    garbage = FakeBackend.from_spec("garbage")
    result = await RubricScorer(CachedBackend(garbage, store), ScoringConfig(votes=2)).score(RUBRIC, ITEM)
    assert result.reward is None
    assert store.stats()["judgments"] == 0
    good = FakeBackend(lambda r: best_reply(r.form))
    result = await RubricScorer(CachedBackend(good, store), ScoringConfig(votes=2)).score(RUBRIC, ITEM)
    assert result.reward == 1.0 and len(good.requests) == 2
    assert store.stats()["judgments"] == 2
    store.close()


async def test_identical_requests_in_flight_are_coalesced(cache_url: str) -> None:
    store = JudgmentStore(cache_url)
    judge = FakeBackend(lambda r: best_reply(r.form))
    scorer = RubricScorer(CachedBackend(judge, store), ScoringConfig(votes=2))
    results = await scorer.score_many([(RUBRIC, ITEM)] * 5)
    assert len(judge.requests) == 2
    assert all(r.reward == 1.0 for r in results)
    store.close()


def test_judgments_persist_across_processes(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    url = f"sqlite:///{db}"
    code = (
        "import asyncio, sys\n"
        "from rubricgate.cache.cached import CachedBackend\n"
        "from rubricgate.cache.store import JudgmentStore\n"
        "from rubricgate.judges.fake import FakeBackend, best_reply\n"
        "from rubricgate.scoring.scorer import RubricScorer\n"
        "from rubricgate.models.config import ScoringConfig\n"
        "from rubricgate.models.reward import Item\n"
        "from rubricgate.library.rubric_files import resolve_rubric\n"
        "judge = FakeBackend(lambda r: best_reply(r.form))\n"
        "store = JudgmentStore(sys.argv[1])\n"
        "r = asyncio.run(RubricScorer(CachedBackend(judge, store), ScoringConfig(votes=2)).score("
        "resolve_rubric('helpfulness'), Item(prompt='hi', response='hello')))\n"
        "print(len(judge.requests), r.cached, r.reward)\n"
    )
    first = subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True, check=True)
    second = subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True, check=True)
    assert first.stdout.split() == ["2", "False", "1.0"]
    assert second.stdout.split() == ["0", "True", "1.0"]
    store = JudgmentStore(url)
    assert store.stats()["judgments"] == 2
    assert {row["sample_index"] for row in store.export()} == {0, 1}
    assert store.clear(rubric="helpfulness") == 2
    store.close()


def test_sqlite_runs_in_wal_mode(cache_url: str) -> None:
    store = JudgmentStore(cache_url)
    with store._engine.connect() as conn:  # noqa: SLF001 - checking the pragma on a real connection
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    store.close()


def test_bad_cache_url_is_a_usage_error() -> None:
    from rubricgate.errors import UsageError

    with pytest.raises(UsageError, match="bad cache URL"):
        JudgmentStore("nosuchdb://x")
