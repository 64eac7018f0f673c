"""`rubricgate rubric new | contrast | diff` through the CLI, with a real scripted OpenAI-compatible server."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rubricgate.interfaces.cli import app
from rubricgate.library.rubric_files import load_rubric_file, resolve_rubric, write_rubric_file
from rubricgate.models.rubric import Rubric
from tests.support.openai_server import ChatCall, ScriptedJudgeServer

runner = CliRunner()
PAIRS = [
    {"id": "mars-1", "prompt": "What colour is Mars?", "chosen": "Red, from iron oxide.", "rejected": "Red, from copper."},
    {"id": "tea-2", "prompt": "Describe tea in at most 6 words.", "chosen": "A calming, fragrant hot drink.",
     "rejected": "Tea is a hot drink made by steeping leaves in water for a few minutes."},
]
CHOSEN = {p["chosen"] for p in PAIRS}
INSTANCE = {"description": "Instance rubric.", "criteria": [
    {"id": "answers", "kind": "hard_rule", "text": "The response answers exactly what was asked.", "weight": 3},
    {"id": "correct", "kind": "principle", "text": "The response is factually correct.", "weight": 2}]}


def script(call: ChatCall) -> str:
    """`gen-model` writes rubrics (in prose and a fence); `judge-model` prefers the chosen output."""
    if call.model == "gen-model":
        if "merge instance-specific grading rubrics" in call.prompt_text:
            return json.dumps({"description": "General.", "criteria": INSTANCE["criteria"]})
        return "Here is the rubric.\n```json\n" + json.dumps(INSTANCE) + "\n```"
    fields = call.body["response_format"]["json_schema"]["schema"]["required"]
    a = re.search(r"<output-a-(\w+)>\n(.*?)\n</output-a-\1>", call.last_user_text, re.DOTALL)
    label = "a" if a and a.group(2) in CHOSEN else "b"
    return json.dumps({f: {"rationale": "r", "score": label} for f in fields})


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedJudgeServer]:
    with ScriptedJudgeServer(script) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh(server: ScriptedJudgeServer) -> None:
    server.reset()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_new_with_the_template_writer_writes_a_valid_rubric_and_explains_it(tmp_path: Path) -> None:
    out = tmp_path / "safe-concise.yaml"
    code, stdout, err = run("rubric", "new", "--principle", "Refuse clearly unsafe requests, but help with safe ones",
                            "--principle", "Be concise", "--principle", "Answer in at most 120 words",
                            "--name", "safe-concise", "--generator", "template", "--out", str(out))
    assert code == 0, err
    rubric = load_rubric_file(out)
    assert rubric.id == "safe-concise" and len(rubric.criteria) == 3
    assert any(c.check is not None and c.check.type == "max_words" for c in rubric.criteria)
    flat = " ".join(stdout.split())
    assert f"wrote {out}" in flat and rubric.ref in flat and "1 with deterministic checks" in flat
    code, _, err = run("rubric", "new", "-p", "Be kind", "--name", "safe-concise", "--generator", "template",
                       "--out", str(out))
    assert code == 2 and "exists; pass --force" in err


def test_new_with_a_remote_generator_sends_free_text_requests(server: ScriptedJudgeServer, tmp_path: Path) -> None:
    examples = tmp_path / "examples.jsonl"
    examples.write_text('{"prompt": "How do I boil an egg?"}\nWhy is the sky blue?\n')
    code, stdout, err = run("rubric", "new", "-p", "Be concise", "--name", "egg", "--examples", str(examples),
                            "--generator", "openai:gen-model", "--generator-base-url", server.base_url,
                            "--out", str(tmp_path), "--json")
    assert code == 0, err
    rubric = load_rubric_file(tmp_path / "egg.yaml")
    assert json.loads(stdout)["id"] == "egg" and rubric.metadata["generator"] == "openai:gen-model"
    [call] = server.calls
    assert "response_format" not in call.body and "Why is the sky blue?" in call.last_user_text


def test_contrast_keeps_filtered_rubrics_distills_and_reruns_from_the_cache(server: ScriptedJudgeServer,
                                                                            tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    out = tmp_path / "generated"
    args = ["rubric", "contrast", str(pairs), "--out", str(out), "--generator", "openai:gen-model",
            "--generator-base-url", server.base_url, "--judge", "openai:judge-model", "--judge-base-url",
            server.base_url, "--cache", str(tmp_path / "cache.db"), "--distill", "general", "--json"]
    code, stdout, err = run(*args)
    assert code == 0, err
    report = json.loads(stdout)
    assert report["kept"] == 2 and report["rejected"] == 0 and report["distilled"].startswith("general@")
    for item in PAIRS:
        rubric = load_rubric_file(out / f"{item['id']}.yaml")
        assert rubric.metadata["filter_accuracy"] == 1.0 and rubric.metadata["filter_judge"] == "openai:judge-model"
    general = load_rubric_file(out / "general.yaml")
    assert general.metadata["distilled_from"] == 2 and general.metadata["mean_filter_accuracy"] == 1.0
    judge_calls = [c for c in server.calls if c.model == "judge-model"]
    assert len(judge_calls) == 4  # two pairs, both presentation orders, one vote
    assert "kept 2" not in err and "2 prompts" in " ".join(err.split())

    server.reset()
    code, _, err = run(*args, "--force")
    assert code == 0, err
    assert not [c for c in server.calls if c.model == "judge-model"]  # the filter re-ran from the cache


def test_contrast_rejects_after_tries_and_writes_the_drafts_aside(server: ScriptedJudgeServer, tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps(PAIRS[0]) + "\n")
    out = tmp_path / "generated"
    code, stdout, err = run("rubric", "contrast", str(pairs), "--out", str(out), "--generator", "template",
                            "--judge", "fake:best", "--cache", "none", "--tries", "2")
    assert code == 0, err
    flat = " ".join(stdout.split())
    assert "rejected mars-1: try 2/2" in flat and "flips with presentation order" in flat and "hint:" in flat
    rubric = load_rubric_file(out / "rejected" / "mars-1.yaml")
    assert rubric.metadata["filter_kept"] is False and not (out / "mars-1.yaml").exists()
    code, _, err = run("rubric", "contrast", str(pairs), "--out", str(out), "--generator", "template",
                       "--judge", "fake:best", "--cache", "none")
    assert code == 2 and "exists; pass --force" in err  # refused before any judging


def test_contrast_input_errors_are_usage_errors(tmp_path: Path) -> None:
    ranked = tmp_path / "ranked.jsonl"
    ranked.write_text(json.dumps({"prompt": "p", "responses": ["a", "b", "c"]}) + "\n")
    code, _, err = run("rubric", "contrast", str(ranked), "--out", str(tmp_path / "o"), "--generator", "template",
                       "--judge", "fake:best")
    assert code == 2 and "needs --listwise" in err
    code, _, err = run("rubric", "contrast", str(tmp_path / "missing.jsonl"), "--judge", "fake:best")
    assert code == 2 and "does not exist" in err


def test_listwise_lines_and_grouped_pairs_are_ranked_prompts(tmp_path: Path) -> None:
    from rubricgate.interfaces.cli.authoring import read_ranked_prompts

    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in [
        {"id": "r", "prompt": "q", "responses": ["x", "y", "z"], "scores": [1, 3, 2]},
        {"id": "a", "prompt": "same", "chosen": "c1", "rejected": "r1"},
        {"id": "b", "prompt": "same", "chosen": "c2", "rejected": "r1"},
    ]))
    ranked, grouped = read_ranked_prompts(path, listwise=True)
    assert ranked.ranks == (2, 0, 1) and len(ranked.induced_pairs) == 3
    assert grouped.responses == ("c1", "r1", "c2") and grouped.ranks == (0, 1, 0)
    assert sorted(grouped.induced_pairs) == [(0, 1), (2, 1)]


def test_diff_names_added_removed_and_changed_criteria(tmp_path: Path) -> None:
    base = resolve_rubric("helpfulness")
    data = base.model_dump(by_alias=True)
    data["criteria"] = [c for c in data["criteria"] if c["id"] != "clarity"]
    data["criteria"][0]["weight"] = 5.0
    data["criteria"].append({"id": "brevity", "kind": "hard_rule", "text": "The response is at most 100 words.",
                             "check": {"type": "max_words", "value": 100}})
    changed = write_rubric_file(Rubric.model_validate(data), tmp_path / "mine.yaml")
    code, stdout, err = run("rubric", "diff", "helpfulness", str(changed))
    assert code == 0, err
    flat = " ".join(stdout.split())
    assert "different versions" in flat and "+ brevity" in flat and "- clarity" in flat
    assert "~ addresses_request weight: '3' -> '5'" in flat
    code, stdout, _ = run("rubric", "diff", "helpfulness", "helpfulness", "--json")
    assert code == 0 and json.loads(stdout)["same_version"] is True
