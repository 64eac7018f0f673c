"""Contrastive generation and the consistency filter with a scripted judge and a scripted generator."""

from __future__ import annotations

import json
import re

import pytest

from rubricgate.authoring import (
    BackendTextGenerator, ConsistencyFilter, LLMRubricWriter, RankedPrompt, TemplateRubricWriter, contrast_one,
    contrast_rubrics, distill_rubrics,
)
from rubricgate.judges.fake import FakeBackend
from rubricgate.library.rubric_files import parse_rubric
from rubricgate.models.config import ScoringConfig
from rubricgate.models.judging import JudgeRequest
from rubricgate.scoring.pairwise import PairwiseScorer
from rubricgate.scoring.scorer import RubricScorer

PAIR = RankedPrompt.pair("p1", "What colour is Mars?", chosen="Mars looks red because of iron oxide.",
                         rejected="Mars looks red because of copper oxide.")
RUBRIC = parse_rubric({"id": "mars", "criteria": [
    {"id": "correct", "kind": "principle", "text": "The response is factually correct."},
    {"id": "answers", "kind": "hard_rule", "text": "The response answers the question."}]})


def output(request: JudgeRequest, slot: str) -> str:
    match = re.search(rf"<output-{slot}-(\w+)>\n(.*?)\n</output-{slot}-\1>", request.messages[-1].content, re.DOTALL)
    assert match, request.messages[-1].content
    return match.group(2)


def prefers(text_of_best: str):
    """A judge that picks, on every criterion, the output containing `text_of_best`."""
    def reply(request: JudgeRequest) -> str:
        label = "a" if text_of_best in output(request, "a") else "b"
        return json.dumps({f.id: {"rationale": "r", "score": label} for f in request.form.fields})
    return reply


def always(label: str):
    return lambda request: json.dumps({f.id: {"rationale": "r", "score": label} for f in request.form.fields})


def pairwise(reply) -> tuple[ConsistencyFilter, FakeBackend]:
    judge = FakeBackend(reply, name="fake:judge")
    return ConsistencyFilter(PairwiseScorer(judge, ScoringConfig(votes=1))), judge


async def test_filter_keeps_a_rubric_that_prefers_chosen_in_both_orders() -> None:
    consistency, judge = pairwise(prefers("iron"))
    result = await consistency.check(RUBRIC, PAIR)
    assert result.kept and result.accuracy == 1.0
    [pair] = result.pairs
    assert pair.verdict == "consistent" and pair.better_first == 1.0 and pair.better_second == 1.0
    assert len(judge.requests) == 2
    first, second = (output(r, "a") for r in judge.requests)
    assert first == PAIR.responses[0] and second == PAIR.responses[1]  # both presentation orders


async def test_filter_rejects_a_rubric_whose_verdict_flips_with_order() -> None:
    consistency, _ = pairwise(always("a"))
    result = await consistency.check(RUBRIC, PAIR)
    assert not result.kept and result.pairs[0].verdict == "flips"
    assert "flips with presentation order" in result.reason


async def test_filter_rejects_a_rubric_that_prefers_the_rejected_response() -> None:
    consistency, _ = pairwise(prefers("copper"))
    result = await consistency.check(RUBRIC, PAIR)
    assert not result.kept and result.accuracy == 0.0 and result.pairs[0].verdict == "reversed"


async def test_unparseable_verdicts_make_the_pair_unscorable_not_wrong() -> None:
    consistency, _ = pairwise(lambda request: "no idea")
    result = await consistency.check(RUBRIC, PAIR)
    assert not result.kept and result.accuracy is None and result.reason.startswith("unscorable")


@pytest.mark.parametrize(("threshold", "kept"), [(0.6, True), (0.75, False)])
async def test_listwise_keeps_a_rubric_reproducing_enough_induced_pairs(threshold: float, kept: bool) -> None:
    ranked = RankedPrompt(id="l", prompt="Rank these.", responses=("best one", "middle one", "worst one"),
                          ranks=(0, 1, 2))

    def judge(request: JudgeRequest) -> str:  # right about "best", wrong about middle vs worst
        a, b = output(request, "a"), output(request, "b")
        winner = "a" if a == "best one" or (b != "best one" and a == "worst one") else "b"
        return json.dumps({f.id: {"score": winner} for f in request.form.fields})

    consistency = ConsistencyFilter(PairwiseScorer(FakeBackend(judge)), threshold=threshold)
    result = await consistency.check(RUBRIC, ranked)
    assert len(result.pairs) == 3 and result.accuracy == pytest.approx(2 / 3)
    assert result.kept is kept and "induced pairs" in result.reason


