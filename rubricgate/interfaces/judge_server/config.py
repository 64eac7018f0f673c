"""What to run: the judge server's settings and the extra vLLM arguments they carry."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import platformdirs
from pydantic import BaseModel, ConfigDict, Field

DEFAULT_PORT = 8100
DEFAULT_MAX_MODEL_LEN = 8192
"""Rubric prompts are ~1-2k tokens plus the graded response; longer contexts only cost KV cache."""


class JudgeServerConfig(BaseModel):
    """How to run and supervise one vLLM server."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    """Hugging Face id or local folder; also the served model name unless the extra args set one."""
    host: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_PORT, ge=1, le=65535)
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    """Share of GPU memory vLLM may take (None: vLLM's default)."""
    max_model_len: int | None = Field(default=None, ge=256)
    """None: DEFAULT_MAX_MODEL_LEN, or the model's own limit when a local config says it is lower."""
    restarts: int = Field(default=5, ge=0)
    """Restarts after crashes before giving up."""
    extra_args: tuple[str, ...] = ()
    """Passed to vLLM as they are (after `--` on the command line)."""
    health_timeout_s: float = Field(default=900.0, gt=0)
    """How long one start may take to answer /health (large models load for minutes)."""
    backoff_initial_s: float = Field(default=2.0, ge=0)
    backoff_max_s: float = Field(default=60.0, ge=0)
    stable_after_s: float = Field(default=300.0, ge=0)
    """A server healthy this long resets the backoff delay."""
    stop_grace_s: float = Field(default=30.0, ge=0)
    """Seconds between SIGTERM and SIGKILL when stopping."""
    log_file: Path | None = None
    """Where vLLM's output goes; None: `judge-server-<port>.log` in the user log dir."""
    python: str = sys.executable


def default_log_file(port: int) -> Path:
    return Path(platformdirs.user_log_dir("rubricgate")) / f"judge-server-{port}.log"


def has_flag(args: Sequence[str], flag: str) -> bool:
    """Whether vLLM arguments set `flag` (`--flag`, `--flag=value` or a dotted `--flag.key`)."""
    return any(a == flag or a.startswith(flag + "=") or a.startswith(flag + ".") for a in args)


def flag_value(args: Sequence[str], flag: str) -> str | None:
    """The value vLLM arguments give `flag` (`--flag value` or `--flag=value`), if any."""
    for index, arg in enumerate(args):
        if arg == flag and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None
