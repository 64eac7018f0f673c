"""`rubricgate rubric new | contrast | diff`: author rubrics from principles or preference pairs."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from pydantic import ValidationError
from rich.table import Table

from rubricgate.authoring.consistency import ConsistencyFilter
from rubricgate.authoring.contrast import (
    ContrastReport, InstanceOutcome, contrast_rubrics, distill_rubrics, rubric_id_for,
)
from rubricgate.authoring.diff import RubricDiff, diff_rubrics
from rubricgate.authoring.generate import AuthoredRubric, generate_rubric
from rubricgate.authoring.source import RankedPrompt
from rubricgate.authoring.writer import TEMPLATE_WRITER, open_writer
from rubricgate.errors import UsageError
from rubricgate.interfaces.cli.common import (
    EXIT_OK, EXIT_UNSCORABLE, JudgeKeyOption, JudgeUrlOption, KEY_ENV_HELP, err_console, handle_errors,
    out_console, print_diff, rubric_dirs_from,
)
from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.interfaces.settings import NO_CACHE, Settings
from rubricgate.library.jsonl import read_jsonl_objects
from rubricgate.library.rubric_files import describe_validation_error, resolve_rubric, write_rubric_file
from rubricgate.models.config import BackendConfig

GeneratorOption = Annotated[Optional[str], typer.Option(
    "--generator",
    help="What writes the rubric: a model spec that writes text (openai:MODEL, litellm:PROVIDER/MODEL, vllm:...), "
         "llamacpp:default (offline: templates + the embedded model choosing weights and wordings) or 'template' "
         "(no model). Default: RUBRICGATE_GENERATOR, else the judge.")]
GeneratorUrlOption = Annotated[Optional[str], typer.Option(
    help="Base URL of an OpenAI-compatible generator server (default: RUBRICGATE_GENERATOR_BASE_URL).")]
GeneratorKeyOption = Annotated[Optional[str], typer.Option(help=KEY_ENV_HELP.format(what="generator", var="GENERATOR"))]


def new(
    principle: Annotated[list[str], typer.Option("--principle", "-p", help="A principle, e.g. 'Be concise' (repeatable).")],
    name: Annotated[str, typer.Option("--name", "-n", help="Rubric id: a lower-case slug such as safe-concise.")],
    examples: Annotated[Optional[Path], typer.Option(help="Example prompts of the task family: JSONL with a 'prompt' per line, or one prompt per line.")] = None,
    description: Annotated[Optional[str], typer.Option(help="What the rubric is for (default: from the principles).")] = None,
    generator: GeneratorOption = None,
    generator_base_url: GeneratorUrlOption = None,
    generator_api_key_env: GeneratorKeyOption = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="File (.yaml/.json) or folder to write; default ./NAME.yaml.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    attempts: Annotated[int, typer.Option(min=1, max=10, help="Generator replies per rubric when its output is unusable (the problem is fed back).")] = 3,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per generator call.")] = 120.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rubric as JSON on stdout; the explanation goes to stderr.")] = False,
) -> None:
    """Write a rubric from natural-language principles.

    Hard rules (with deterministic checks where a rule is mechanically checkable) and principles,
    each phrased "The response ...", with pass/fail descriptors and weights.
    """
    with handle_errors():
        path = _target(out, name, force)
        prompts = _read_examples(examples) if examples else []
        settings = Settings.load()
        spec, backend = _generator(settings, generator, generator_base_url, generator_api_key_env, timeout,
                                   settings.judge)
        config = settings.gateway_config(judge=None if spec == TEMPLATE_WRITER else spec, timeout_s=timeout,
                                         cache=NO_CACHE)
        authored = asyncio.run(_new(principle, name, prompts, description, spec, backend, config, attempts))
        write_rubric_file(authored.rubric, path)
        console = err_console if as_json else out_console
        _explain_new(console, authored, path, spec)
        if as_json:
            out_console.print_json(authored.rubric.model_dump_json(by_alias=True, exclude_defaults=True))


def _generator(settings: Settings, generator: str | None, base_url: str | None, key_env: str | None,
               timeout: float, judge: str) -> tuple[str, BackendConfig | None]:
    """The generator spec and its connection: flags, else RUBRICGATE_GENERATOR*, else the judge
    `judge` (None: the judge's own connection, so the same model is shared, not loaded twice)."""
    spec = generator or settings.generator or judge
    url = base_url or settings.generator_base_url
    key = settings.secret(key_env) or settings.generator_api_key
    if spec == judge and url is None and key is None:
        return spec, None
    return spec, settings.backend(url, key, timeout)


async def _new(principles: list[str], name: str, examples: list[str], description: str | None, spec: str,
               generator: BackendConfig | None, config: GatewayConfig, attempts: int) -> AuthoredRubric:
    if spec == TEMPLATE_WRITER:
        return await generate_rubric(principles, name, open_writer(), examples=examples, description=description)
    async with Gateway.open(config) as gateway:
        writer = open_writer(gateway.judge(spec, generator, free_text=True), parse_attempts=attempts)
        try:
            return await generate_rubric(principles, name, writer, examples=examples, description=description)
        finally:
            await writer.aclose()


def contrast(
    pairs_file: Annotated[Path, typer.Argument(metavar="PAIRS.jsonl", help="JSONL: {id, prompt, chosen, rejected} per line, or with --listwise {id, prompt, responses: [best, ..., worst]}.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the kept instance rubrics (rejected drafts go to OUT/rejected/).")] = Path("rubrics/generated"),
    listwise: Annotated[bool, typer.Option("--listwise", help="Accept ranked lists, and group pair lines that share a prompt into one ranking.")] = False,
    tries: Annotated[int, typer.Option(min=1, max=20, help="Drafts per prompt at most: a rubric the filter rejects is resampled.")] = 3,
    threshold: Annotated[float, typer.Option(min=0.01, max=1.0, help="Listwise: share of induced pairs the rubric must reproduce (a single pair must always be reproduced).")] = 0.75,
    distill: Annotated[Optional[str], typer.Option("--distill", help="Also merge the kept rubrics into one general rubric with this id.")] = None,
    judge: Annotated[Optional[str], typer.Option(help="Judge of the consistency filter, kind:model (default: RUBRICGATE_JUDGE, else llamacpp:default).", show_default=False)] = None,
    judge_base_url: JudgeUrlOption = None,
    judge_api_key_env: JudgeKeyOption = None,
    generator: GeneratorOption = None,
    generator_base_url: GeneratorUrlOption = None,
    generator_api_key_env: GeneratorKeyOption = None,
    filter_mode: Annotated[str, typer.Option("--filter", help="pairwise (both responses side by side, in both orders) or pointwise (each scored alone).")] = "pairwise",
    votes: Annotated[int, typer.Option(min=1, max=64, help="Judge votes per filter judgment.")] = 1,
    temperature: Annotated[Optional[float], typer.Option(min=0.0, max=2.0, help="Judge temperature (default 0 with one vote, else 0.7).")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Only the first N prompts.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Prompts in flight.")] = 4,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per judge or generator call.")] = 120.0,
    cache: Annotated[Optional[str], typer.Option(help="Judgment cache: SQLAlchemy URL, SQLite path, or 'none'.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing rubric files in OUT.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout; progress goes to stderr.")] = False,
) -> None:
    """Generate instance rubrics from preference pairs and keep those the judge agrees with.

    Per prompt: hard rules from the request, principles from why the chosen response wins. A rubric
    is kept only if the judge, using it, prefers the chosen response in both presentation orders
    (listwise: at least --threshold of the induced pairs); otherwise it is resampled up to --tries times.
    """
    with handle_errors():
        if filter_mode not in ("pairwise", "pointwise"):
            raise UsageError(f"--filter {filter_mode!r}: choose pairwise or pointwise")
        items = read_ranked_prompts(pairs_file, listwise)[:limit]
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {out} is a file; pass a folder")
        if distill is not None:
            _check_id(distill)
        settings = Settings.load()
        config = settings.gateway_config(
            judge=judge, judge_base_url=judge_base_url, judge_api_key=settings.secret(judge_api_key_env),
            votes=votes, temperature=temperature if temperature is not None else (0.0 if votes == 1 else None),
            timeout_s=timeout, deadline_s=max(settings.deadline_s, 4 * timeout), cache=cache)
        spec, generator_config = _generator(settings, generator, generator_base_url, generator_api_key_env, timeout,
                                            config.judge)
        console = err_console if as_json else out_console
        started = time.perf_counter()
        if distill is not None:
            _free(out / f"{distill}.yaml", force)
        for item_id in {rubric_id_for(item.id) for item in items}:  # fail now, not after an hour of judging
            for folder in (out, out / "rejected"):
                _free(folder / f"{item_id}.yaml", force)
        report, distilled, calls = asyncio.run(_contrast(items, config, spec, generator_config, filter_mode, tries,
                                                         threshold, distill, concurrency, console))
        written = _write_outcomes(report, out, force)
        if distilled is not None:
            written.append(write_rubric_file(distilled.rubric, out / f"{distilled.rubric.id}.yaml"))
        _explain_contrast(console, report, distilled, out, calls, time.perf_counter() - started)
        if as_json:
            out_console.print_json(json.dumps(_report_json(report, distilled, written)))
        if report.outcomes and not report.kept and all(o.reason.startswith("unscorable") for o in report.rejected):
            err_console.print("[yellow]no prompt could be judged[/]: check the judge (rubricgate judges check SPEC)")
            raise typer.Exit(EXIT_UNSCORABLE)
        if distill is not None and distilled is None:
            err_console.print("[bold red]error:[/] --distill: no instance rubric passed the filter, so there is "
                              "nothing to distill; see the rejected drafts, or try more --tries or another judge",
                              highlight=False)
            raise typer.Exit(EXIT_UNSCORABLE)
        raise typer.Exit(EXIT_OK)


