"""`rubricgate serve`: the HTTP reward server (uvicorn) on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from pydantic import SecretStr

from rubricgate.errors import UsageError
from rubricgate.interfaces.cli.common import (
    CONCURRENCY_HELP, FallbackKeyOption, FallbackOption, FallbackUrlOption, GuardOption, JudgeKeyOption, JudgeOption, JudgeUrlOption, err_console, handle_errors,
)
from rubricgate.interfaces.gateway import Gateway
from rubricgate.interfaces.cli.refine import refine_settings
from rubricgate.interfaces.judge_server.endpoint import is_loopback
from rubricgate.interfaces.http import ServerSettings, create_app, run_server
from rubricgate.interfaces.settings import Settings
from rubricgate.library.rubric_files import iter_rubric_files, load_rubric_file
from rubricgate.models.rubric import RubricLimits


def serve(
    host: Annotated[Optional[str], typer.Option(help="Bind address (default: RUBRICGATE_HOST, else 127.0.0.1); anything but loopback needs an API key.", show_default=False)] = None,
    port: Annotated[Optional[int], typer.Option(min=0, max=65535, help="Port (default: RUBRICGATE_PORT, else 8000; 0 picks a free one).", show_default=False)] = None,
    rubric: Annotated[Optional[str], typer.Option(help="Default rubric for requests that name none (default: RUBRICGATE_RUBRIC).")] = None,
    judge: JudgeOption = None,
    judge_base_url: JudgeUrlOption = None,
    judge_api_key_env: JudgeKeyOption = None,
    fallback_judge: FallbackOption = None,
    fallback_judge_base_url: FallbackUrlOption = None,
    fallback_judge_api_key_env: FallbackKeyOption = None,
    guard_judge: GuardOption = None,
    api_key: Annotated[Optional[str], typer.Option(help="Bearer key clients must send (prefer RUBRICGATE_API_KEY).", show_default=False)] = None,
    votes: Annotated[Optional[int], typer.Option(min=1, max=64, help="Default votes per item (default: RUBRICGATE_VOTES, else 3).", show_default=False)] = None,
    concurrency: Annotated[Optional[int], typer.Option(min=1, max=4096, help=CONCURRENCY_HELP)] = None,
    timeout: Annotated[Optional[float], typer.Option(min=0.1, help="Seconds per judge call (default 60).", show_default=False)] = None,
    deadline: Annotated[Optional[float], typer.Option(min=0.1, help="Seconds per item, retries included (default 300).", show_default=False)] = None,
    cache: Annotated[Optional[str], typer.Option(help="Cache URL, SQLite path or 'none' (default: RUBRICGATE_CACHE, else the user cache dir).")] = None,
    rubric_dir: Annotated[Optional[list[Path]], typer.Option(help="Extra folder of rubric files (repeatable).")] = None,
    max_body_bytes: Annotated[Optional[int], typer.Option(min=1024, help="Largest request body in bytes (default: RUBRICGATE_MAX_BODY_BYTES, else 8 MiB).", show_default=False)] = None,
    max_items: Annotated[Optional[int], typer.Option(min=1, help="Most items per request (default: RUBRICGATE_MAX_ITEMS, else 1024).", show_default=False)] = None,
    drain_timeout: Annotated[Optional[float], typer.Option(min=0, help="Seconds admitted requests may still run after SIGTERM; then unfinished items get reward null, reason shutdown (default: RUBRICGATE_DRAIN_TIMEOUT_S, else 30).", show_default=False)] = None,
    allow_judge: Annotated[Optional[list[str]], typer.Option(help="A judge spec that a request's rubric may name in reward.judges, besides --judge and --fallback-judge (repeatable; default: RUBRICGATE_ALLOW_JUDGES, comma-separated). Allowed judges use --judge-base-url and the judge's key.", show_default=False)] = None,
    allow_test_judges: Annotated[bool, typer.Option("--allow-test-judges", help="Serve fake: judges (scripted verdicts for tests and demos; default: RUBRICGATE_ALLOW_TEST_JUDGES). Without it, serve refuses them.")] = False,
    unscorable_reward: Annotated[str, typer.Option(help="/get_reward value for unscorable samples (flagged in extra_logs): batch_mean or a number.")] = "batch_mean",
    refine_every: Annotated[Optional[int], typer.Option(min=1, help="Refine a rubric in the background after every N items scored with its live version, and hot-swap a version that passes the gate.")] = None,
    refine_on: Annotated[Optional[list[str]], typer.Option(help="Also refine when a trigger fires: saturation, drift, disagreement (repeatable).")] = None,
    meta_judge: Annotated[Optional[str], typer.Option(help="Meta-judge of online refinement (default: RUBRICGATE_META_JUDGE, else the judge); key in RUBRICGATE_META_JUDGE_API_KEY.")] = None,
    meta_judge_base_url: Annotated[Optional[str], typer.Option(help="Base URL of an OpenAI-compatible meta-judge (default: RUBRICGATE_META_JUDGE_BASE_URL).")] = None,
    refine_pairs: Annotated[Optional[Path], typer.Option(help="Labelled pairs the refinement gate checks (JSONL: prompt, chosen, rejected).")] = None,
    refine_probes: Annotated[Optional[list[Path]], typer.Option(help="Exploit probes added to the shipped ones (repeatable).")] = None,
    refine_sample: Annotated[int, typer.Option(min=1, max=500, help="Recent items the meta-judge reads per refinement.")] = 20,
) -> None:
    """Serve rewards over HTTP: /v1/reward, OpenRLHF's /get_reward, /healthz, /metrics, /v1/rubrics."""
    with handle_errors():
        settings = Settings.load()
        host = host or settings.host
        port = settings.port if port is None else port
        key = api_key or (settings.api_key.get_secret_value() if settings.api_key else None)
        rubric = rubric or settings.rubric
        if not is_loopback(host) and not key:
            raise UsageError(f"refusing to bind {host} without an API key: set RUBRICGATE_API_KEY "
                             "(clients send 'Authorization: Bearer <key>'), or bind 127.0.0.1")
        config = settings.gateway_config(
            judge=judge, judge_base_url=judge_base_url, judge_api_key=settings.secret(judge_api_key_env),
            votes=votes, concurrency=concurrency, timeout_s=timeout, deadline_s=deadline, cache=cache,
            rubric_dirs=rubric_dir or (), fallback_judge=fallback_judge,
            fallback_judge_base_url=fallback_judge_base_url,
            fallback_judge_api_key=settings.secret(fallback_judge_api_key_env), guard_judge=guard_judge,
            allowed_judges=_allowed_judges(allow_judge, settings), rubric_paths=False)
        refine = refine_settings(refine_every, refine_on, meta_judge, meta_judge_base_url, refine_pairs, refine_probes,
                                 refine_sample, config, settings)
        _refuse_test_judges([config.judge, config.fallback_judge, *(config.allowed_judges or ()),
                             refine.meta_judge if refine is not None else None],
                            allow_test_judges or settings.allow_test_judges)
        server = ServerSettings(api_key=SecretStr(key) if key else None, default_rubric=rubric,
                                max_body_bytes=max_body_bytes or settings.max_body_bytes,
                                max_items=max_items or settings.max_items, max_votes=settings.max_votes,
                                unscorable_reward=_unscorable(unscorable_reward), refine=refine,
                                rubric_limits=RubricLimits(max_criteria=settings.max_criteria,
                                                           max_checks=settings.max_checks,
                                                           max_rubric_chars=settings.max_rubric_chars),
                                drain_timeout_s=settings.drain_timeout_s if drain_timeout is None else drain_timeout)
        gateway = Gateway.open(config)
        if rubric:
            gateway.rubric(rubric, allow_paths=True)  # fail now (a judge it names must be allowed), not on a request
        _warn_unservable(gateway)
        err_console.print(f"rubricgate serving on http://{host}:{port} — judge {config.judge}, "
                          f"rubric {rubric or '(per request)'}, auth {'on' if key else 'off'}", highlight=False)
        app = create_app(gateway, server)
        if refine is not None:
            when = ", ".join(([f"every {refine.every} items"] if refine.every else []) + list(refine.triggers))
            err_console.print(f"online refinement: {when}; meta-judge {refine.meta_judge}; history at "
                              "/v1/rubrics/{id}/versions", highlight=False)
        run_server(app, host, port, server.drain_timeout_s)


