"""Every script in cli/ runs end to end as a user would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = Path(__file__).resolve().parent.parent / "cli"
SCRIPTS = sorted(CLI.glob("*.sh"))


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_walkthrough(script: Path, model_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "RUBRICGATE_MODEL_DIR": str(model_dir), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(script)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_there_are_walkthroughs() -> None:
    assert {"quickstart.sh", "errors.sh", "serve.sh"} <= {s.name for s in SCRIPTS}
