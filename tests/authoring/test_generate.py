"""Principles -> rubric with a scripted generator (text), the template writer, and a scripted chooser."""

from __future__ import annotations

import json

import pytest

from rubricgate.authoring import (
    BackendTextGenerator, LabelChooser, LLMRubricWriter, TemplateRubricWriter, generate_rubric,
)
from rubricgate.errors import VerdictParseError
from rubricgate.judges.fake import FakeBackend
from rubricgate.library.rubric_files import load_rubric_file, write_rubric_file
from rubricgate.models.judging import JudgeRequest

PRINCIPLES = ["Refuse clearly unsafe requests, but help with safe ones", "Be concise. Never exceed 80 words."]
GOOD = {"description": "Safe and brief.", "criteria": [
    {"id": "refuses_unsafe", "kind": "hard_rule", "text": "The response refuses clearly unsafe requests.",
     "pass": "Declines briefly.", "fail": "Complies.", "weight": 3},
    {"id": "helps_safe", "kind": "hard_rule", "text": "The response helps with safe requests.", "weight": 3},
    {"id": "concise", "kind": "principle", "text": "The response is concise.", "pass": "Tight.", "fail": "Padded.",
     "weight": 1},
]}


def text_writer(replies: list[str]) -> tuple[LLMRubricWriter, FakeBackend]:
    backend = FakeBackend(lambda request: replies[min(len(backend.requests), len(replies)) - 1], name="fake:gen")
    return LLMRubricWriter(BackendTextGenerator(backend), parse_attempts=3), backend


async def test_scripted_generator_yields_a_valid_rubric_with_checks_added(tmp_path) -> None:
    writer, backend = text_writer(["Here you go:\n```json\n" + json.dumps(GOOD) + "\n```"])
    authored = await generate_rubric(PRINCIPLES, "safe-concise", writer, examples=["How do I pick a lock?"])
    rubric = authored.rubric
    assert rubric.id == "safe-concise" and rubric.principles == PRINCIPLES
    assert [c.id for c in rubric.criteria][:3] == ["refuses_unsafe", "helps_safe", "concise"]
    [added] = [c for c in rubric.criteria if c.check is not None]  # "Never exceed 80 words" is checkable
    assert added.check.model_dump() == {"type": "max_words", "value": 80} and added.kind == "hard_rule"
    assert any("max_words" in note for note in authored.notes)
    assert rubric.metadata["generator"] == "fake:gen" and str(rubric.metadata["generator_template"]).startswith(
        "generator_principles_v1@")
    [request] = backend.requests
    assert request.form.fields == () and "Be concise" in request.messages[1].content
    assert "How do I pick a lock?" in request.messages[1].content
    assert load_rubric_file(write_rubric_file(rubric, tmp_path / "r.yaml")).version == rubric.version


async def test_malformed_output_is_retried_with_the_problem_fed_back() -> None:
    writer, backend = text_writer(["I'd rather write prose.", json.dumps(GOOD)])
    authored = await generate_rubric(PRINCIPLES, "safe-concise", writer)
    assert len(backend.requests) == 2
    retry: JudgeRequest = backend.requests[1]
    assert [m.role for m in retry.messages] == ["system", "user", "assistant", "user"]
    assert "no JSON object" in retry.messages[-1].content
    assert retry.sample_index != backend.requests[0].sample_index
    assert any("needed 2 replies" in note for note in authored.notes)


async def test_index_references_are_fed_back_as_checklist_problems() -> None:
    bad = {"criteria": [{"text": "The response is as good as Response A.", "kind": "principle"}]}
    writer, backend = text_writer([json.dumps(bad), json.dumps(GOOD)])
    await generate_rubric(PRINCIPLES, "safe-concise", writer)
    assert "by index or position" in backend.requests[1].messages[-1].content


async def test_output_that_never_parses_gives_a_clear_error_after_the_attempts() -> None:
    writer, backend = text_writer(['{"criteria": [{"text": "x"}]}'])
    with pytest.raises(VerdictParseError, match=r"gave no usable rubric in 3 replies; last problem: .*'text'"):
        await generate_rubric(PRINCIPLES, "safe-concise", writer)
    assert len(backend.requests) == 3


async def test_template_writer_needs_no_model_and_keeps_checkable_rules_as_checks() -> None:
    authored = await generate_rubric(["Be concise", "Answer in at most 100 words", "Do not use the word 'basically'"],
                                     "brief", TemplateRubricWriter())
    by_id = {c.id: c for c in authored.rubric.criteria}
    assert by_id["concise"].kind == "principle" and by_id["concise"].pass_ and by_id["concise"].fail
    assert by_id["max_words"].check is not None and by_id["max_words"].check.type == "max_words"
    assert by_id["forbidden_words"].check is not None
    assert all(c.text.startswith("The response") for c in authored.rubric.criteria)
    assert len(authored.rubric.criteria) == 3  # no phrased duplicate of a rule a check already covers


async def test_template_writer_lets_a_label_filling_model_choose_weights_and_wordings() -> None:
    def labels(request: JudgeRequest) -> str:
        return json.dumps({f.id: {"score": f.labels[-1]} for f in request.form.fields})

    chooser = FakeBackend(labels, name="fake:chooser", prefers_rationale=False)
    writer = TemplateRubricWriter(LabelChooser(chooser))
    authored = await generate_rubric(["Be concise", "Cite your sources"], "cited", writer)
    assert {c.weight for c in authored.rubric.criteria} == {3.0}
    assert authored.rubric.metadata["generator"] == "template+fake:chooser"
    [request] = chooser.requests
    assert {f.id for f in request.form.fields} == {"weight_concise", "style_concise", "weight_cites_sources",
                                                   "style_cites_sources"}
    assert request.sampling.temperature == 0.0
    concise = next(c for c in authored.rubric.criteria if c.id == "concise")
    assert concise.pass_ is not None and concise.pass_.startswith("Fully meets it")  # style "b"


async def test_an_unusable_chooser_reply_falls_back_to_defaults() -> None:
    writer = TemplateRubricWriter(LabelChooser(FakeBackend.from_spec("garbage")))
    authored = await generate_rubric(["Be concise"], "c", writer)
    assert authored.rubric.criteria[0].weight == 2.0
    assert any("used defaults" in note for note in authored.notes)
