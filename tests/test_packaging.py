"""The wheel carries prompts/ and rubrics/, and an installed wheel finds them."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_wheel_ships_prompts_and_rubrics_and_finds_them_installed(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(REPO)], check=True, capture_output=True)
    [wheel] = list((tmp_path / "dist").glob("rubricgate-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "rubricgate/_data/prompts/judge_v1.md" in names
    assert "rubricgate/_data/rubrics/helpfulness.yaml" in names
    assert "rubricgate/py.typed" in names
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    code = ("from rubricgate.library.resources import shipped_dir;"
            "from rubricgate.library.rubric_files import resolve_rubric;"
            "print(shipped_dir('rubrics')); print(resolve_rubric('helpfulness').ref)")
    env = {**os.environ, "PYTHONPATH": str(target)}
    shown = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                           check=True).stdout.split()
    assert shown[0] == str(target / "rubricgate" / "_data" / "rubrics")
    assert shown[1].startswith("helpfulness@")
