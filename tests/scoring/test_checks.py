"""Deterministic checks: constructed positives/negatives, and IFEval cases with known outcomes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from rubricgate.errors import UsageError
from rubricgate.models.rubric import Check
from rubricgate.scoring.checks import run_check

DATA = Path(__file__).resolve().parents[1] / "data" / "ifeval_sample.jsonl"
CHECK = TypeAdapter(Check)


def passes(spec: dict[str, Any], response: str) -> bool:
    return run_check(CHECK.validate_python(spec), response)[0]


@pytest.mark.parametrize(
    ("spec", "good", "bad"),
    [
        ({"type": "max_words", "value": 3}, "one two three", "one two three four"),
        ({"type": "min_words", "value": 3}, "one two three", "one two"),
        ({"type": "max_chars", "value": 5}, "abcde", "abcdef"),
        ({"type": "max_sentences", "value": 1}, "One sentence.", "One. Two."),
        ({"type": "min_sentences", "value": 2}, "One. Two!", "Only one."),
        ({"type": "paragraphs", "min": 2, "max": 2}, "a\n\nb", "a\n\nb\n\nc"),
        ({"type": "paragraphs", "min": 3, "separator": "***"}, "a *** b *** c", "a *** b"),
        ({"type": "regex", "value": r"\d{4}"}, "in 1999", "in the nineties"),
        ({"type": "not_regex", "value": "(?i)as an ai"}, "Sure.", "As an AI, I cannot."),
        ({"type": "contains_all", "value": ["apple", "pear"]}, "Apple and pear.", "Apple only."),
        ({"type": "contains_none", "value": ["sorry"]}, "Here it is.", "Sorry, no."),
        ({"type": "starts_with", "value": "Dear"}, "  Dear Sam,", "Hi Sam,"),
        ({"type": "ends_with", "value": "Is there anything else I can help with?"},
         "Done. Is there anything else I can help with?", "Done."),
        ({"type": "case", "value": "lower"}, "all lower here.", "Not all lower."),
        ({"type": "case", "value": "upper"}, "ALL CAPS!", "Mixed Caps"),
        ({"type": "language", "value": "de"}, "Das ist ein kurzer deutscher Satz über das Wetter heute.",
         "This is a short English sentence about the weather today."),
        ({"type": "json"}, '```json\n{"a": 1}\n```', "{a: 1}"),
        ({"type": "json_schema", "value": {"type": "object", "required": ["name"],
                                           "properties": {"name": {"type": "string"}}}},
         '{"name": "x"}', '{"name": 3}'),
        ({"type": "required_sections", "value": ["Summary", "Risks"]}, "# Summary\n...\n## Risks\n...",
         "# Summary\n..."),
        ({"type": "code_block", "value": "python"}, "```python\nx = 1\n```", "```js\nx = 1\n```"),
        ({"type": "no_placeholders"}, "Dear Ms. Lee,", "Dear [Name],"),
        ({"type": "ifeval", "instruction": "punctuation:no_comma"}, "No commas here.", "One, two."),
        ({"type": "ifeval", "instruction": "length_constraints:number_sentences",
          "kwargs": {"relation": "less than", "num_sentences": 3}}, "One. Two.", "One. Two. Three."),
        ({"type": "ifeval", "instruction": "change_case:capital_word_frequency",
          "kwargs": {"relation": "at least", "capital_frequency": 2}}, "THIS is VERY loud.", "This is Quiet."),
        ({"type": "ifeval", "instruction": "combination:repeat_prompt",
          "kwargs": {"prompt_to_repeat": "Say hi."}, "prompt": "Say hi."}, "Say hi. Hi!", "Hi!"),
    ],
)
def test_each_check_passes_its_positive_and_fails_its_negative(spec: dict[str, Any], good: str, bad: str) -> None:
    assert passes(spec, good), run_check(CHECK.validate_python(spec), good)
    assert not passes(spec, bad), run_check(CHECK.validate_python(spec), bad)


def ifeval_rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in DATA.read_text().splitlines()]


@pytest.mark.parametrize("row", ifeval_rows(), ids=lambda row: str(row["key"]))
def test_ifeval_checks_agree_with_the_reference_verdicts_on_gpt4_responses(row: dict[str, Any]) -> None:
    got = [passes({"type": "ifeval", "instruction": instruction, "kwargs": kwargs, "prompt": row["prompt"]},
                  row["response"])
           for instruction, kwargs in zip(row["instruction_id_list"], row["kwargs"], strict=True)]
    assert got == row["expected_strict"]


def test_sample_covers_most_ifeval_kinds() -> None:
    kinds = {k for row in ifeval_rows() for k in row["instruction_id_list"]}
    assert len(kinds) >= 23


def test_unknown_ifeval_instruction_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown ifeval instruction"):
        passes({"type": "ifeval", "instruction": "made_up:thing"}, "text")


@pytest.mark.parametrize(
    ("instruction", "kwargs", "good", "bad"),
    [
        ("count:word_count_range", {"min_words": 3, "max_words": 5}, "one two three four", "one two"),
        ("format:no_whitespace", {}, "nowhitespace", "has whitespace"),
    ],
)
def test_ifbench_instructions_work_offline(instruction: str, kwargs: dict[str, Any], good: str, bad: str) -> None:
    spec = {"type": "ifeval", "benchmark": "ifbench", "instruction": instruction, "kwargs": kwargs}
    assert passes(spec, good) and not passes(spec, bad)


def test_ifbench_instructions_needing_nltk_data_say_so() -> None:
    with pytest.raises(UsageError, match="NLTK data"):
        passes({"type": "ifeval", "benchmark": "ifbench", "instruction": "ratio:stop_words",
                "kwargs": {"percentage": 50}}, "text")
