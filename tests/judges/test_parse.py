from __future__ import annotations

import pytest

from rubricgate.errors import VerdictParseError
from rubricgate.judges.parse import is_complete, parse_verdict
from rubricgate.models.judging import FormField, JudgeReply, VerdictForm

FORM = VerdictForm(fields=(FormField(id="answers", labels=("fail", "pass")),
                           FormField(id="clear", labels=("1", "2", "3", "4", "5"))))


def reply(text: str) -> JudgeReply:
    return JudgeReply(text=text, backend="fake:test")


@pytest.mark.parametrize(
    ("text", "answers", "clear"),
    [
        ('{"answers": {"rationale": "ok", "score": "pass"}, "clear": {"rationale": "ok", "score": "4"}}', "pass", "4"),
        ('Sure!\n```json\n{"answers": {"score": "FAIL"}, "clear": {"score": 2}}\n```', "fail", "2"),
        ('{"answers": {"verdict": "yes"}, "clear": {"score": 5.0}} trailing words', "pass", "5"),
        ('{"answers": "pass", "clear": "3"}', "pass", "3"),
        ('{"answers": {"score": true}, "clear": {"score": "1"}}', "pass", "1"),
    ],
)
def test_tolerant_parsing(text: str, answers: str, clear: str) -> None:
    verdict = parse_verdict(reply(text), FORM)
    assert verdict.fields["answers"].label == answers
    assert verdict.fields["clear"].label == clear
    assert is_complete(verdict, FORM)


def test_out_of_range_labels_leave_the_field_out() -> None:
    verdict = parse_verdict(reply('{"answers": {"score": "pass"}, "clear": {"score": "9"}}'), FORM)
    assert set(verdict.fields) == {"answers"}
    assert not is_complete(verdict, FORM)


@pytest.mark.parametrize("text", ["I think it is fine.", '{"unrelated": 1}', "", '{"answers": {"score": "maybe"}}'])
def test_replies_without_any_usable_score_raise(text: str) -> None:
    with pytest.raises(VerdictParseError):
        parse_verdict(reply(text), FORM)


def test_json_schema_uses_enums_and_requires_every_field() -> None:
    schema = FORM.json_schema()
    assert schema["required"] == ["answers", "clear"]
    assert schema["properties"]["clear"]["properties"]["score"]["enum"] == ["1", "2", "3", "4", "5"]
    assert schema["properties"]["answers"]["required"] == ["rationale", "score"]