async def _contrast(items: list[RankedPrompt], config: GatewayConfig, spec: str, generator_config: BackendConfig | None,
                    mode: str, tries: int, threshold: float, distill: str | None, concurrency: int,
                    console: Any) -> tuple[ContrastReport, AuthoredRubric | None, str]:
    async with Gateway.open(config) as gateway:
        writer = open_writer(None if spec == TEMPLATE_WRITER else gateway.judge(spec, generator_config, free_text=True))
        try:
            scorer = gateway.pairwise_scorer() if mode == "pairwise" else gateway.scorer()
            consistency = ConsistencyFilter(scorer, threshold=threshold)
            done = [0]

            def progress(outcome: InstanceOutcome) -> None:
                done[0] += 1
                mark = "[green]kept[/]" if outcome.kept else "[red]rejected[/]"
                accuracy = "-" if outcome.accuracy is None else f"{outcome.accuracy:.2f}"
                console.print(f"[{done[0]}/{len(items)}] {mark} {outcome.id}: try {len(outcome.attempts)}/{tries}, "
                              f"filter accuracy {accuracy}; {outcome.reason}", highlight=False)

            report = await contrast_rubrics(items, writer, consistency, tries=tries, judge=gateway.backend.name,
                                            concurrency=concurrency, on_outcome=progress)
            distilled = None
            kept = [o.rubric for o in report.kept if o.rubric is not None]
            if distill is not None and kept:
                distilled = await distill_rubrics(kept, distill, writer)
            counters = gateway.counters
            calls = (f"{counters.misses} judge calls, {counters.hits} cache hits" if gateway.cached is not None
                     else "cache off")
            return report, distilled, calls
        finally:
            await writer.aclose()


