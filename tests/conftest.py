"""Suite-wide setup: no network, no paid endpoints, one embedded model per session."""

from __future__ import annotations

import os

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # before anything imports litellm
os.environ["HF_HUB_OFFLINE"] = "1"

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

PROVIDER_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "MISTRAL_API_KEY", "GROQ_API_KEY",
                 "TOGETHER_API_KEY", "AZURE_API_KEY")
KEPT = {"RUBRICGATE_TEST_MODEL_DIR", "RUBRICGATE_SOAK_S"}
"""Test-suite knobs, not settings."""
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_provider_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach a paid endpoint or pick up the developer's settings."""
    for name in PROVIDER_KEYS:
        monkeypatch.delenv(name, raising=False)
    for name in [n for n in os.environ if n.startswith("RUBRICGATE_") and n not in KEPT]:
        monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the embedded GGUF is assembled, once per session (RUBRICGATE_TEST_MODEL_DIR reuses one)."""
    env = os.environ.get("RUBRICGATE_TEST_MODEL_DIR")
    return Path(env) if env else tmp_path_factory.mktemp("models")


@pytest.fixture
def cache_url(tmp_path: Path) -> str:
    """A real SQLite file per test."""
    return f"sqlite:///{tmp_path / 'cache.db'}"
