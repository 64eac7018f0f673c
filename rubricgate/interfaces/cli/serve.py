"""`rubricgate serve`: the HTTP reward server (uvicorn) on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
import uvicorn
from pydantic import SecretStr

from rubricgate.errors import UsageError
from rubricgate.interfaces.cli.common import (
    CONCURRENCY_HELP, backend_config, cache_url_from, concurrency_for, err_console, handle_errors,
    rubric_dirs_from,
)
from rubricgate.interfaces.cli.hardening import FALLBACK_HELP, hardening_fields
from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.interfaces.cli.refine import refine_settings
from rubricgate.interfaces.http import ServerSettings, create_app
from rubricgate.judges.registry import DEFAULT_JUDGE
from rubricgate.models.config import ScoringConfig


def serve(
    host: Annotated[str, typer.Option(envvar="RUBRICGATE_HOST", help="Bind address; anything but loopback needs an API key.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="RUBRICGATE_PORT", min=0, max=65535)] = 8000,
    rubric: Annotated[Optional[str], typer.Option(envvar="RUBRICGATE_RUBRIC", help="Default rubric for requests that name none.")] = None,
    judge: Annotated[str, typer.Option(envvar="RUBRICGATE_JUDGE", help="Judge spec kind:model.")] = DEFAULT_JUDGE,
    judge_base_url: Annotated[Optional[str], typer.Option(envvar="RUBRICGATE_JUDGE_BASE_URL")] = None,
    judge_api_key_env: Annotated[str, typer.Option(help="Variable holding the judge's API key.")] = "RUBRICGATE_JUDGE_API_KEY",
    fallback_judge: Annotated[Optional[str], typer.Option(envvar="RUBRICGATE_FALLBACK_JUDGE", help=FALLBACK_HELP)] = None,
    fallback_judge_base_url: Annotated[Optional[str], typer.Option(envvar="RUBRICGATE_FALLBACK_JUDGE_BASE_URL", help="Base URL of an OpenAI-compatible fallback judge.")] = None,
    fallback_judge_api_key_env: Annotated[str, typer.Option(help="Variable holding the fallback judge's API key.")] = "RUBRICGATE_FALLBACK_JUDGE_API_KEY",
    api_key: Annotated[Optional[str], typer.Option(envvar="RUBRICGATE_API_KEY", help="Bearer key clients must send (prefer the env variable).", show_default=False)] = None,
    votes: Annotated[int, typer.Option(envvar="RUBRICGATE_VOTES", min=1, max=64)] = 3,
    concurrency: Annotated[Optional[int], typer.Option(envvar="RUBRICGATE_CONCURRENCY", min=1, max=4096, help=CONCURRENCY_HELP.format(default=32))] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per judge call.")] = 60.0,
    deadline: Annotated[float, typer.Option(min=0.1, help="Seconds per item, retries included.")] = 300.0,
    cache: Annotated[Optional[str], typer.Option(help="Cache URL, SQLite path or 'none'.")] = None,
    rubric_dir: Annotated[Optional[list[Path]], typer.Option(help="Extra folder of rubric files (repeatable).")] = None,
    max_body_bytes: Annotated[int, typer.Option(envvar="RUBRICGATE_MAX_BODY_BYTES", min=1024)] = 8 * 1024 * 1024,
    max_items: Annotated[int, typer.Option(envvar="RUBRICGATE_MAX_ITEMS", min=1)] = 1024,
    unscorable_reward: Annotated[str, typer.Option(help="/get_reward value for unscorable samples (flagged in extra_logs): batch_mean or a number.")] = "batch_mean",
    refine_every: Annotated[Optional[int], typer.Option(min=1, help="Refine a rubric in the background after every N items scored with its live version, and hot-swap a version that passes the gate.")] = None,
    refine_on: Annotated[Optional[list[str]], typer.Option(help="Also refine when a trigger fires: saturation, drift, disagreement (repeatable).")] = None,
    meta_judge: Annotated[Optional[str], typer.Option(envvar="RUBRICGATE_META_JUDGE", help="Meta-judge of online refinement (default: the judge); key in RUBRICGATE_META_JUDGE_API_KEY.")] = None,
    meta_judge_base_url: Annotated[Optional[str], typer.Option(envvar="RUBRICGATE_META_JUDGE_BASE_URL")] = None,
    refine_pairs: Annotated[Optional[Path], typer.Option(help="Labelled pairs the refinement gate checks (JSONL: prompt, chosen, rejected).")] = None,
    refine_probes: Annotated[Optional[list[Path]], typer.Option(help="Exploit probes added to the shipped ones (repeatable).")] = None,
    refine_sample: Annotated[int, typer.Option(min=1, max=500, help="Recent items the meta-judge reads per refinement.")] = 20,
) -> None:
    """Serve rewards over HTTP: /v1/reward, OpenRLHF's /get_reward, /healthz, /metrics, /v1/rubrics."""
    with handle_errors():
        if not _is_loopback(host) and not api_key:
            raise UsageError(f"refusing to bind {host} without an API key: set RUBRICGATE_API_KEY "
                             "(clients send 'Authorization: Bearer <key>'), or bind 127.0.0.1")
        config = GatewayConfig(
            judge=judge, backend=backend_config(judge_base_url, judge_api_key_env, timeout),
            scoring=ScoringConfig(votes=votes, concurrency=concurrency_for(judge, concurrency, 32),
                                  deadline_s=deadline),
            cache_url=cache_url_from(cache),
            rubric_dirs=rubric_dirs_from(rubric_dir),
            **hardening_fields(fallback_judge, fallback_judge_base_url, fallback_judge_api_key_env, timeout),
        )
        refine = refine_settings(refine_every, refine_on, meta_judge, meta_judge_base_url, refine_pairs, refine_probes,
                                 refine_sample, judge, config.backend)
        settings = ServerSettings(api_key=SecretStr(api_key) if api_key else None, default_rubric=rubric,
                                  max_body_bytes=max_body_bytes, max_items=max_items,
                                  unscorable_reward=_unscorable(unscorable_reward), refine=refine)
        gateway = Gateway.open(config)
        if rubric:
            gateway.rubric(rubric)  # fail now, not on the first request
        err_console.print(f"rubricgate serving on http://{host}:{port} — judge {config.judge}, "
                          f"rubric {rubric or '(per request)'}, auth {'on' if api_key else 'off'}", highlight=False)
        app = create_app(gateway, settings)
        if refine is not None:
            when = ", ".join(([f"every {refine.every} items"] if refine.every else []) + list(refine.triggers))
            err_console.print(f"online refinement: {when}; meta-judge {refine.meta_judge}; history at "
                              "/v1/rubrics/{id}/versions", highlight=False)
        uvicorn.run(app, host=host, port=port, log_level="warning",
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
