"""Shared CLI plumbing: consoles, error-to-exit-code mapping, environment defaults, input files."""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import platformdirs
import typer
from pydantic import SecretStr
from rich.console import Console
from rich.markup import escape

from rubricgate.authoring.diff import RubricDiff
from rubricgate.errors import UsageError, error_code, error_message
from rubricgate.judges.prompts import response_text
from rubricgate.judges.registry import default_concurrency
from rubricgate.models.config import BackendConfig
from rubricgate.models.reward import Item
from rubricgate.library.jsonl import read_jsonl_models

err_console = Console(stderr=True)
out_console = Console()

EXIT_OK, EXIT_UNSCORABLE, EXIT_USAGE = 0, 1, 2
NO_CACHE = "none"


class State:
    """Global flags set by the root callback."""

    debug: bool = False


@contextmanager
def handle_errors() -> Iterator[None]:
    """One clear line and an exit code instead of a traceback (`--debug` shows it): 2 for a usage
    error, else 1. An exception group (a TaskGroup's failures) is reported as its errors' kind."""
    try:
        yield
    except (typer.Exit, typer.Abort, typer.exceptions.TyperException):
        raise  # typer's own exits and bad-parameter messages
    except KeyboardInterrupt:
        err_console.print("interrupted: finished judgments are in the cache; rerun to resume")
        raise typer.Exit(130) from None
    except Exception as exc:
        if State.debug:
            traceback.print_exc()
        code = error_code(exc)
        line = error_message(exc)
        if code == "internal_error":
            line = f"internal error: {line} (rerun with --debug for the traceback)"
        err_console.print(f"[bold red]error:[/] {escape(line)}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE if code == "usage_error" else EXIT_UNSCORABLE) from None


def default_cache_url() -> str:
    """RUBRICGATE_CACHE, else a SQLite file in the user cache dir."""
    env = os.environ.get("RUBRICGATE_CACHE")
    if env:
        return env
    return f"sqlite:///{Path(platformdirs.user_cache_dir('rubricgate')) / 'cache.db'}"


def cache_url_from(option: str | None) -> str | None:
    """`--cache URL|PATH|none`: a bare path means a SQLite file; `none` disables the cache."""
    value = option or default_cache_url()
    if value.lower() == NO_CACHE:
        return None
    if "://" not in value:
        return f"sqlite:///{Path(value).expanduser().resolve()}"
    return value


def model_dir_from_env() -> Path | None:
    env = os.environ.get("RUBRICGATE_MODEL_DIR")
    return Path(env).expanduser() if env else None


CONTEXT_ENV = "RUBRICGATE_JUDGE_CONTEXT"
"""Context length in tokens for judges the gateway hosts (llamacpp:, vllm:); default 4096."""


def backend_config(base_url: str | None, key_env: str, timeout: float = 60.0) -> BackendConfig:
    """A judge's connection settings from CLI flags and the environment: the API key from the
    variable `key_env` names, the model folder and hosted-judge context length from RUBRICGATE_*."""
    key = os.environ.get(key_env)
    fields: dict[str, Any] = {}
    context = os.environ.get(CONTEXT_ENV)
    if context:
        if not context.isdigit() or int(context) < 512:
            raise UsageError(f"{CONTEXT_ENV}={context!r} is not a context length; use a whole number of tokens "
                             "of at least 512, e.g. 8192")
        fields["n_ctx"] = int(context)
    return BackendConfig(base_url=base_url, api_key=SecretStr(key) if key else None, timeout_s=timeout,
                         model_dir=model_dir_from_env(), **fields)


def rubric_dirs_from(options: list[Path] | None) -> tuple[Path, ...]:
    """`--rubric-dir` folders, then RUBRICGATE_RUBRIC_PATH (os.pathsep-separated)."""
    dirs = list(options or [])
    env = os.environ.get("RUBRICGATE_RUBRIC_PATH")
    if env:
        dirs += [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    return tuple(dirs)


def read_items(path: Path) -> list[Item]:
    """Parse an input JSONL file; a bad line names its line number and what is wrong."""
    return read_jsonl_models(path, Item, "input file", "'prompt' and 'response'", "items", default_id=str,
                             check=response_text)



CONCURRENCY_HELP = "Judge calls in flight (default {default}; 256 for vllm: judges, whose engine batches them)."


def concurrency_for(judge: str, option: int | None, default: int = 8) -> int:
    """`--concurrency`, else the judge kind's default (see `default_concurrency`)."""
    return option if option is not None else default_concurrency(judge, default)


def print_diff(console: Console, result: RubricDiff) -> None:
    """Rubric fields changed, then criteria added (+), removed (-) and changed (~), field by field."""
    for change in result.fields:
        console.print(f"~ {change.field}: {change.before!r} -> {change.after!r}", highlight=False, markup=False)
    if result.order_changed:
        console.print("~ criteria order changed", highlight=False)
    for c in result.criteria:
        if c.change == "added":
            console.print(f"[green]+ {c.id}[/] ({c.kind}): {c.text}", highlight=False)
        elif c.change == "removed":
            console.print(f"[red]- {c.id}[/] ({c.kind}): {c.text}", highlight=False)
        else:
            console.print(f"[yellow]~ {c.id}[/]", highlight=False)
            for f in c.fields:
                console.print(f"    {f.field}: {f.before!r} -> {f.after!r}", highlight=False, markup=False)
