"""The README's integration snippets are the example files the suite runs, word for word."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.interfaces.http import ServerSettings, create_app
from tests.support.app_server import serving

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


@pytest.mark.parametrize("example", ["trl_grpo.py", "verl_reward.py", "openrlhf_request.py"])
def test_readme_shows_the_example_verbatim(example: str) -> None:
    code = (REPO / "examples" / example).read_text().strip()
    assert f"```python\n# examples/{example}\n{code}\n```" in README


def test_quickstart_is_the_first_thing_in_the_readme() -> None:
    head = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = [line for line in head.splitlines() if line.startswith("python3 -m venv")]
    assert len(commands) == 2 and "rubricgate score" in commands[0] and "pytest" in commands[1]
    assert commands[1].split(" && ")[-1] in (REPO / ".ci" / "run").read_text()


def test_openrlhf_example_runs_against_a_server(tmp_path: Path) -> None:
    gateway = Gateway.open(GatewayConfig(judge="fake:best", cache_url=None))
    with serving(create_app(gateway, ServerSettings(default_rubric="helpfulness"))) as running:
        env = {**os.environ, "RUBRICGATE_URL": running.url}
        done = subprocess.run([sys.executable, str(REPO / "examples" / "openrlhf_request.py")], env=env,
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("[1.0] [1.0] ['agreement', 'cached'")
