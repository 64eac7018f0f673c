"""`rubricgate refine`, `rubric history` and `rubric rollback` against a scripted judge and meta-judge
on a real local OpenAI-compatible server (the `openai:` fast path for both)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rubricgate.interfaces.cli import app
from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.library.rubric_files import load_rubric_file
from rubricgate.models.config import BackendConfig, ScoringConfig
from rubricgate.models.reward import Item, RewardResult
from rubricgate.models.rubric import Rubric
from tests.refine.support import BAD, JUDGE, META, PAIRS, RUBRIC, SAMPLES, Scripts, write_jsonl
from tests.support.openai_server import ScriptedJudgeServer

runner = CliRunner(env={"COLUMNS": "200"})  # tables on one line each
BASE = load_rubric_file(RUBRIC)
PADDED = Item(id="pad", prompt="How many legs does a spider have?",
              response=" ".join(["A spider has eight legs, and it is important to note that in conclusion"] * 6))


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedJudgeServer]:
    with ScriptedJudgeServer() as running:
        yield running


@pytest.fixture
def scripts(server: ScriptedJudgeServer) -> Iterator[Scripts]:
    script = Scripts()
    server.reset()
    server.set_script(script)
    yield script
    server.set_script(None)


def refine_args(server: ScriptedJudgeServer, cache: Path, *extra: str) -> list[str]:
    return ["refine", "--rubric", str(RUBRIC), "--samples", str(SAMPLES), "--pairs", str(PAIRS), "--judge", JUDGE,
            "--judge-base-url", server.base_url, "--meta-judge", META, "--meta-judge-base-url", server.base_url,
            "--votes", "1", "--cache", str(cache), *extra]


def flat(text: str) -> str:
    """Terminal output on one line, table borders removed."""
    return " ".join(text.replace("│", " ").replace("┃", " ").split())


def gateway(server: ScriptedJudgeServer, cache: Path) -> Gateway:
    return Gateway.open(GatewayConfig(judge=JUDGE, backend=BackendConfig(base_url=server.base_url),
                                      scoring=ScoringConfig(votes=1), cache_url=f"sqlite:///{cache}"))


def test_a_fix_for_padding_passes_the_gate_is_saved_and_served(server: ScriptedJudgeServer, scripts: Scripts,
                                                               tmp_path: Path) -> None:
    cache = tmp_path / "cache.db"
    result = runner.invoke(app, refine_args(server, cache))
    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    assert "exploit length_padding detailed s1, s3, s6 Padded answers" in out  # a finding with its evidence ids
    assert "+ no_padding (principle)" in out and "~ detailed" in out  # the diff
    assert "pair accuracy (6/6 pairs) 1.000 1.000 >= 0.980 yes" in out
    assert "probe length_padding-1 1.000 (+0.667) 0.600 (+0.000) <= +0.687 yes" in out  # shipped probe, margins
    assert "accepted thorough-answers@" in out and "saved as the current version" in out
    assert "evidence id 's99' is not in the sample; dropped" in out
    [call] = scripts.meta_calls
    assert "### Item s1: reward 1.000" in call.last_user_text and "exploit length_padding" in call.last_user_text

    async def served_and_scored() -> tuple[Rubric, RewardResult, RewardResult]:
        async with gateway(server, cache) as gw:
            [before] = await gw.score([PADDED], BASE)
            [after] = await gw.score([PADDED], str(RUBRIC))
            return gw.rubric(str(RUBRIC)), before, after

    served, before, after = asyncio.run(served_and_scored())
    assert served.version != BASE.version and [c.id for c in served.criteria] == ["detailed", "relevant", "no_padding"]
    assert after.rubric == served.ref and before.rubric == BASE.ref
    assert before.reward == 1.0 and after.reward is not None and after.reward < 0.7

    history = runner.invoke(app, ["rubric", "history", str(RUBRIC), "--cache", str(cache), "--json"])
    assert history.exit_code == 0, history.output
    events = json.loads(history.stdout)["versions"]
    assert [(e["event"], e["current"]) for e in events] == [("refined", True), ("baseline", False)]
    assert events[0]["reason"] == "Penalise padding; say that detail is not length."
    assert events[0]["details"]["gate"]["accuracy_after"] == 1.0 and events[0]["details"]["meta_judge"] == META
    table = runner.invoke(app, ["rubric", "history", str(RUBRIC), "--cache", str(cache)])
    assert "refined" in table.stdout and "acc 1.000->1.000" in flat(table.stdout)

    rollback = runner.invoke(app, ["rubric", "rollback", str(RUBRIC), BASE.version[:8], "--cache", str(cache),
                                   "--reason", "demo"])
    assert rollback.exit_code == 0, rollback.output
    assert f"now serves {BASE.version} (was {served.version})" in flat(rollback.stdout)
    gw = gateway(server, cache)
    assert gw.rubric(str(RUBRIC)) == BASE
    asyncio.run(gw.aclose())


def test_a_proposal_that_drops_labelled_accuracy_is_rejected_and_not_served(server: ScriptedJudgeServer,
                                                                            scripts: Scripts, tmp_path: Path) -> None:
    scripts.meta_replies = [json.dumps(BAD)]
    cache = tmp_path / "cache.db"
    result = runner.invoke(app, refine_args(server, cache))
    assert result.exit_code == 1, result.output
    out = flat(result.stdout)
    assert "pair accuracy (6/6 pairs) 1.000 0.000 >= 0.980 no" in out
    assert "not accepted: rejected by the gate: labelled-pair accuracy drops from 1.000 to 0.000" in out
    history = json.loads(runner.invoke(app, ["rubric", "history", "thorough-answers", "--rubric-dir",
                                             str(RUBRIC.parent), "--cache", str(cache), "--json"]).stdout)
    assert [(e["event"], e["current"]) for e in history["versions"]] == [("rejected", False), ("baseline", True)]
    rollback = runner.invoke(app, ["rubric", "rollback", str(RUBRIC), history["versions"][0]["version"], "--cache",
                                   str(cache)])
    assert rollback.exit_code == 2 and "never served" in rollback.output


def test_dry_run_and_scored_lines_reuse(server: ScriptedJudgeServer, scripts: Scripts, tmp_path: Path) -> None:
    cache = tmp_path / "cache.db"
    scored = runner.invoke(app, ["score", "--rubric", str(RUBRIC), "--input", str(SAMPLES), "--judge", JUDGE,
                                 "--judge-base-url", server.base_url, "--votes", "1", "--cache", "none", "--json"])
    rows = [json.loads(line) for line in SAMPLES.read_text().splitlines()]
    merged = write_jsonl(tmp_path / "scored.jsonl",
                         [{**row, **result} for row, result in zip(rows, json.loads(scored.stdout), strict=True)])
    result = runner.invoke(app, ["refine", "--rubric", str(RUBRIC), "--samples", str(merged), "--judge", JUDGE,
                                 "--judge-base-url", server.base_url, "--meta-judge", META, "--meta-judge-base-url",
                                 server.base_url, "--votes", "1", "--cache", str(cache), "--dry-run", "--json",
                                 "--out", str(tmp_path / "refined.yaml")])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["scored_now"] == 0 and report["samples"] == 8 and report["accepted"] and not report["saved"]
    assert [c["id"] for c in report["diff"]["criteria"]] == ["detailed", "no_padding"]
    assert load_rubric_file(tmp_path / "refined.yaml").ref == report["proposed"]
    history = json.loads(runner.invoke(app, ["rubric", "history", str(RUBRIC), "--cache", str(cache),
                                             "--json"]).stdout)
    assert history["versions"] == []


def test_refine_usage_errors(tmp_path: Path) -> None:
    no_cache = runner.invoke(app, ["refine", "--rubric", str(RUBRIC), "--samples", str(SAMPLES), "--cache", "none"])
    assert no_cache.exit_code == 2 and "drop --cache none, or pass --dry-run" in no_cache.output
    nothing = runner.invoke(app, ["refine", "--rubric", str(RUBRIC), "--samples", str(SAMPLES), "--cache", "none",
                                  "--dry-run", "--no-shipped-probes"])
    assert nothing.exit_code == 2 and "nothing to gate on" in nothing.output
    unknown = runner.invoke(app, ["rubric", "history", "no-such-rubric", "--cache", str(tmp_path / "c.db")])
    assert unknown.exit_code == 2 and "unknown rubric 'no-such-rubric'" in unknown.output
