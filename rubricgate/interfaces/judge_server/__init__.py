"""A supervised local vLLM OpenAI-compatible server for a judge model (`rubricgate judge serve`).

One module per job: `config` (what to run), `command` (the vLLM command line and its
judge-friendly defaults), `endpoint` (URLs and `--judge` specs clients use), `health`
(readiness and start-failure diagnosis) and `supervisor` (`JudgeServer`: the process group's
life cycle with restarts and backoff).
"""

from rubricgate.interfaces.judge_server.command import (
    STRUCTURED_OUTPUTS, is_cpu_build, model_context_limit, server_module, vllm_command,
)
from rubricgate.interfaces.judge_server.config import (
    DEFAULT_MAX_MODEL_LEN, DEFAULT_PORT, JudgeServerConfig, default_log_file,
)
from rubricgate.interfaces.judge_server.endpoint import (
    base_url, client_host, health_url, is_loopback, judge_specs, served_model_name,
)
from rubricgate.interfaces.judge_server.supervisor import JudgeServer

__all__ = [
    "DEFAULT_MAX_MODEL_LEN",
    "DEFAULT_PORT",
    "STRUCTURED_OUTPUTS",
    "JudgeServer",
    "JudgeServerConfig",
    "base_url",
    "client_host",
    "default_log_file",
    "health_url",
    "is_cpu_build",
    "is_loopback",
    "judge_specs",
    "model_context_limit",
    "served_model_name",
    "server_module",
    "vllm_command",
]
