"""A supervised local vLLM OpenAI-compatible server for a judge model (`rubricgate judge serve`)."""

from rubricgate.interfaces.judge_server.supervisor import (
    DEFAULT_MAX_MODEL_LEN, DEFAULT_PORT, STRUCTURED_OUTPUTS, JudgeServer, JudgeServerConfig, base_url, client_host,
    default_log_file, is_cpu_build, is_loopback, judge_specs, model_context_limit, served_model_name, server_module,
    vllm_command,
)

__all__ = [
    "DEFAULT_MAX_MODEL_LEN",
    "DEFAULT_PORT",
    "STRUCTURED_OUTPUTS",
    "JudgeServer",
    "JudgeServerConfig",
    "base_url",
    "client_host",
    "default_log_file",
    "is_cpu_build",
    "is_loopback",
    "judge_specs",
    "model_context_limit",
    "served_model_name",
    "server_module",
    "vllm_command",
]