def diff(
    a: Annotated[str, typer.Argument(help="Rubric id or file path (before).")],
    b: Annotated[str, typer.Argument(help="Rubric id or file path (after).")],
    rubric_dir: Annotated[Optional[list[Path]], typer.Option(help="Extra folder of rubric files (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the diff as JSON.")] = False,
) -> None:
    """What changed between two rubrics: versions, fields, criteria added, removed or changed."""
    with handle_errors():
        dirs = rubric_dirs_from(rubric_dir)
        result = diff_rubrics(resolve_rubric(a, dirs), resolve_rubric(b, dirs))
        if as_json:
            out_console.print_json(result.model_dump_json())
        else:
            _print_diff(result)


def read_ranked_prompts(path: Path, listwise: bool) -> list[RankedPrompt]:
    """Pairs (`chosen`/`rejected`) or, with `listwise`, ranked lists (`responses`, best first, with optional
    `ranks` or `scores`); with `listwise`, pair lines sharing a prompt become one ranking."""
    needs = "'prompt' and either 'chosen'/'rejected' or 'responses'"
    items: list[RankedPrompt] = []
    grouped: dict[str, int] = {}
    for number, data in read_jsonl_objects(path, "pair file", needs):
        where = f"{path}:{number}"
        if "prompt" not in data:
            raise UsageError(f"{where}: each line needs {needs}")
        item_id = str(data.get("id", number))
        try:
            if "responses" in data:
                if not listwise:
                    raise UsageError(f"{where}: a ranked 'responses' list needs --listwise")
                item = _ranked_line(item_id, data, where)
            elif "chosen" in data and "rejected" in data:
                chosen, rejected = _texts(data["chosen"], where), _texts(data["rejected"], where)
                if (len(chosen) > 1 or len(rejected) > 1) and not listwise:
                    raise UsageError(f"{where}: lists of chosen/rejected responses need --listwise")
                item = RankedPrompt(id=item_id, prompt=data["prompt"], responses=(*chosen, *rejected),
                                    ranks=(0,) * len(chosen) + (1,) * len(rejected), category=data.get("category"))
            else:
                raise UsageError(f"{where}: needs 'chosen' and 'rejected' (or 'responses' with --listwise)")
        except ValidationError as exc:
            raise UsageError(f"{where}: {describe_validation_error(exc, data)}") from None
        key = json.dumps(data["prompt"], sort_keys=True)
        if listwise and "responses" not in data and key in grouped:
            items[grouped[key]] = _merge(items[grouped[key]], item)
            continue
        grouped.setdefault(key, len(items))
        items.append(item)
    if not items:
        raise UsageError(f"pair file {path} has no pairs; each line needs prompt, chosen and rejected")
    return items


