"""One offline refinement end to end with the real embedded model as judge and meta-judge.

The embedded model can only fill label slots, so it drives the offline meta-judge (detector
findings -> countermeasure criteria, the model choosing how strongly to weigh each). Quality is
not asserted: a 270M base model is a smoke-test judge. What must hold: the loop runs offline,
the gate is measured, and the outcome lands in the version history.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rubricgate.interfaces.cli import app
from rubricgate.library.probes import load_probes
from tests.refine.support import PAIRS, RUBRIC, SAMPLES, write_jsonl

runner = CliRunner(env={"COLUMNS": "200"})
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _model_dir(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUBRICGATE_MODEL_DIR", str(model_dir))


def test_offline_refinement_with_the_embedded_model(tmp_path: Path) -> None:
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [json.loads(line) for line in PAIRS.read_text().splitlines()[:2]])
    probes = write_jsonl(tmp_path / "probes.jsonl", [p.model_dump(mode="json", exclude_none=True) for p in
                                                      load_probes() if p.kind == "length_padding"])
    cache = tmp_path / "cache.db"
    result = runner.invoke(app, ["refine", "--rubric", str(RUBRIC), "--samples", str(SAMPLES), "--pairs", str(pairs),
                                 "--probes", str(probes), "--no-shipped-probes", "--judge", "llamacpp:default",
                                 "--meta-judge", "llamacpp:default", "--votes", "1", "--cache", str(cache)])
    assert result.exit_code in (0, 1), result.output
    out = " ".join(result.stdout.split())
    assert "meta-judge template+llamacpp:default" in out and "pair accuracy (2/2 pairs)" in out
    assert "probe length_padding-1" in out and "probe length_padding-2" in out
    history = json.loads(runner.invoke(app, ["rubric", "history", str(RUBRIC), "--cache", str(cache),
                                             "--json"]).stdout)["versions"]
    assert [e["event"] for e in history][-1] == "baseline"
    assert history[0]["event"] == ("refined" if result.exit_code == 0 else "rejected")
    assert history[0]["details"]["meta_judge"] == "template+llamacpp:default"
