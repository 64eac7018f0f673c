"""One offline refinement end to end with the real embedded model as judge and meta-judge.

The embedded model can only fill label slots, so it drives the offline meta-judge (detector
findings -> countermeasure criteria, the model choosing how strongly to weigh each). Quality is
not asserted: a 270M base model is a smoke-test judge. What must hold: the loop runs offline,
the gate is measured, and the outcome lands in the version history.

The samples arrive already scored by the scripted, length-gullible judge (as a trainer's scored
rollouts would), so the padding exploit is in the evidence whatever the embedded model's numerics
on this CPU; the embedded model then weighs the countermeasure and judges the gate.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rubricgate.interfaces.cli import app
from rubricgate.library.probes import load_probes
from tests.refine.support import JUDGE, PAIRS, RUBRIC, SAMPLES, Scripts, write_jsonl
from tests.support.openai_server import ScriptedJudgeServer

runner = CliRunner(env={"COLUMNS": "200"})
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _model_dir(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUBRICGATE_MODEL_DIR", str(model_dir))


def scored_by_a_gullible_judge(path: Path) -> Path:
    """The shared samples with reward fields from a judge that rates detail by length."""
    with ScriptedJudgeServer() as server:
        server.set_script(Scripts())
        scored = runner.invoke(app, ["score", "--rubric", str(RUBRIC), "--input", str(SAMPLES), "--judge", JUDGE,
                                     "--judge-base-url", server.base_url, "--votes", "1", "--cache", "none", "--json"])
    assert scored.exit_code == 0, scored.output
    rows = [json.loads(line) for line in SAMPLES.read_text().splitlines()]
    return write_jsonl(path, [{**row, **result} for row, result in zip(rows, json.loads(scored.stdout), strict=True)])


def test_offline_refinement_with_the_embedded_model(tmp_path: Path) -> None:
    samples = scored_by_a_gullible_judge(tmp_path / "scored.jsonl")
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [json.loads(line) for line in PAIRS.read_text().splitlines()[:2]])
    probes = write_jsonl(tmp_path / "probes.jsonl", [p.model_dump(mode="json", exclude_none=True) for p in
                                                      load_probes() if p.kind == "length_padding"])
    cache = tmp_path / "cache.db"
    result = runner.invoke(app, ["refine", "--rubric", str(RUBRIC), "--samples", str(samples), "--pairs", str(pairs),
                                 "--probes", str(probes), "--no-shipped-probes", "--judge", "llamacpp:default",
                                 "--meta-judge", "llamacpp:default", "--votes", "1", "--cache", str(cache)])
    assert result.exit_code in (0, 1), result.output
    out = " ".join(result.stdout.split())
    assert "8 samples (0 scored now)" in out and "length_padding" in out
    assert "meta-judge template+llamacpp:default" in out and "pair accuracy (2/2 pairs)" in out
    assert "probe length_padding-1" in out and "probe length_padding-2" in out
    history = json.loads(runner.invoke(app, ["rubric", "history", str(RUBRIC), "--cache", str(cache),
                                             "--json"]).stdout)["versions"]
    assert [e["event"] for e in history][-1] == "baseline"
    assert history[0]["event"] == ("refined" if result.exit_code == 0 else "rejected")
    assert history[0]["details"]["meta_judge"] == "template+llamacpp:default"