def _ranked_line(item_id: str, data: dict[str, Any], where: str) -> RankedPrompt:
    responses = _texts(data["responses"], where)
    if isinstance(data.get("ranks"), list):
        ranks = tuple(int(r) for r in data["ranks"])
    elif isinstance(data.get("scores"), list):  # higher score = better
        order = sorted(set(float(s) for s in data["scores"]), reverse=True)
        ranks = tuple(order.index(float(s)) for s in data["scores"])
    else:
        ranks = tuple(range(len(responses)))
    return RankedPrompt(id=item_id, prompt=data["prompt"], responses=tuple(responses), ranks=ranks,
                        category=data.get("category"))


def _texts(value: Any, where: str) -> list[str]:
    values = value if isinstance(value, list) else [value]
    out = []
    for entry in values:
        if isinstance(entry, dict):
            entry = entry.get("text", entry.get("response", entry.get("content")))
        if not isinstance(entry, str):
            raise UsageError(f"{where}: responses must be strings (or objects with 'text')")
        out.append(entry)
    if not out:
        raise UsageError(f"{where}: empty list of responses")
    return out


def _merge(a: RankedPrompt, b: RankedPrompt) -> RankedPrompt:
    """Two pair lines about one prompt: every chosen response above every rejected one."""
    responses = list(a.responses)
    ranks = list(a.ranks)
    for response, rank in zip(b.responses, b.ranks, strict=True):
        if response in responses:
            ranks[responses.index(response)] = min(ranks[responses.index(response)], rank)
        else:
            responses.append(response)
            ranks.append(rank)
    return RankedPrompt(id=a.id, prompt=a.prompt, responses=tuple(responses), ranks=tuple(ranks), category=a.category)


def _read_examples(path: Path) -> list[str]:
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (FileNotFoundError, IsADirectoryError):
        raise UsageError(f"examples file {path} does not exist") from None
    prompts = []
    for number, line in enumerate(lines, start=1):
        if line.lstrip().startswith("{"):
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            prompt = data.get("prompt") if isinstance(data, dict) else None
            if isinstance(prompt, list):
                prompt = "\n\n".join(str(m.get("content", "")) for m in prompt if isinstance(m, dict))
            if not isinstance(prompt, str):
                raise UsageError(f"{path}:{number}: each JSON line needs a 'prompt'")
            prompts.append(prompt)
        else:
            prompts.append(line.strip())
    return prompts


def _check_id(name: str) -> None:
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,63}", name):
        raise UsageError(f"rubric id {name!r}: use a lower-case slug such as safe-concise")


def _target(out: Path | None, name: str, force: bool) -> Path:
    _check_id(name)
    path = out or Path(f"{name}.yaml")
    if path.is_dir() or (out is not None and not path.suffix):
        path = path / f"{name}.yaml"
    if path.suffix not in (".yaml", ".yml", ".json"):
        raise UsageError(f"--out {path}: want a .yaml, .yml or .json file, or a folder")
    return _free(path, force)


def _free(path: Path, force: bool) -> Path:
    if path.exists() and not force:
        raise UsageError(f"{path} exists; pass --force to overwrite it or choose another --out")
    return path


def _write_outcomes(report: ContrastReport, out: Path, force: bool) -> list[Path]:
    written = []
    for outcome in report.outcomes:
        if outcome.rubric is None:
            continue
        folder, other = (out, out / "rejected") if outcome.kept else (out / "rejected", out)
        (other / f"{outcome.rubric.id}.yaml").unlink(missing_ok=True)  # from an earlier run (checked up front)
        written.append(write_rubric_file(outcome.rubric, folder / f"{outcome.rubric.id}.yaml"))
    return written


