"""`rubricgate cache stats|export|clear`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from rubricgate.cache.store import JudgmentStore
from rubricgate.errors import UsageError
from rubricgate.interfaces.cli.common import cache_url_from, err_console, handle_errors, out_console

app = typer.Typer(help="Inspect, export or clear the judgment cache.", no_args_is_help=True)

CacheOption = Annotated[Optional[str], typer.Option(help="Cache URL or SQLite path (default: RUBRICGATE_CACHE or the user cache dir).")]


def _store(cache: str | None) -> JudgmentStore:
    url = cache_url_from(cache)
    if url is None:
        raise UsageError("--cache none names no cache; pass a cache URL or path")
    return JudgmentStore(url)


@app.command()
def stats(cache: CacheOption = None,
          as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """Judgments stored, per rubric and per judge."""
    with handle_errors():
        store = _store(cache)
        try:
            info = store.stats()
        finally:
            store.close()
        if as_json:
            out_console.print_json(json.dumps(info))
            return
        table = Table(title=f"cache {info['url']}", show_header=False)
        table.add_row("judgments", str(info["judgments"]))
        table.add_row("size", f"{info['bytes'] / 1e6:.2f} MB" if info["bytes"] is not None else "-")
        for rubric, count in sorted(info["by_rubric"].items()):
            table.add_row(f"rubric {rubric}", str(count))
        for judge, count in sorted(info["by_judge"].items()):
            table.add_row(f"judge {judge}", str(count))
        out_console.print(table)


@app.command()
def export(cache: CacheOption = None,
           output: Annotated[Optional[Path], typer.Option("--output", "-o", help="JSONL file (default stdout).")] = None) -> None:
    """Every stored judgment as JSON lines."""
    with handle_errors():
        store = _store(cache)
        try:
            lines = (json.dumps(row, ensure_ascii=False) for row in store.export())
            if output is None:
                for line in lines:
                    print(line)
            else:
                with output.open("w", encoding="utf-8") as out:
                    count = sum(out.write(line + "\n") > 0 for line in lines)
                err_console.print(f"exported {count} judgments to {output}")
        finally:
            store.close()


@app.command()
def clear(cache: CacheOption = None,
          rubric: Annotated[Optional[str], typer.Option(help="Only this rubric (id or id@version).")] = None,
          judge: Annotated[Optional[str], typer.Option(help="Only this judge spec.")] = None,
          yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False) -> None:
    """Delete stored judgments (all, or one rubric's or judge's)."""
    with handle_errors():
        if not yes and not typer.confirm("delete the selected judgments?", err=True):
            raise typer.Exit(1)
        store = _store(cache)
        try:
            removed = store.clear(rubric=rubric, judge=judge)
        finally:
            store.close()
        err_console.print(f"removed {removed} judgments")