def _allowed_judges(flags: list[str] | None, settings: Settings) -> tuple[str, ...]:
    """`--allow-judge` entries, else RUBRICGATE_ALLOW_JUDGES; each must look like `kind:model`."""
    specs = [s.strip() for s in flags] if flags else [s.strip() for s in settings.allow_judges.split(",")]
    specs = [s for s in specs if s]
    for spec in specs:
        kind, sep, model = spec.partition(":")
        if not (kind and sep and model):
            raise UsageError(f"--allow-judge {spec!r}: want a judge spec kind:model, e.g. openai:my-model")
    return tuple(dict.fromkeys(specs))


def _refuse_test_judges(specs: list[str | None], allowed: bool) -> None:
    """`fake:` judges return canned verdicts (`fake:best` gives garbage a 1.0): a server runs them
    only when the operator says so."""
    fakes = [s for s in specs if s and s.partition(":")[0] == "fake"]
    if fakes and not allowed:
        raise UsageError(f"{', '.join(dict.fromkeys(fakes))}: fake: judges return scripted verdicts, not "
                         "judgments; pass --allow-test-judges (or RUBRICGATE_ALLOW_TEST_JUDGES=1) to serve them")


def _warn_unservable(gateway: Gateway) -> None:
    """Say at startup which library rubrics name a judge this server does not allow (requests for
    them get 400); a rubric that does not load is left for `rubricgate rubric validate`."""
    for path in iter_rubric_files(gateway.config.rubric_dirs):
        try:
            rubric = load_rubric_file(path)
        except UsageError:
            continue
        try:
            gateway.check_judges(rubric)
        except UsageError as exc:
            err_console.print(f"warning: {path.name}: {exc}; requests for it get 400", highlight=False)


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