def _explain_new(console: Any, authored: AuthoredRubric, path: Path, spec: str) -> None:
    rubric = authored.rubric
    hard = [c for c in rubric.criteria if c.kind == "hard_rule"]
    checked = [c for c in hard if c.check is not None]
    console.print(f"[green]wrote[/] {path}: [bold]{rubric.ref}[/] with {len(rubric.criteria)} criteria "
                  f"({len(hard)} hard rules, {len(checked)} with deterministic checks; "
                  f"{len(rubric.criteria) - len(hard)} principles), written by {rubric.metadata.get('generator', spec)}",
                  highlight=False)
    table = Table(title=f"{rubric.id}: {rubric.description}", title_justify="left")
    for column in ("id", "kind", "weight", "decided by", "criterion"):
        table.add_column(column, overflow="fold")
    for c in rubric.criteria:
        decided = f"check: {c.check.type}" if c.check else ("judge: pass/fail" if c.kind == "hard_rule"
                                                            else f"judge: 1-{rubric.scale.points}")
        table.add_row(c.id, c.kind, f"{c.weight:g}", decided, c.text)
    console.print(table)
    for note in authored.notes:
        console.print(f"  - {note}", highlight=False, markup=False)
    console.print(f"Score with it: rubricgate score --rubric {path} --input items.jsonl", highlight=False)


def _explain_contrast(console: Any, report: ContrastReport, distilled: AuthoredRubric | None, out: Path, calls: str,
                      wall_s: float) -> None:
    table = Table(title=f"contrastive generation: {len(report.outcomes)} prompts, filter {report.mode} "
                        f"by {report.judge}, writer {report.writer}", title_justify="left")
    for column in ("kept", "rejected", "mean tries", "mean filter accuracy (kept)", "judge", "wall"):
        table.add_column(column)
    accuracies = [o.accuracy for o in report.kept if o.accuracy is not None]
    table.add_row(str(len(report.kept)), str(len(report.rejected)), f"{report.mean_attempts():.2f}",
                  f"{sum(accuracies) / len(accuracies):.2f}" if accuracies else "-", calls, f"{wall_s:.1f}s")
    console.print(table)
    for reason, count in report.rejection_reasons().most_common():
        console.print(f"  rejected ({count}): {reason}", highlight=False, markup=False)
    console.print(f"kept rubrics in {out}/" + (f", rejected drafts in {out}/rejected/" if report.rejected else ""),
                  highlight=False)
    flips = sum(1 for o in report.rejected if o.reason.startswith("flips"))
    if report.mode == "pairwise" and flips * 2 > len(report.outcomes):
        console.print(f"[yellow]hint:[/] {flips} of {len(report.outcomes)} prompts were rejected because the judge's "
                      "verdict follows the presentation position, not the content. Small judges such as "
                      "llamacpp:default do this; use a stronger --judge, or --filter pointwise.", highlight=False)
    if distilled is not None:
        rubric = distilled.rubric
        console.print(f"[green]distilled[/] {len(report.kept)} kept rubrics into [bold]{rubric.ref}[/] "
                      f"({len(rubric.criteria)} criteria): {out / (rubric.id + '.yaml')}", highlight=False)
        for note in distilled.notes:
            console.print(f"  - {note}", highlight=False, markup=False)


def _report_json(report: ContrastReport, distilled: AuthoredRubric | None, written: Sequence[Path]) -> dict[str, Any]:
    return {
        "prompts": len(report.outcomes), "kept": len(report.kept), "rejected": len(report.rejected),
        "judge": report.judge, "writer": report.writer, "mode": report.mode, "tries": report.tries,
        "threshold": report.threshold, "rejection_reasons": dict(report.rejection_reasons()),
        "outcomes": [{"id": o.id, "kept": o.kept, "rubric": o.rubric.ref if o.rubric else None,
                      "accuracy": o.accuracy, "tries": len(o.attempts), "reason": o.reason,
                      "attempts": [{"number": a.number, "rubric": a.rubric.ref if a.rubric else None,
                                    "accuracy": a.filter.accuracy if a.filter else None, "reason": a.reason}
                                   for a in o.attempts]} for o in report.outcomes],
        "distilled": distilled.rubric.ref if distilled else None,
        "files": [str(p) for p in written],
    }


def _print_diff(result: RubricDiff) -> None:
    same = "same version" if result.same_version else "different versions"
    out_console.print(f"[bold]{result.a}[/] -> [bold]{result.b}[/] ({same})", highlight=False)
    if result.empty:
        out_console.print("no differences")
        return
    print_diff(out_console, result)
    for change in result.metadata:
        out_console.print(f"  metadata {change.field}: {change.before!r} -> {change.after!r} (does not change the "
                          "version)", highlight=False, markup=False)
