from __future__ import annotations

from pathlib import Path

import pytest

from rubricgate.errors import UsageError
from rubricgate.library.resources import shipped_dir
from rubricgate.library.rubric_files import iter_rubric_files, load_rubric_file, parse_rubric, resolve_rubric

BASE = {
    "id": "demo",
    "description": "A demo rubric.",
    "criteria": [
        {"id": "answers", "kind": "hard_rule", "text": "The response answers the question.", "pass": "Answers.",
         "fail": "Dodges."},
        {"id": "short", "kind": "hard_rule", "text": "The response is short.", "check": {"type": "max_words", "value": 5}},
        {"id": "clear", "kind": "principle", "text": "The response is clear.", "weight": 2},
    ],
}


def test_version_is_a_content_hash_that_ignores_metadata() -> None:
    rubric = parse_rubric(BASE)
    same = parse_rubric({**BASE, "metadata": {"author": "someone"}})
    edited = parse_rubric({**BASE, "criteria": [{**BASE["criteria"][0], "text": "The response answers it."},
                                                *BASE["criteria"][1:]]})
    assert rubric.version == same.version
    assert rubric.version != edited.version
    assert rubric.ref == f"demo@{rubric.version}" and len(rubric.version) == 12


def test_judged_criteria_exclude_deterministic_checks() -> None:
    assert [c.id for c in parse_rubric(BASE).judged_criteria] == ["answers", "clear"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"criteria": []}, "criteria: List should have at least 1 item"),
        ({"colour": "red"}, "colour: unknown field"),
        ({"id": "Bad Id"}, "id: String should match pattern"),
        ({"criteria": [{**BASE["criteria"][1], "check": {"type": "max_words", "value": "many"}}]},
         "criteria[0](short).check.value: Input should be a valid integer"),
        ({"criteria": [{**BASE["criteria"][1], "check": {"type": "max_wrods", "value": 3}}]},
         "criteria[0](short).check"),
        ({"criteria": [{**BASE["criteria"][2], "check": {"type": "max_words", "value": 3}}]},
         "only a hard_rule may carry a deterministic `check`"),
        ({"criteria": [BASE["criteria"][0], BASE["criteria"][0]]}, "criterion id 'answers' appears twice"),
        ({"criteria": [{"id": "x", "kind": "rule", "text": "The response x."}]}, "criteria[0](x).kind"),
    ],
)
def test_invalid_rubrics_name_the_field_and_the_expectation(change: dict, expected: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_rubric({**BASE, **change}, "my.yaml")
    assert str(caught.value).startswith("my.yaml: invalid rubric: ")
    assert expected in str(caught.value)


def test_yaml_syntax_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("id: x\ncriteria: [\n")
    with pytest.raises(UsageError, match=r"broken.yaml: not valid YAML"):
        load_rubric_file(path)


def test_every_shipped_rubric_loads_and_has_hard_rules_and_principles() -> None:
    files = list(iter_rubric_files())
    ids = {p.stem for p in files}
    assert {"helpfulness", "harmlessness", "instruction-following", "factual-qa", "concise-writing",
            "code-answer"} <= ids
    for path in files:
        rubric = load_rubric_file(path)
        assert rubric.id == path.stem
        kinds = {c.kind for c in rubric.criteria}
        assert kinds == {"hard_rule", "principle"}, path
        assert all(c.text.startswith("The response") for c in rubric.criteria), path


def test_user_dirs_shadow_the_shipped_library_and_unknown_names_list_choices(tmp_path: Path) -> None:
    (tmp_path / "helpfulness.json").write_text(
        '{"id": "helpfulness", "criteria": [{"id": "a", "kind": "principle", "text": "The response is good."}]}')
    assert len(resolve_rubric("helpfulness", [tmp_path]).criteria) == 1
    assert len(resolve_rubric("helpfulness").criteria) > 1
    with pytest.raises(UsageError, match="unknown rubric 'nope'.*helpfulness"):
        resolve_rubric("nope")


def test_shipped_folders_are_found() -> None:
    assert (shipped_dir("prompts") / "judge_v1.md").is_file()
    assert (shipped_dir("rubrics") / "helpfulness.yaml").is_file()
