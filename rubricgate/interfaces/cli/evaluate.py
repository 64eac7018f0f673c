"""`rubricgate eval`: how often a judge protocol agrees with labelled preference pairs, and its cost."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Optional, get_args

import typer
from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from rubricgate.errors import UsageError
from rubricgate.interfaces.cli.common import (
    CONCURRENCY_HELP, EXIT_OK, EXIT_UNSCORABLE, JudgeKeyOption, JudgeOption, JudgeUrlOption,
    err_console, handle_errors, out_console,
)
from rubricgate.interfaces.evaluation import compare_variants, evaluate, main_variant, read_pairs, select_pairs
from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.interfaces.settings import EVAL_DEADLINE_S, Settings
from rubricgate.library.rubric_files import resolve_rubric
from rubricgate.models.preference import EvalReport, EvalVariant, Mode, PreferencePair, ScoreKind, VariantReport
from rubricgate.models.rubric import Rubric


def eval_pairs(
    pairs_file: Annotated[Path, typer.Argument(metavar="PAIRS.jsonl", help="JSONL of {id, prompt, chosen, rejected, category?}.")],
    rubric: Annotated[Optional[str], typer.Option("--rubric", "-r", help="Rubric id or file path.")] = None,
    judge: JudgeOption = None,
    judge_base_url: JudgeUrlOption = None,
    judge_api_key_env: JudgeKeyOption = None,
    votes: Annotated[Optional[int], typer.Option(min=1, max=64, help="Self-consistency votes per judgment (default: RUBRICGATE_VOTES, else 3).", show_default=False)] = None,
    mode: Annotated[str, typer.Option(help="pointwise (each response scored alone) or pairwise (side by side, both orders).")] = "pointwise",
    scores: Annotated[str, typer.Option(help="expected (label probabilities where the judge gives them) or sampled (vote labels).")] = "expected",
    compare: Annotated[bool, typer.Option("--compare", help="Run protocol variants side by side: rubric vs plain prompt, votes 1 vs k, expected vs sampled, pairwise vs pointwise.")] = False,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Evaluate a seeded random sample of N pairs.")] = None,
    seed: Annotated[int, typer.Option(help="Seeds the sample, the presentation order and the bootstrap.")] = 0,
    resamples: Annotated[int, typer.Option(min=100, max=100_000, help="Bootstrap resamples for the 95% intervals.")] = 2000,
    temperature: Annotated[Optional[float], typer.Option(min=0.0, max=2.0, help="Judge sampling temperature (default 0.7).", show_default=False)] = None,
    concurrency: Annotated[Optional[int], typer.Option(min=1, max=4096, help=CONCURRENCY_HELP)] = None,
    timeout: Annotated[Optional[float], typer.Option(min=0.1, help="Seconds per judge call (default 60).", show_default=False)] = None,
    deadline: Annotated[float, typer.Option(min=0.1, help="Seconds per judgment, retries included (offline: generous).")] = EVAL_DEADLINE_S,
    cache: Annotated[Optional[str], typer.Option(help="Cache: SQLAlchemy URL, SQLite path, or 'none'. Default: RUBRICGATE_CACHE or the user cache dir.")] = None,
    rubric_dir: Annotated[Optional[list[Path]], typer.Option(help="Extra folder of rubric files (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON document on stdout; progress and tables go to stderr.")] = False,
) -> None:
    """Measure a judge on preference pairs: accuracy (95% bootstrap CI), per category, ties,
    position bias, self-consistency, unscorable pairs, judge calls, tokens and wall time."""
    with handle_errors():
        if rubric is None:
            raise UsageError("pass --rubric NAME|PATH (e.g. --rubric helpfulness); `rubricgate rubric list` shows names")
        chosen_mode: Mode = _choice("--mode", mode, get_args(Mode))  # type: ignore[assignment]
        chosen_scores: ScoreKind = _choice("--scores", scores, get_args(ScoreKind))  # type: ignore[assignment]
        pairs = select_pairs(read_pairs(pairs_file), limit, seed)
        settings = Settings.load()
        config = settings.gateway_config(
            judge=judge, judge_base_url=judge_base_url, judge_api_key=settings.secret(judge_api_key_env),
            votes=votes, concurrency=concurrency, temperature=temperature, timeout_s=timeout, deadline_s=deadline,
            cache=cache, rubric_dirs=rubric_dir or ())
        k = config.scoring.votes
        variants = compare_variants(k, chosen_mode) if compare else [main_variant(chosen_mode, k, chosen_scores)]
        resolved = resolve_rubric(rubric, config.rubric_dirs)  # a bad name fails before any judge loads
        report = asyncio.run(_run(config, pairs, resolved, variants, seed, resamples, str(pairs_file)))
        if as_json:
            out_console.print_json(report.model_dump_json())
        console = err_console if as_json else out_console
        console.print(_variants_table(report))
        if any(v.by_category for v in report.variants):
            console.print(_category_table(report))
        console.print(_cost_table(report))
        unscorable = [v for v in report.variants if v.unscorable]
        for v in unscorable:
            err_console.print(f"[yellow]{v.unscorable} of {v.pairs} pair(s) unscorable[/] in {v.name}; first reason: "
                              f"{v.unscorable_reason}", highlight=False)
        raise typer.Exit(EXIT_UNSCORABLE if unscorable else EXIT_OK)


async def _run(config: GatewayConfig, pairs: list[PreferencePair], rubric: Rubric, variants: list[EvalVariant],
               seed: int, resamples: int, pairs_file: str) -> EvalReport:
    async with Gateway.open(config) as gateway:
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err_console, transient=True) as progress:
            tasks: dict[EvalVariant, TaskID] = {
                v: progress.add_task(v.name, total=2 * len(pairs)) for v in variants}
            return await evaluate(gateway, pairs, rubric, variants, seed=seed, resamples=resamples,
                                  pairs_file=pairs_file, progress=lambda v, n: progress.advance(tasks[v], n))


def _choice(flag: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise UsageError(f"{flag} {value!r}: choose one of {', '.join(allowed)}")
    return value


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ci(ci: tuple[float, float] | None) -> str:
    return "-" if ci is None else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def _label(v: VariantReport) -> str:
    """`pairwise rubric 3v sampled`; `expected*` when the judge gave no label probabilities."""
    scores = v.variant.scores + ("*" if v.variant.scores == "expected" and not v.label_probs else "")
    return f"{v.variant.mode} {v.variant.prompt} {v.variant.votes}v {scores}"



def _variants_table(report: EvalReport) -> Table:
    level = f"{report.confidence:.0%}"
    caption = (f"acc: accuracy (tie = 0.5) with its {level} percentile bootstrap CI ({report.resamples} resamples, "
               f"seed {report.seed}); bias: share of pairs whose winner flips when the order swaps; 1st: share of "
               "decided orders won by the first-shown response; 1-ord: accuracy from one order only; agree: "
               "self-consistency; unsc: unscorable pairs"
               + ("; * no label probabilities: sampled labels" if any(
                   v.variant.scores == "expected" and not v.label_probs for v in report.variants) else ""))
    table = Table(title=f"eval: {report.pairs} pairs, judge {report.judge}, rubric {report.rubric}",
                  caption=caption, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    for column in ("variant", "acc", f"{level} CI", "ties", "bias", "1st", "1-ord", "agree", "unsc"):
        table.add_column(column, justify="left" if column == "variant" else "right", no_wrap=column != "variant")
    for v in report.variants:
        table.add_row(_label(v), _num(v.accuracy), _ci(v.ci), _num(v.tie_rate, 2), _num(v.position_bias_rate, 2),
                      _num(v.first_position_rate, 2), _num(v.accuracy_one_order), _num(v.agreement, 2),
                      str(v.unscorable))
    return table


def _cost_table(report: EvalReport) -> Table:
    table = Table(title="cost", caption="calls: what the protocol needs alone; run: calls made now (the rest were "
                  "shared through the cache)", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    for column in ("variant", "judge calls", "run", "tokens", "tokens/pair", "wall"):
        table.add_column(column, justify="left" if column == "variant" else "right", no_wrap=column != "variant")
    for v in report.variants:
        table.add_row(_label(v), str(v.judge_calls), str(v.judge_calls_run), f"{v.tokens.total:,}",
                      f"{v.tokens.total / max(v.pairs, 1):,.0f}", f"{v.wall_s:.1f} s")
    return table


def _category_table(report: EvalReport) -> Table:
    categories = sorted({c for v in report.variants for c in v.by_category})
    table = Table(title=f"accuracy by category [{report.confidence:.0%} CI]", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    table.add_column("variant")
    for category in categories:
        count = next(v.by_category[category].pairs for v in report.variants if category in v.by_category)
        table.add_column(f"{category} ({count})", justify="right", no_wrap=True)
    for v in report.variants:
        cells = []
        for category in categories:
            stats = v.by_category.get(category)
            cells.append("-" if stats is None else f"{_num(stats.accuracy)} {_ci(stats.ci)}")
        table.add_row(_label(v), *cells)
    return table