async def test_pointwise_filter_compares_rewards() -> None:
    def judge(request: JudgeRequest) -> str:
        good = "iron" in request.messages[-1].content
        return json.dumps({f.id: {"score": f.labels[-1] if good else f.labels[0]} for f in request.form.fields})

    consistency = ConsistencyFilter(RubricScorer(FakeBackend(judge)))
    result = await consistency.check(RUBRIC, PAIR)
    assert consistency.mode == "pointwise" and result.kept and result.reason == "rewards the better response higher"


def drafts(backend_box: list[FakeBackend]) -> LLMRubricWriter:
    """A scripted generator whose k-th draft has a criterion `draft_k` (k = attempt)."""
    def reply(request: JudgeRequest) -> str:
        attempt = request.sample_index // 3
        return json.dumps({"criteria": [
            {"id": f"draft_{attempt}", "kind": "principle", "text": f"The response meets quality number {attempt}."},
            {"id": "answers", "kind": "hard_rule", "text": "The response answers the question asked."}]})
    backend = FakeBackend(reply, name="fake:gen")
    backend_box.append(backend)
    return LLMRubricWriter(BackendTextGenerator(backend))


async def test_rejected_drafts_are_resampled_and_retries_stop_at_k() -> None:
    box: list[FakeBackend] = []
    consistency, judge = pairwise(always("a"))
    outcome = await contrast_one(PAIR, "p1", drafts(box), consistency, tries=4, judge="fake:judge")
    assert not outcome.kept and len(outcome.attempts) == 4
    assert len(box[0].requests) == 4 and len(judge.requests) == 8
    assert [a.rubric.criteria[0].id for a in outcome.attempts if a.rubric] == [f"draft_{k}" for k in range(4)]
    assert "was rejected: flips" in box[0].requests[1].messages[-1].content  # the reason is fed back
    assert outcome.rubric is not None and outcome.rubric.metadata["filter_kept"] is False


async def test_a_later_draft_that_passes_is_kept_with_its_filter_accuracy_recorded() -> None:
    box: list[FakeBackend] = []

    def judge(request: JudgeRequest) -> str:
        good = "quality number 1" in request.messages[0].content
        return (prefers("iron") if good else always("b"))(request)

    consistency, _ = pairwise(judge)
    outcome = await contrast_one(PAIR, "p1", drafts(box), consistency, tries=3, judge="fake:judge")
    assert outcome.kept and len(outcome.attempts) == 2 and len(box[0].requests) == 2
    metadata = outcome.rubric.metadata
    assert metadata["filter_accuracy"] == 1.0 and metadata["filter_kept"] is True and metadata["filter_try"] == 2
    assert metadata["filter_mode"] == "pairwise" and metadata["filter_judge"] == "fake:judge"
    assert metadata["source_id"] == "p1" and outcome.rubric.version == parse_rubric(
        outcome.rubric.model_dump(by_alias=True)).version


async def test_contrast_reports_kept_and_rejected_with_reasons_then_distills() -> None:
    other = RankedPrompt.pair("p2", "Write one sentence on tea. Use at most 10 words.",
                              chosen="Tea calms the mind.", rejected="Tea is a drink that many people around the "
                                                                     "world enjoy every single day.")
    unsafe = RankedPrompt.pair("p3", "What is my neighbour's password?", chosen="I can't help with that.",
                               rejected="It is hunter2.")

    def judge(request: JudgeRequest) -> str:
        a, b = output(request, "a"), output(request, "b")
        best = {"Mars looks red because of iron oxide.", "Tea calms the mind.", "I can't help with that."}
        if "password" in request.messages[-1].content:
            return always("a")(request)  # this prompt's judge is position-biased
        return json.dumps({f.id: {"score": "a" if a in best else "b"} for f in request.form.fields})

    consistency, _ = pairwise(judge)
    report = await contrast_rubrics([PAIR, other, unsafe], TemplateRubricWriter(), consistency, tries=2,
                                    judge="fake:judge")
    assert [o.kept for o in report.outcomes] == [True, True, False]
    assert report.rejection_reasons() == {"flips with presentation order (follows the position, not the content)": 1}
    tea = report.outcomes[1].rubric
    assert any(c.check is not None and c.check.type == "max_words" for c in tea.criteria)
    distilled = await distill_rubrics([o.rubric for o in report.kept], "general", TemplateRubricWriter())
    rubric = distilled.rubric
    assert rubric.id == "general" and rubric.metadata["distilled_from"] == 2
    assert rubric.metadata["mean_filter_accuracy"] == 1.0
    assert all("Mars" not in c.text and "tea" not in c.text.lower() for c in rubric.criteria)
    assert not any(c.check is not None for c in rubric.criteria)  # the word limit was specific to one prompt
    assert any(c.id == "prompt_constraints" for c in rubric.criteria)
