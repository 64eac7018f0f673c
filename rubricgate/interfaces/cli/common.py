"""Shared CLI plumbing: consoles, error-to-exit-code mapping, input files. Defaults come from
`Settings` (the only reader of the environment)."""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from rubricgate.authoring.diff import RubricDiff
from rubricgate.errors import error_code, error_message
from rubricgate.judges.prompts import response_text
from rubricgate.interfaces.settings import Settings
from rubricgate.models.reward import Item
from rubricgate.library.jsonl import read_jsonl_models

err_console = Console(stderr=True)
out_console = Console()

EXIT_OK, EXIT_UNSCORABLE, EXIT_USAGE = 0, 1, 2


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


def cache_url_from(option: str | None) -> str | None:
    """`--cache URL|PATH|none`, else RUBRICGATE_CACHE, else the user cache dir (see `Settings.cache_url`)."""
    return Settings.load().cache_url(option)


def rubric_dirs_from(options: list[Path] | None) -> tuple[Path, ...]:
    """`--rubric-dir` folders, then RUBRICGATE_RUBRIC_PATH."""
    return Settings.load().rubric_dirs(options or ())


def read_items(path: Path) -> list[Item]:
    """Parse an input JSONL file; a bad line names its line number and what is wrong."""
    return read_jsonl_models(path, Item, "input file", "'prompt' and 'response'", "items", default_id=str,
                             check=response_text)



CONCURRENCY_HELP = "Judge calls in flight (default: RUBRICGATE_CONCURRENCY, else the judge's own: 32 over HTTP, 8 embedded, 256 for vllm:)."
KEY_ENV_HELP = "Name of the environment variable holding the {what}'s API key (default: RUBRICGATE_{var}_API_KEY)."
FALLBACK_HELP = ("Judge spec that takes over when the main judge is unavailable (retries exhausted or its circuit "
                 "open); results it contributed to are flagged 'fallback' (default: RUBRICGATE_FALLBACK_JUDGE).")

# Options several commands share, declared once (defaults come from `Settings`).
JudgeOption = Annotated[Optional[str], typer.Option(
    help="Judge spec kind:model (default: RUBRICGATE_JUDGE, else llamacpp:default).", show_default=False)]
JudgeUrlOption = Annotated[Optional[str], typer.Option(
    help="Base URL of an OpenAI-compatible judge server (default: RUBRICGATE_JUDGE_BASE_URL).")]
JudgeKeyOption = Annotated[Optional[str], typer.Option(help=KEY_ENV_HELP.format(what="judge", var="JUDGE"))]
FallbackOption = Annotated[Optional[str], typer.Option(help=FALLBACK_HELP)]
FallbackUrlOption = Annotated[Optional[str], typer.Option(
    help="Base URL of an OpenAI-compatible fallback judge (default: RUBRICGATE_FALLBACK_JUDGE_BASE_URL).")]
FallbackKeyOption = Annotated[Optional[str], typer.Option(
    help=KEY_ENV_HELP.format(what="fallback judge", var="FALLBACK_JUDGE"))]
GuardOption = Annotated[Optional[str], typer.Option(
    help="Judge spec that confirms or clears responses the injection detector suspects, with one extra call each "
         "(default: RUBRICGATE_GUARD_JUDGE, else none).")]


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
