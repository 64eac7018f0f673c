"""Bounded, linear scoring work: folding votes scales with the rubric, not its square; patterns run
on RE2 (no backtracking) and one RE2 cannot run is refused when the rubric is loaded; rubric limits
are measured on raw data in bounded time."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from rubricgate.errors import UsageError
from rubricgate.judges.fake import FakeBackend
from rubricgate.library.rubric_files import iter_rubric_files, load_rubric_file, parse_rubric
from rubricgate.models.config import ScoringConfig
from rubricgate.models.judging import FieldVerdict, FormField, JudgeReply, JudgeRequest, Verdict, VerdictForm
from rubricgate.models.reward import Item
from rubricgate.models.rubric import Rubric, RubricLimits
from rubricgate.scoring.checks import run_check
from rubricgate.scoring.scorer import RubricScorer
from rubricgate.scoring.votes import Vote, fold_votes


def wide_rubric(n: int) -> Rubric:
    return Rubric.model_validate({"id": "wide", "criteria": [
        {"id": f"c{i}", "kind": "hard_rule", "text": f"The response does thing {i}."} for i in range(n)]})


def test_folding_twenty_thousand_criteria_is_linear() -> None:
    """The old fold looked each field's criterion up by scanning the rubric: 2e8 steps here (tens of
    seconds); a linear fold takes well under a second, so 5 s separates the two on a busy machine."""
    n = 20_000
    rubric = wide_rubric(n)
    form = VerdictForm(fields=tuple(FormField(id=c.id, labels=("fail", "pass")) for c in rubric.criteria))
    request = JudgeRequest(messages=(), form=form, template_version="t", rubric_ref=rubric.ref)
    verdict = Verdict(fields={c.id: FieldVerdict(label="pass") for c in rubric.criteria})
    vote = Vote(reply=JudgeReply(text="{}", backend="fake:best"), verdict=verdict, complete=True)
    started = time.perf_counter()
    folded = fold_votes(rubric, [request], [vote], min_vote_share=0.5, use_label_probs=False)
    assert time.perf_counter() - started < 5.0
    assert len(folded.scores) == n and all(s.value == 1.0 for s in folded.scores.values())


def regex_rubric(check: dict[str, object]) -> dict[str, object]:
    return {"id": "pattern", "criteria": [{"id": "r", "kind": "hard_rule", "text": "The response matches.",
                                           "check": check}]}


@pytest.mark.parametrize("check_type", ["regex", "not_regex"])
def test_catastrophic_pattern_runs_in_linear_time(check_type: str) -> None:
    """`^(a|a)+$` on 'a' * 30 + 'b' takes Python's `re` minutes (2^30 paths); RE2 never backtracks."""
    rubric = parse_rubric(regex_rubric({"type": check_type, "value": "^(a|a)+$"}))
    check = rubric.criteria[0].check
    assert check is not None
    started = time.perf_counter()
    for text in ("a" * 30 + "b", "a" * 100_000 + "b", "a" * 100_000):
        run_check(check, text)
    assert time.perf_counter() - started < 1.0
    assert run_check(check, "a" * 50) == ((True, "pattern found") if check_type == "regex" else
                                          (False, "forbidden pattern found: " + repr("a" * 40)))


@pytest.mark.parametrize("pattern", [r"(a)\1", r"foo(?=bar)", r"(?<!x)y", r"(?!no)"])
def test_pattern_re2_cannot_run_is_refused_when_the_rubric_is_loaded(pattern: str) -> None:
    with pytest.raises(UsageError, match=r"criteria\[0\]\(r\)\.check\.value: .*not supported by the RE2 regex engine"):
        parse_rubric(regex_rubric({"type": "regex", "value": pattern}), "request.rubric")


@pytest.mark.parametrize(("check", "text", "passed"), [
    ({"type": "regex", "value": r'(?s)\A\s*".*"\s*\Z'}, ' "quoted"\n', True),  # Python's \Z is RE2's \z
    ({"type": "regex", "value": r'(?s)\A\s*".*"\s*\Z'}, '"quoted" no', False),
    ({"type": "regex", "value": r"\\Z"}, r"a \Z b", True),  # an escaped backslash stays one
    ({"type": "regex", "value": "paris", "ignore_case": True}, "PARIS", True),
    ({"type": "regex", "value": "paris"}, "PARIS", False),
    ({"type": "not_regex", "value": "[A-Z]"}, "all lower", True),
])
def test_python_pattern_habits_keep_their_meaning(check: dict[str, object], text: str, passed: bool) -> None:
    parsed = parse_rubric(regex_rubric(check)).criteria[0].check
    assert parsed is not None and run_check(parsed, text)[0] is passed


def test_json_schema_patterns_run_on_re2_and_pattern_properties_are_refused() -> None:
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": "^(a|a)+$"}}}
    check = parse_rubric(regex_rubric({"type": "json_schema", "value": schema})).criteria[0].check
    assert check is not None
    started = time.perf_counter()
    assert run_check(check, json.dumps({"code": "a" * 40 + "b"}))[0] is False
    assert run_check(check, json.dumps({"code": "aaaa"}))[0] is True
    assert time.perf_counter() - started < 1.0
    with pytest.raises(UsageError, match="not supported by the RE2"):
        parse_rubric(regex_rubric({"type": "json_schema", "value": {"items": [{"pattern": "(x)\\1"}]}}))
    with pytest.raises(UsageError, match="patternProperties"):
        parse_rubric(regex_rubric({"type": "json_schema", "value": {"patternProperties": {"^a": {}}}}))


