"""The package type-checks under mypy --strict (config in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_mypy_strict_passes() -> None:
    done = subprocess.run([sys.executable, "-m", "mypy", "rubricgate"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:]
