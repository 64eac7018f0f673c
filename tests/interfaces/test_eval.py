"""`rubricgate eval` through typer's CliRunner: scripted fake judges and a real local judge server."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rubricgate.interfaces.cli import app
from rubricgate.interfaces.evaluation import compare_variants, presentation_order, read_pairs, select_pairs
from tests.support.openai_server import ChatCall, Reply, ScriptedJudgeServer

runner = CliRunner()
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "llmbar_sample.jsonl"


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["eval", *args])
    return result.exit_code, result.stdout, result.stderr


def report(*args: str, code: int = 0) -> dict[str, Any]:
    exit_code, out, err = run(*args, "--json")
    assert exit_code == code, err
    return json.loads(out)


def marked_pairs(path: Path, n: int = 6) -> Path:
    """Pairs whose chosen response says GOOD and whose rejected one says BAD."""
    lines = [json.dumps({"id": f"p{i}", "prompt": f"Question {i}?", "chosen": f"GOOD answer {i}.",
                         "rejected": f"BAD answer {i}.", "category": "even" if i % 2 == 0 else "odd"})
             for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_json_report_shape_with_a_fake_judge(tmp_path: Path) -> None:
    data = report(str(SAMPLE), "--rubric", "helpfulness", "--judge", "fake:best", "--cache", str(tmp_path / "c.db"))
    assert set(data) == {"pairs_file", "judge", "rubric", "pairs", "seed", "confidence", "resamples", "variants",
                         "records"}
    assert data["judge"] == "fake:best" and data["pairs"] == 8 and data["rubric"].startswith("helpfulness@")
    [variant] = data["variants"]
    assert variant["variant"] == {"mode": "pointwise", "prompt": "rubric", "votes": 3, "scores": "expected"}
    # fake:best gives every response the top label: every pair is a tie, counted as 0.5.
    assert variant["accuracy"] == 0.5 and variant["tie_rate"] == 1.0 and variant["ci"] == [0.5, 0.5]
    assert variant["unscorable"] == 0 and variant["scored"] == 8
    assert variant["judge_calls"] == variant["judge_calls_run"] == 8 * 2 * 3
    assert variant["tokens"]["prompt"] > 0 and variant["wall_s"] >= 0
    assert variant["position_bias_rate"] is None and variant["agreement"] == 1.0
    assert set(variant["by_category"]) == {"natural", "adversarial", "mtbench-human"}
    assert variant["by_category"]["adversarial"]["pairs"] == 5
    record = data["records"][0]
    assert set(record) == {"id", "category", "chosen_first", "preferences"}
    assert record["preferences"] == {variant["name"]: 0.5}


def test_presentation_order_is_seeded_and_chosen_is_not_always_first(tmp_path: Path) -> None:
    args = (str(SAMPLE), "--rubric", "helpfulness", "--judge", "fake:best", "--cache", "none")
    first = [r["chosen_first"] for r in report(*args)["records"]]
    assert first == [r["chosen_first"] for r in report(*args)["records"]]
    assert sum(first) == 4  # exactly half of the 8 pairs show chosen first
    other_seeds = {tuple(r["chosen_first"] for r in report(*args, "--seed", str(s))["records"]) for s in range(1, 4)}
    assert len(other_seeds | {tuple(first)}) > 1
    for count in (2, 3, 7, 50):
        order = presentation_order(count, seed=0)
        assert 0 < sum(order) < count and order == presentation_order(count, seed=0)


def test_limit_takes_a_seeded_sample_in_file_order() -> None:
    pairs = read_pairs(SAMPLE)
    sample = select_pairs(pairs, 3, seed=0)
    assert sample == select_pairs(pairs, 3, seed=0) and len(sample) == 3
    assert [pairs.index(p) for p in sample] == sorted(pairs.index(p) for p in sample)
    assert select_pairs(pairs, None, seed=0) == pairs and select_pairs(pairs, 100, seed=0) == pairs


def test_unscorable_pairs_exit_1_and_still_report(tmp_path: Path) -> None:
    data = report(str(SAMPLE), "--rubric", "helpfulness", "--judge", "fake:garbage", "--cache", "none",
                  "--limit", "3", code=1)
    [variant] = data["variants"]
    assert variant["unscorable"] == 3 and variant["accuracy"] is None and variant["ci"] is None
    assert "VerdictParseError" in variant["unscorable_reason"]
    assert all(p is None for r in data["records"] for p in r["preferences"].values())


@pytest.mark.parametrize(("make_args", "message"), [
    (lambda t: [str(t / "missing.jsonl"), "--rubric", "helpfulness"], "missing.jsonl does not exist"),
    (lambda t: [str(SAMPLE)], "pass --rubric"),
    (lambda t: [str(SAMPLE), "--rubric", "helpfulness", "--mode", "sideways"], "--mode 'sideways': choose one of"),
    (lambda t: [str(SAMPLE), "--rubric", "helpfulness", "--scores", "vibes"], "--scores 'vibes'"),
    (lambda t: [str(SAMPLE), "--rubric", "no-such-rubric"], "unknown rubric 'no-such-rubric'"),
    (lambda t: [str(SAMPLE), "--rubric", "helpfulness", "--judge", "nonsense"], "bad judge 'nonsense'"),
    (lambda t: [_write(t / "bad.jsonl", '{"prompt": "p", "chosen": "a", "rejected": "b"}\n{oops\n'),
                "--rubric", "helpfulness"], "bad.jsonl:2: not valid JSON"),
    (lambda t: [_write(t / "nofield.jsonl", '{"prompt": "p", "chosen": "a"}\n'), "--rubric", "helpfulness"],
     "nofield.jsonl:1: rejected"),
    (lambda t: [_write(t / "empty.jsonl", "\n"), "--rubric", "helpfulness"], "has no pairs"),
])
def test_usage_errors_exit_2_with_one_line(tmp_path: Path, make_args: Any, message: str) -> None:
    args = make_args(tmp_path)
    code, _, err = run(*args, *([] if "--judge" in args else ["--judge", "fake:best"]), "--cache", "none")
    assert code == 2, err
    assert message in " ".join(err.split())
    assert "Traceback" not in err


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_compare_shares_votes_between_variants_even_without_a_cache(tmp_path: Path) -> None:
    data = report(str(SAMPLE), "--rubric", "helpfulness", "--judge", "fake:alternate", "--cache", "none",
                  "--compare", "--limit", "4")
    names = [v["name"] for v in data["variants"]]
    assert names == [v.name for v in compare_variants(3)]
    by_name = {v["name"]: v for v in data["variants"]}
    for v in data["variants"]:
        fresh = v["variant"]["votes"] == 3 and v["variant"]["scores"] == "sampled"
        assert v["judge_calls_run"] == (4 * 2 * 3 if fresh else 0), v["name"]
        assert v["judge_calls"] == 4 * 2 * v["variant"]["votes"]
    # fake:alternate votes best, worst, best: the majority is the top label everywhere.
    assert by_name["pointwise · rubric · 3 votes · sampled"]["agreement"] == pytest.approx(2 / 3)
    assert by_name["pairwise · rubric · 3 votes · sampled"]["position_bias_rate"] == 1.0
    assert by_name["pairwise · rubric · 3 votes · sampled"]["first_position_rate"] == 0.0
    assert all(set(r["preferences"]) == set(names) for r in data["records"])


def test_tables_on_stdout_without_json(tmp_path: Path) -> None:
    code, out, err = run(str(SAMPLE), "--rubric", "helpfulness", "--judge", "fake:best", "--cache", "none",
                         "--mode", "pairwise", "--votes", "1")
    assert code == 0, err
    assert "eval: 8 pairs" in out and "accuracy by category" in out and "judge calls" in out
    assert "pairwise rubric 1v" in out


# ------------------------------------------------------------------ a real local judge server


def _fields(call: ChatCall) -> dict[str, list[str]]:
    schema = call.body["response_format"]["json_schema"]["schema"]
    return {name: spec["properties"]["score"]["enum"] for name, spec in schema["properties"].items()}


def _pointwise_or_pairwise(call: ChatCall, pairwise_pick: str) -> Reply:
    fields = _fields(call)
    text = call.last_user_text
    if "## Output (a)" in text:
        output_a = text.split("## Output (a)")[1].split("## Output (b)")[0]
        label = pairwise_pick if pairwise_pick != "content" else ("a" if "GOOD" in output_a else "b")
        return Reply.json({name: {"rationale": "compared", "score": label} for name in fields})
    good = "GOOD" in text
    return Reply.json({name: {"rationale": "graded", "score": labels[-1] if good else labels[0]}
                       for name, labels in fields.items()})


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedJudgeServer]:
    with ScriptedJudgeServer(latency_s=0.001) as running:
        yield running


def server_args(server: ScriptedJudgeServer, pairs: Path, *extra: str) -> list[str]:
    return [str(pairs), "--rubric", "helpfulness", "--judge", "openai:judge-model", "--judge-base-url",
            server.base_url, "--cache", "none", *extra]


def test_a_judge_that_reads_the_content_is_accurate_and_position_consistent(server: ScriptedJudgeServer,
                                                                              tmp_path: Path) -> None:
    server.reset()
    server.set_script(lambda call: _pointwise_or_pairwise(call, "content"))
    data = report(*server_args(server, marked_pairs(tmp_path / "p.jsonl"), "--compare", "--votes", "2"))
    for v in data["variants"]:
        assert v["accuracy"] == 1.0 and v["tie_rate"] == 0.0 and v["unscorable"] == 0, v["name"]
        if v["variant"]["mode"] == "pairwise":
            assert v["position_bias_rate"] == 0.0 and v["first_position_rate"] == 0.5
            assert v["accuracy_one_order"] == 1.0
    assert set(data["variants"][0]["by_category"]) == {"even", "odd"}
    pairwise_calls = [c for c in server.calls if "## Output (a)" in c.last_user_text]
    assert pairwise_calls and all(set(_fields(c)) == set(_fields(pairwise_calls[0])) for c in pairwise_calls)
    assert all(labels == ["a", "b"] for labels in _fields(pairwise_calls[0]).values())
    # Both orders of every pair were shown: chosen as (a) and as (b).
    shown_first = {bool(re.search(r"## Output \(a\)\n<output-a-\w+>\nGOOD", c.last_user_text)) for c in pairwise_calls}
    assert shown_first == {True, False}


def test_a_judge_that_always_picks_a_is_all_position_bias(server: ScriptedJudgeServer, tmp_path: Path) -> None:
    server.reset()
    server.set_script(lambda call: _pointwise_or_pairwise(call, "a"))
    data = report(*server_args(server, marked_pairs(tmp_path / "p.jsonl"), "--mode", "pairwise", "--votes", "1"))
    [v] = data["variants"]
    assert v["position_bias_rate"] == 1.0 and v["first_position_rate"] == 1.0
    assert v["accuracy"] == 0.5 and v["tie_rate"] == 1.0
    assert v["accuracy_one_order"] == 0.5  # right exactly when chosen happened to be shown first


def test_logprob_judge_gives_expected_scores(server: ScriptedJudgeServer, tmp_path: Path) -> None:
    server.reset()
    server.set_script(lambda call: _pointwise_or_pairwise(call, "content"))
    args = server_args(server, marked_pairs(tmp_path / "p.jsonl", n=4), "--mode", "pairwise", "--votes", "1")
    args[args.index("openai:judge-model")] = "openai:judge-model+logprobs"
    [v] = report(*args)["variants"]
    assert v["label_probs"] is True and v["accuracy"] == 1.0
    assert all(c.body.get("logprobs") for c in server.calls)


# ------------------------------------------------------------------ the real embedded judge


@pytest.mark.slow
async def test_embedded_judge_fills_the_pairwise_form_with_label_probabilities(model_dir: Path) -> None:
    from rubricgate.interfaces.evaluation import evaluate, main_variant
    from rubricgate.interfaces.gateway import Gateway, GatewayConfig
    from rubricgate.models.config import BackendConfig, ScoringConfig
    from rubricgate.models.preference import PreferencePair

    pairs = [PreferencePair(id="capital", prompt="What is the capital of France?", chosen="Paris.",
                            rejected="I like turtles."),
             PreferencePair(id="sum", prompt="What is 2 + 2?", chosen="4", rejected="2 + 2 is 5.")]
    config = GatewayConfig(judge="llamacpp:default", backend=BackendConfig(model_dir=model_dir),
                           scoring=ScoringConfig(votes=1), cache_url=None)
    async with Gateway.open(config) as gateway:
        result = await evaluate(gateway, pairs, gateway.rubric("instruction-following"),
                                [main_variant("pairwise", 1, "expected"), main_variant("pointwise", 1, "expected")])
    for variant in result.variants:
        assert variant.unscorable == 0 and variant.label_probs, variant.name
        assert variant.judge_calls_run == 4
    preferences = [p for r in result.records for p in r.preferences.values()]
    assert all(p is not None and 0.0 <= p <= 1.0 for p in preferences)