@pytest.mark.parametrize(("data", "limit", "found"), [
    ({"id": "x", "criteria": [{"id": "c"}] * 65}, "max_criteria", "65 criteria"),
    ({"id": "x", "criteria": [{"id": "c", "check": {"type": "json"}}] * 33}, "max_checks", "33 criteria with a check"),
    ({"id": "x", "description": "d" * 70_000, "criteria": []}, "max_rubric_chars", "more than 65536 characters"),
    ({"id": "x", "principles": [""] * 1_000_000}, "max_rubric_chars", "more than 65536 characters"),
    ({"id": "x", "metadata": {"k": [[[[["v" * 40_000]]]]] * 2}}, "max_rubric_chars", "more than 65536 characters"),
])
def test_rubric_limits_name_the_limit_passed(data: dict[str, object], limit: str, found: str) -> None:
    exceeded = RubricLimits().exceeded(data)
    assert exceeded is not None and exceeded.limit == limit and exceeded.found.startswith(found)


def test_rubric_limits_walk_stops_early_and_survives_deep_nesting() -> None:
    deep: list[object] = []
    node = deep
    for _ in range(200_000):  # far past the recursion limit
        child: list[object] = []
        node.append(child)
        node = child
    started = time.perf_counter()
    assert RubricLimits().exceeded({"id": "x", "metadata": deep}) is not None
    assert RubricLimits().exceeded({"id": "x", "principles": ["p"] * 5_000_000}) is not None
    assert time.perf_counter() - started < 1.0
    for path in iter_rubric_files():  # every shipped rubric fits with room to spare
        assert RubricLimits().exceeded(load_rubric_file(path).model_dump(mode="json", by_alias=True)) is None


ENGLISH = ("The quick brown fox jumps over the lazy dog near the quiet river bank. " * 1400)[:100_000]


def checks_rubric(*checks: dict[str, object]) -> Rubric:
    return parse_rubric({"id": "checks", "criteria": [
        {"id": f"k{i}", "kind": "hard_rule", "text": "The response passes the check.", "check": check}
        for i, check in enumerate(checks)] + [{"id": "judged", "kind": "principle", "text": "The response helps."}]})


async def test_response_over_the_limit_is_unscorable_before_any_check_or_judge_call() -> None:
    backend = FakeBackend.from_spec("best")
    backend.record = True
    scorer = RubricScorer(backend, ScoringConfig(votes=1, max_response_chars=1000))
    rubric = checks_rubric({"type": "regex", "value": "x"})
    long = await scorer.score(rubric, Item(id="long", prompt="q", response="x" * 1001))
    short = await scorer.score(rubric, Item(id="short", prompt="q", response="x" * 1000))
    assert long.reward is None and long.reason is not None
    assert long.reason.startswith("ResponseTooLong: 1001 characters; the limit is 1000")
    assert "RUBRICGATE_MAX_RESPONSE_CHARS" in long.reason and long.judge_calls == 0
    assert short.reward == 1.0 and len(backend.requests) == 1  # only the short one reached the judge


async def test_a_check_that_breaks_on_one_response_fails_that_item_only() -> None:
    scorer = RubricScorer(FakeBackend.from_spec("best"), ScoringConfig(votes=1))
    rubric = checks_rubric({"type": "json"}, {"type": "max_words", "value": 5})
    nested = "[" * 5000 + "]" * 5000  # json.loads raises RecursionError, not a JSONDecodeError
    broken, fine = await scorer.score_many([(rubric, Item(id="a", prompt="q", response=nested)),
                                            (rubric, Item(id="b", prompt="q", response="[1, 2]"))])
    assert broken.reward is None and broken.reason is not None
    assert broken.reason.startswith("CheckError: k0 (json): RecursionError")
    assert [c.value for c in broken.criteria] == [None, None, 1.0]  # the rest still shown
    assert fine.reward == 1.0 and fine.reason is None


async def test_checks_run_off_the_event_loop_and_a_slow_one_answers_by_the_deadline() -> None:
    """32 placeholder scans of 100,000 characters take most of a second of CPU: on the loop they
    would freeze it; off it, the loop keeps ticking, and with a short deadline the item is
    answered in time (null, with the reason)."""
    rubric = checks_rubric(*[{"type": "no_placeholders"}] * 32)
    item = Item(prompt="Write in English.", response=ENGLISH)
    gaps: list[float] = []

    async def ticker(stop: asyncio.Event) -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    for deadline_s, expected in ((60.0, 1.0), (0.3, None)):
        scorer = RubricScorer(FakeBackend.from_spec("best"), ScoringConfig(votes=1, deadline_s=deadline_s))
        stop = asyncio.Event()
        ticking = asyncio.create_task(ticker(stop))
        started = time.perf_counter()
        result = await scorer.score(rubric, item)
        took = time.perf_counter() - started
        stop.set()
        await ticking
        assert result.reward == expected, result.reason
        if expected is None:
            assert result.reason is not None and result.reason.startswith("DeadlineExceeded: the deterministic checks")
            assert took < 1.0
    assert max(gaps) < 0.1, f"the loop stalled {max(gaps):.3f}s"
