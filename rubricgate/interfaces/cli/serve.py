"""`rubricgate serve`: the HTTP reward server (uvicorn) on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
import uvicorn
from pydantic import SecretStr

from rubricgate.errors import UsageError
from rubricgate.interfaces.cli.common import (
    cache_url_from, err_console, handle_errors, model_dir_from_env, rubric_dirs_from,
)
from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.interfaces.http import ServerSettings, create_app
from rubricgate.judges.registry import DEFAULT_JUDGE
from rubricgate.models.config import BackendConfig, ScoringConfig


def serve(
    host: Annotated[str, typer.Option(envvar="RUBRICGATE_HOST", help="Bind address; anything but loopback needs an API key.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="RUBRICGATE_PORT", min=0, max=65535)] = 8000,
    rubric: Annotated[Optional[str], typer.Option(envvar="RUBRICGATE_RUBRIC", help="Default rubric for requests that name none.")] = None,
    judge: Annotated[str, typer.Option(envvar="RUBRICGATE_JUDGE", help="Judge spec kind:model.")] = DEFAULT_JUDGE,
    judge_base_url: Annotated[Optional[str], typer.Option(envvar="RUBRICGATE_JUDGE_BASE_URL")] = None,
    judge_api_key_env: Annotated[str, typer.Option(help="Variable holding the judge's API key.")] = "RUBRICGATE_JUDGE_API_KEY",
    api_key: Annotated[Optional[str], typer.Option(envvar="RUBRICGATE_API_KEY", help="Bearer key clients must send (prefer the env variable).", show_default=False)] = None,
    votes: Annotated[int, typer.Option(envvar="RUBRICGATE_VOTES", min=1, max=64)] = 3,
    concurrency: Annotated[int, typer.Option(envvar="RUBRICGATE_CONCURRENCY", min=1, max=4096)] = 32,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per judge call.")] = 60.0,
    deadline: Annotated[float, typer.Option(min=0.1, help="Seconds per item, retries included.")] = 300.0,
    cache: Annotated[Optional[str], typer.Option(help="Cache URL, SQLite path or 'none'.")] = None,
    rubric_dir: Annotated[Optional[list[Path]], typer.Option(help="Extra folder of rubric files (repeatable).")] = None,
    max_body_bytes: Annotated[int, typer.Option(envvar="RUBRICGATE_MAX_BODY_BYTES", min=1024)] = 8 * 1024 * 1024,
    max_items: Annotated[int, typer.Option(envvar="RUBRICGATE_MAX_ITEMS", min=1)] = 1024,
    unscorable_reward: Annotated[str, typer.Option(help="/get_reward value for unscorable samples (flagged in extra_logs): batch_mean or a number.")] = "batch_mean",
) -> None:
    """Serve rewards over HTTP: /v1/reward, OpenRLHF's /get_reward, /healthz, /metrics, /v1/rubrics."""
    with handle_errors():
        if not _is_loopback(host) and not api_key:
            raise UsageError(f"refusing to bind {host} without an API key: set RUBRICGATE_API_KEY "
                             "(clients send 'Authorization: Bearer <key>'), or bind 127.0.0.1")
        judge_key = os.environ.get(judge_api_key_env)
        config = GatewayConfig(
            judge=judge,
            backend=BackendConfig(base_url=judge_base_url, api_key=SecretStr(judge_key) if judge_key else None,
                                  timeout_s=timeout, model_dir=model_dir_from_env()),
            scoring=ScoringConfig(votes=votes, concurrency=concurrency, deadline_s=deadline),
            cache_url=cache_url_from(cache),
            rubric_dirs=rubric_dirs_from(rubric_dir),
        )
        settings = ServerSettings(api_key=SecretStr(api_key) if api_key else None, default_rubric=rubric,
                                  max_body_bytes=max_body_bytes, max_items=max_items,
                                  unscorable_reward=_unscorable(unscorable_reward))
        gateway = Gateway.open(config)
        if rubric:
            gateway.rubric(rubric)  # fail now, not on the first request
        err_console.print(f"rubricgate serving on http://{host}:{port} — judge {config.judge}, "
                          f"rubric {rubric or '(per request)'}, auth {'on' if api_key else 'off'}", highlight=False)
        uvicorn.run(create_app(gateway, settings), host=host, port=port, log_level="warning",
                    timeout_graceful_shutdown=30, server_header=False)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _unscorable(value: str) -> Literal["batch_mean"] | float:
    if value == "batch_mean":
        return "batch_mean"
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if number != number or number in (float("inf"), float("-inf")):
        raise UsageError(f"--unscorable-reward wants batch_mean or a finite number, got {value!r}")
    return number
