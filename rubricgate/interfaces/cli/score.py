"""`rubricgate score`: grade a JSONL file (or one prompt/response) and write rewards."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from rubricgate.errors import UsageError
from rubricgate.interfaces.cli.common import (
    CONCURRENCY_HELP, EXIT_OK, EXIT_UNSCORABLE, FallbackKeyOption, FallbackOption, FallbackUrlOption,
    GuardOption, JudgeKeyOption, JudgeOption, JudgeUrlOption, err_console, handle_errors,
    out_console, read_items,
)
from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.interfaces.settings import Settings
from rubricgate.cache.cached import CacheCounters
from rubricgate.models.judging import TokenUsage
from rubricgate.models.reward import Item, RewardResult


def score(
    rubric: Annotated[Optional[list[str]], typer.Option("--rubric", "-r", help="Rubric id or file path; repeat to combine rubrics.")] = None,
    combine: Annotated[str, typer.Option(help="How several --rubric combine: 'and' (sum of log-sigmoids: high only if all pass) or 'weighted' (mean).")] = "and",
    rubric_weight: Annotated[Optional[list[float]], typer.Option(help="Weights for --combine weighted, one per --rubric.")] = None,
    input: Annotated[Optional[Path], typer.Option("--input", "-i", help="JSONL with prompt, response[, id, reference, rubric]; '-' reads stdin.")] = None,
    prompt: Annotated[Optional[str], typer.Option(help="Score one item: its prompt.")] = None,
    response: Annotated[Optional[str], typer.Option(help="Score one item: its response.")] = None,
    reference: Annotated[Optional[str], typer.Option(help="Reference answer for --prompt/--response.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write one JSON line per item here.")] = None,
    judge: JudgeOption = None,
    judge_base_url: JudgeUrlOption = None,
    judge_api_key_env: JudgeKeyOption = None,
    fallback_judge: FallbackOption = None,
    fallback_judge_base_url: FallbackUrlOption = None,
    fallback_judge_api_key_env: FallbackKeyOption = None,
    guard_judge: GuardOption = None,
    votes: Annotated[Optional[int], typer.Option(min=1, max=64, help="Self-consistency votes per item (default: RUBRICGATE_VOTES, else 3).", show_default=False)] = None,
    temperature: Annotated[Optional[float], typer.Option(min=0.0, max=2.0, help="Judge sampling temperature (default 0.7).", show_default=False)] = None,
    concurrency: Annotated[Optional[int], typer.Option(min=1, max=4096, help=CONCURRENCY_HELP)] = None,
    timeout: Annotated[Optional[float], typer.Option(min=0.1, help="Seconds per judge call (default 60).", show_default=False)] = None,
    deadline: Annotated[Optional[float], typer.Option(min=0.1, help="Seconds per item, retries included (default 300).", show_default=False)] = None,
    cache: Annotated[Optional[str], typer.Option(help="Cache: SQLAlchemy URL, SQLite path, or 'none'. Default: RUBRICGATE_CACHE or the user cache dir.")] = None,
    rubric_dir: Annotated[Optional[list[Path]], typer.Option(help="Extra folder of rubric files (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON on stdout; progress and tables go to stderr.")] = False,
) -> None:
    """Score responses against a rubric with an LLM judge; rewards in [0, 1], or null with a reason."""
    with handle_errors():
        items = _items(input, prompt, response, reference)
        settings = Settings.load()
        config = settings.gateway_config(
            judge=judge, judge_base_url=judge_base_url, judge_api_key=settings.secret(judge_api_key_env),
            votes=votes, concurrency=concurrency, temperature=temperature, timeout_s=timeout, deadline_s=deadline,
            cache=cache, rubric_dirs=rubric_dir or (), fallback_judge=fallback_judge,
            fallback_judge_base_url=fallback_judge_base_url,
            fallback_judge_api_key=settings.secret(fallback_judge_api_key_env), guard_judge=guard_judge)
        started = time.perf_counter()
        if combine not in ("and", "weighted"):
            raise UsageError(f"--combine must be 'and' or 'weighted', got {combine!r}")
        if rubric_weight and len(rubric_weight) != len(rubric or []):
            raise UsageError(f"--rubric-weight given {len(rubric_weight)} times for {len(rubric or [])} --rubric")
        results, counters, judge_requests = asyncio.run(_run(config, items, rubric or [], combine, rubric_weight))
        wall_s = time.perf_counter() - started
        if output is not None:
            _write_jsonl(output, results)
        if as_json:
            payload = [r.model_dump(mode="json") for r in results]
            out_console.print_json(json.dumps(payload[0] if prompt is not None else payload))
        else:
            out_console.print(_results_table(results))
        err_console.print(_summary_table(results, counters, wall_s, output, judge_requests))
        unscorable = [r for r in results if r.reward is None]
        if unscorable:
            err_console.print(f"[yellow]{len(unscorable)} item(s) unscorable[/]; first reason: {unscorable[0].reason}",
                              highlight=False)
        raise typer.Exit(EXIT_UNSCORABLE if unscorable else EXIT_OK)


async def _run(config: GatewayConfig, items: list[Item], rubrics: list[str], combine: str,
               weights: list[float] | None) -> tuple[list[RewardResult], CacheCounters | None, int]:
    async with Gateway.open(config) as gateway:
        with Progress(TextColumn("[bold]scoring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err_console, transient=True) as progress:
            task = progress.add_task("score", total=len(items))
            if len(rubrics) > 1:
                how: Literal["and", "weighted"] = "and" if combine == "and" else "weighted"
                results = await gateway.score_combined(items, rubrics, how, weights)
                progress.update(task, completed=len(items))
            else:
                results = await gateway.score(items, rubrics[0] if rubrics else None,
                                              on_result=lambda *_: progress.advance(task))
        return results, gateway.cached.counters if gateway.cached else None, gateway.judge_requests


def _items(input: Path | None, prompt: str | None, response: str | None, reference: str | None) -> list[Item]:
    if input is not None and (prompt is not None or response is not None):
        raise UsageError("pass either --input FILE or --prompt/--response, not both")
    if input is not None:
        return read_items(input)
    if prompt is None or response is None:
        raise UsageError("nothing to score: pass --input FILE.jsonl, or both --prompt and --response")
    return [Item(id="1", prompt=prompt, response=response, reference=reference)]


def _write_jsonl(path: Path, results: list[RewardResult]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as out:
            for result in results:
                out.write(result.model_dump_json() + "\n")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None


_TABLE_ROWS = 50


def _results_table(results: list[RewardResult]) -> Table:
    hidden = len(results) - _TABLE_ROWS
    table = Table(title="rewards", caption=f"... and {hidden} more (see --output)" if hidden > 0 else None)
    for column in ("id", "reward", "agreement", "flags", "cached"):
        table.add_column(column)
    for r in results[:_TABLE_ROWS]:
        reward = f"{r.reward:.3f}" if r.reward is not None else f"[red]null[/] ({(r.reason or '')[:60]})"
        table.add_row(r.id or "", reward, f"{r.agreement:.2f}" if r.agreement is not None else "-",
                      ", ".join(r.flags), "yes" if r.cached else "no")
    return table


def _summary_table(results: list[RewardResult], counters: CacheCounters | None, wall_s: float,
                   output: Path | None, judge_requests: int) -> Table:
    scored = [r.reward for r in results if r.reward is not None]
    # Without a cache every vote reached the judge; with one, only the misses did.
    spent = counters.tokens_spent if counters else sum((r.tokens for r in results), TokenUsage())
    hits = counters.hits + counters.coalesced if counters else 0
    table = Table(title="summary", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    rows = [
        ("items", str(len(results))),
        ("mean reward", f"{sum(scored) / len(scored):.3f}" if scored else "-"),
        ("unscorable", str(len(results) - len(scored))),
        ("cache hits (votes)", str(hits) if counters else "cache off"),
        *([("cache errors (judged uncached)", str(counters.errors))] if counters and counters.errors else []),
        # Every request sent to a judge, retries included (a vote's `judge_calls` counts it once).
        ("judge calls (retries included)", str(judge_requests)),
        ("judge tokens spent (prompt + completion)", f"{spent.prompt} + {spent.completion}"),
        ("wall time", f"{wall_s:.2f} s"),
        ("judge", results[0].judge if results else "-"),
        ("rubric", results[0].rubric if results else "-"),
    ]
    if output is not None:
        rows.append(("output", str(output)))
    for row in rows:
        table.add_row(*row)
    return table
