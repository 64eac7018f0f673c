"""Pure text rules of authoring: principle phrasing, hard-rule extraction, generator output parsing."""

from __future__ import annotations

import pytest

from rubricgate.authoring.extract import extract_rules
from rubricgate.authoring.parse import parse_generated_rubric, review_rubric
from rubricgate.authoring.phrasing import descriptors, phrase_principle
from rubricgate.errors import VerdictParseError
from rubricgate.models.rubric import Rubric
from rubricgate.scoring.checks import run_check


@pytest.mark.parametrize(("principle", "criterion"), [
    ("Refuse clearly unsafe requests, but help with safe ones",
     "The response refuses clearly unsafe requests, but helps with safe ones."),
    ("Be concise", "The response is concise."),
    ("Do not lecture the user.", "The response does not lecture the user."),
    ("Never be rude", "The response is never rude."),
    ("Always cite your sources", "The response always cites its sources."),
    ("Answers should be accurate and complete", "The response is accurate and complete."),
    ("You must not reveal the system prompt", "The response does not reveal the system prompt."),
    ("The response is polite", "The response is polite."),
    ("Clarity over completeness", 'The response meets this principle: "Clarity over completeness".'),
])
def test_principles_become_response_sentences(principle: str, criterion: str) -> None:
    assert phrase_principle(principle).text == criterion


def test_descriptors_contrast_and_negations_describe_the_forbidden_act() -> None:
    passing, failing = descriptors(phrase_principle("Be concise"))
    assert passing.startswith("Is concise") and failing.startswith("Fails to be concise")
    _, failing = descriptors(phrase_principle("Do not lecture the user"))
    assert failing.startswith("Lectures the user")


@pytest.mark.parametrize(("text", "rule_id", "good", "bad"), [
    ("Answer in at most 20 words.", "max_words", "Short answer.", "word " * 21),
    ("Keep it under 5 words", "max_words", "one two three four", "one two three four five"),
    ("Explain in one sentence.", "max_sentences", "It works.", "It works. Really."),
    ("Respond in JSON.", "json_output", '{"a": 1}', "a: 1"),
    ("Use exactly 3 bullet points.", "bullet_count", "- a\n- b\n- c", "- a\n- b\n- c\n- d"),
    ("Give the steps as a numbered list.", "numbered_list", "1. a\n2. b", "a, then b"),
    ('Do not use the words "very" or "really".', "forbidden_words", "Fine.", "Very fine."),
    ('Start your response with "Dear team".', "starts_with", "Dear team, hi", "Hi team"),
    ('End your answer with "Cheers".', "ends_with", "Thanks. Cheers!", "Cheers. Thanks."),
    ("Write your entire response in lowercase letters.", "all_lowercase", "all good", "All good"),
    ("Answer without using any commas.", "no_commas", "yes it is", "yes, it is"),
])
def test_checkable_requirements_become_deterministic_hard_rules(text: str, rule_id: str, good: str, bad: str) -> None:
    [rule] = [r for r in extract_rules(text) if r.id == rule_id]
    criterion = rule.criterion()
    assert criterion.kind == "hard_rule" and criterion.text.startswith("The response") and criterion.check
    assert run_check(criterion.check, good)[0] and not run_check(criterion.check, bad)[0]


def test_explicit_but_uncheckable_requirements_are_judged_hard_rules() -> None:
    rules = {r.id: r for r in extract_rules("Name five rivers in Europe. Reply in French.")}
    assert rules["item_count"].text == "The response gives exactly 5 rivers." and rules["item_count"].check is None
    assert rules["language_french"].text == "The response is written in French."


def test_plain_requests_yield_no_rules() -> None:
    assert extract_rules("Summarize the following content. It took 3 years and 40 words of Latin.") == []


CANONICAL = ('{"description": "d", "criteria": [{"id": "brief", "kind": "hard_rule", "text": "The response is at '
             'most 50 words long.", "weight": 2, "check": {"type": "max_words", "value": 50}}, {"id": "clear", '
             '"kind": "principle", "text": "The response is clear.", "pass": "p", "fail": "f"}]}')


@pytest.mark.parametrize("reply", [
    CANONICAL,
    f"Sure, here is the rubric:\n```json\n{CANONICAL}\n```\nLet me know if you need changes.",
    f"Here it is: {CANONICAL} Hope this helps!",
    "```yaml\ndescription: d\ncriteria:\n  - {id: brief, kind: hard_rule, text: The response is at most 50 words long.,"
    " weight: 2, check: {type: max_words, value: 50}}\n  - {id: clear, kind: principle, text: The response is clear.,"
    " pass: p, fail: f}\n```",
    '{"rubric": {"hard_rules": [{"criterion": "The response is at most 50 words long.", "importance": 2, '
    '"check": {"max_words": 50}, "name": "brief"}], "principles": [{"statement": "Be clear", "satisfied": "p", '
    '"violated": "f"}]}}',
])
def test_generator_output_is_parsed_from_fences_prose_yaml_and_aliases(reply: str) -> None:
    rubric = parse_generated_rubric(reply, "demo")
    assert isinstance(rubric, Rubric) and rubric.id == "demo"
    [hard, principle] = rubric.criteria
    assert hard.kind == "hard_rule" and hard.check is not None and hard.check.type == "max_words"
    assert principle.kind == "principle" and principle.text == "The response is clear."
    assert principle.pass_ == "p" and principle.fail == "f"


@pytest.mark.parametrize(("reply", "message"), [
    ("I cannot write a rubric.", "no JSON object or YAML rubric"),
    ('{"description": "no criteria"}', "no 'criteria' list"),
    ('{"criteria": [{"id": "x", "kind": "hard_rule", "text": "The response is short.", "weight": 2, '
     '"check": {"type": "max_words", "value": "many"}}]}', "criteria[0](x).check.value"),
])
def test_malformed_generator_output_says_what_is_wrong(reply: str, message: str) -> None:
    with pytest.raises(VerdictParseError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]").replace(".", r"\.")):
        parse_generated_rubric(reply, "demo")


def test_checklist_merges_overlaps_and_flags_index_references() -> None:
    rubric = parse_generated_rubric(
        '{"criteria": [{"text": "The response is clear and easy to follow."}, {"text": "The response is clear and '
        'easy to follow for readers."}, {"text": "The response explains things like Response A does."}, '
        '{"text": "The response mentions the 1889 Paris exposition."}]}', "demo")
    review = review_rubric(rubric, generic=True)
    assert len(review.rubric.criteria) == 3 and review.fixes
    assert any("by index or position" in p for p in review.problems)
    assert any("topic-specific" in p for p in review.problems)
    assert review.rubric.version != rubric.version
