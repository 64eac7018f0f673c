"""Where clients reach the judge server: its URLs, served model name and `--judge` specs."""

from __future__ import annotations

import ipaddress

from rubricgate.interfaces.judge_server.config import JudgeServerConfig, flag_value


def served_model_name(config: JudgeServerConfig) -> str:
    """The name clients must send as `model` (vLLM's `--served-model-name`, else `--model`)."""
    return flag_value(config.extra_args, "--served-model-name") or config.model


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps a server on this machine (a name other than localhost is not)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def client_host(host: str) -> str:
    """Where a local client connects: a wildcard bind is reached through loopback."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def base_url(config: JudgeServerConfig) -> str:
    host = client_host(config.host)
    return f"http://{f'[{host}]' if ':' in host else host}:{config.port}/v1"


def health_url(config: JudgeServerConfig) -> str:
    return base_url(config).removesuffix("/v1") + "/health"


def judge_specs(config: JudgeServerConfig) -> dict[str, str]:
    """The `--judge` specs that reach this server: the pooled fast path and litellm."""
    name = served_model_name(config)
    return {"openai": f"openai:{name}", "litellm": f"litellm:hosted_vllm/{name}", "base_url": base_url(config)}
