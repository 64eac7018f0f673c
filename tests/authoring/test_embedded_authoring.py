"""Authoring end to end with the real embedded model (templates + label slots; the model judges the filter).

Quality is not asserted: a 270M base model is a smoke-test judge. What must hold: the commands
finish offline and every file they write validates.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from rubricgate.interfaces.cli import app
from rubricgate.library.rubric_files import load_rubric_file

DATA = Path(__file__).resolve().parents[1] / "data" / "rmbench_sample.jsonl"
runner = CliRunner()
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _model_dir(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUBRICGATE_MODEL_DIR", str(model_dir))


def test_rubric_new_with_the_embedded_model_writes_a_valid_rubric(tmp_path: Path) -> None:
    out = tmp_path / "safe-concise.yaml"
    result = runner.invoke(app, ["rubric", "new", "--principle", "Refuse clearly unsafe requests, but help with safe ones",
                                 "--principle", "Be concise", "--principle", "Never exceed 120 words",
                                 "--name", "safe-concise", "--generator", "llamacpp:default", "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    rubric = load_rubric_file(out)
    assert rubric.metadata["generator"] == "template+llamacpp:default"
    assert {c.kind for c in rubric.criteria} == {"hard_rule", "principle"}
    assert any(c.check is not None and c.check.type == "max_words" for c in rubric.criteria)
    assert all(c.text.startswith("The response") and c.pass_ and c.fail for c in rubric.criteria)


def test_rubric_contrast_with_the_embedded_model_on_three_rmbench_pairs(tmp_path: Path) -> None:
    out = tmp_path / "generated"
    result = runner.invoke(app, ["rubric", "contrast", str(DATA), "--out", str(out), "--judge", "llamacpp:default",
                                 "--tries", "2", "--cache", str(tmp_path / "cache.db")])
    assert result.exit_code == 0, result.stderr
    files = sorted(out.rglob("*.yaml"))
    assert len(files) == 3  # kept ones in out/, rejected drafts in out/rejected/
    for path in files:
        rubric = load_rubric_file(path)
        assert rubric.metadata["filter_judge"] == "llamacpp:default"
        assert rubric.metadata["filter_mode"] == "pairwise" and rubric.metadata["filter_tries"] == 2
        assert isinstance(rubric.metadata["filter_accuracy"], float)
    assert "contrastive generation: 3 prompts" in " ".join(result.stdout.split())
