"""The CLI through typer's CliRunner: exit codes, one-line errors, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rubricgate.interfaces.cli import app

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def score_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["score", "--judge", "fake:best", "--cache", str(tmp_path / "c.db"), *extra]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda t: ["--rubric", "helpfulness", "--input", str(t / "missing.jsonl")], "missing.jsonl does not exist"),
        (lambda t: ["--rubric", "helpfulness", "--input", str(write(t / "bad.jsonl", '{"prompt": "a", "response": "b"}\n{oops\n'))],
         "bad.jsonl:2: not valid JSON"),
        (lambda t: ["--rubric", "helpfulness", "--input", str(write(t / "nofield.jsonl", '{"prompt": "a"}\n'))],
         "nofield.jsonl:1: response: required field is missing"),
        (lambda t: ["--rubric", "no-such-rubric", "--prompt", "a", "--response", "b"], "unknown rubric 'no-such-rubric'"),
        (lambda t: ["--rubric", str(write(t / "r.yaml", "id: r\ncriteria:\n  - {id: a, kind: rule, text: The response a.}\n")),
                    "--prompt", "a", "--response", "b"], "r.yaml: invalid rubric: criteria[0](a).kind"),
        (lambda t: ["--rubric", "helpfulness"], "nothing to score"),
        (lambda t: ["--rubric", "helpfulness", "--input", str(write(t / "empty.jsonl", "\n"))], "has no items"),
    ],
)
def test_bad_input_gives_one_clear_line_and_exit_2(tmp_path: Path, make_args, message: str) -> None:
    code, _, err = run(*score_args(tmp_path), *make_args(tmp_path))
    assert code == 2, err
    assert message in " ".join(err.split())
    assert "Traceback" not in err


def test_unknown_judge_kind_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = run("score", "--judge", "nonsense", "--rubric", "helpfulness", "--prompt", "a", "--response", "b",
                       "--cache", "none")
    assert code == 2 and "bad judge 'nonsense'" in err and "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    code, _, err = run("--debug", *score_args(tmp_path), "--rubric", "nope", "--prompt", "a", "--response", "b")
    assert code == 2 and "Traceback" in err


def test_scores_a_file_and_writes_jsonl(tmp_path: Path) -> None:
    out = tmp_path / "scored.jsonl"
    code, _, err = run(*score_args(tmp_path), "--rubric", "helpfulness", "--input", str(EXAMPLES / "chat.jsonl"),
                       "--output", str(out))
    assert code == 0, err
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    inputs = [json.loads(line) for line in (EXAMPLES / "chat.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == [str(i["id"]) for i in inputs]
    for line in lines:
        assert set(line) >= {"reward", "criteria", "agreement", "flags", "cached", "rubric", "judge", "tokens",
                             "latency_ms"}
        assert line["rubric"].startswith("helpfulness@") and line["judge"] == "fake:best"
    assert "judge calls" in err and "mean reward" in err


def test_json_mode_prints_results_on_stdout_and_tables_on_stderr(tmp_path: Path) -> None:
    code, out, err = run(*score_args(tmp_path), "--rubric", "helpfulness", "--prompt", "What is 2+2?",
                         "--response", "4", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["reward"] == 1.0 and result["votes"] == 3
    assert "summary" in err


def test_rerun_is_all_cache_hits(tmp_path: Path) -> None:
    args = [*score_args(tmp_path), "--rubric", "helpfulness", "--input", str(EXAMPLES / "chat.jsonl"), "--json"]
    _, first, _ = run(*args)
    code, second, _ = run(*args)
    assert code == 0
    assert all(r["cached"] and r["judge_calls"] == 0 for r in json.loads(second))
    assert [r["reward"] for r in json.loads(first)] == [r["reward"] for r in json.loads(second)]


def test_unscorable_items_exit_1_after_writing_everything(tmp_path: Path) -> None:
    out = tmp_path / "scored.jsonl"
    code, _, err = run("score", "--judge", "fake:garbage", "--cache", "none", "--rubric", "helpfulness",
                       "--input", str(EXAMPLES / "chat.jsonl"), "--output", str(out))
    assert code == 1
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 6 and all(line["reward"] is None and line["reason"] for line in lines)
    assert "unscorable" in err


def test_cache_stats_export_clear(tmp_path: Path) -> None:
    run(*score_args(tmp_path), "--rubric", "helpfulness", "--prompt", "q", "--response", "r", "--votes", "2")
    cache = str(tmp_path / "c.db")
    code, out, _ = run("cache", "stats", "--cache", cache, "--json")
    assert code == 0 and json.loads(out)["judgments"] == 2
    code, out, _ = run("cache", "export", "--cache", cache)
    assert code == 0 and len(out.splitlines()) == 2 and json.loads(out.splitlines()[0])["judge"] == "fake:best"
    code, _, err = run("cache", "clear", "--cache", cache, "--yes")
    assert code == 0 and "removed 2" in err


def test_rubric_commands(tmp_path: Path) -> None:
    code, out, _ = run("rubric", "list")
    assert code == 0 and "helpfulness" in out and "code-answer" in out
    code, out, _ = run("rubric", "show", "concise-writing")
    assert code == 0 and out.startswith("# concise-writing@") and "max_words" in out
    bad = write(tmp_path / "bad.yaml", "id: bad\ncriteria: []\n")
    code, _, err = run("rubric", "validate", str(bad))
    assert code == 2 and "criteria: List should have at least 1 item" in err


def test_judges_check_reports_validity_and_ranking() -> None:
    code, out, _ = run("judges", "check", "fake:alternate")
    assert code == 0 and "valid verdicts" in out
    code, out, err = run("judges", "check", "fake:garbage")
    assert code == 1 and "could not score" in err


def test_several_rubrics_combine_as_a_conjunction(tmp_path: Path) -> None:
    code, out, err = run("score", "--judge", "fake:best", "--cache", "none", "--rubric", "concise-writing",
                         "--rubric", "factual-qa", "--combine", "and", "--prompt", "Capital of France?",
                         "--response", "Paris.", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert set(result["components"]) == {"rubric:concise-writing", "rubric:factual-qa"}
    assert result["rubric"].startswith("concise-writing@") and "+factual-qa@" in result["rubric"]
    code, _, err = run("score", "--judge", "fake:best", "--cache", "none", "--rubric", "factual-qa",
                       "--combine", "or", "--prompt", "q", "--response", "r")
    assert code == 2 and "--combine must be" in err
