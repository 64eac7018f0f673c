"""`rubricgate refine` (offline refinement), `rubricgate rubric history | rollback`, and the
`serve --refine-*` options turned into `RefineSettings`."""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from rubricgate.authoring.diff import diff_rubrics
from rubricgate.authoring.refinement import (
    TEMPLATE_META_JUDGE, GateConfig, GateReport, RefineConfig, RefinementOutcome, open_meta_judge, refine_rubric,
    scored_samples,
)
from rubricgate.cache.versions import LIVE_EVENTS, RubricVersionStore, VersionEvent
from rubricgate.errors import UsageError
from rubricgate.interfaces.cli.common import (
    CONCURRENCY_HELP, EXIT_OK, EXIT_UNSCORABLE, JudgeKeyOption, JudgeUrlOption, KEY_ENV_HELP, cache_url_from,
    err_console, handle_errors, out_console, print_diff, read_items, rubric_dirs_from,
)
from rubricgate.interfaces.evaluation import read_pairs
from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.interfaces.online_refinement import TRIGGERS, RefineSettings, TriggerName, outcome_details
from rubricgate.interfaces.settings import AUTHORING_TIMEOUT_S, Settings
from rubricgate.library.probes import Probe, load_probes
from rubricgate.library.rubric_files import resolve_rubric, write_rubric_file
from rubricgate.models.config import BackendConfig
from rubricgate.models.preference import PreferencePair
from rubricgate.models.reward import Item, RewardResult
from rubricgate.models.rubric import Rubric

DirOption = Annotated[Optional[list[Path]], typer.Option(help="Extra folder of rubric files (repeatable).")]
CacheOption = Annotated[Optional[str], typer.Option(help="Cache database holding the versions: SQLAlchemy URL or SQLite path. Default: RUBRICGATE_CACHE or the user cache dir.")]


def refine(
    rubric: Annotated[str, typer.Option("--rubric", "-r", help="Rubric id or file path; its live version is refined.")],
    samples: Annotated[Path, typer.Option(help="JSONL of items (prompt, response, id); reward fields of `rubricgate score --output` merged into a line are used when they name the live version, else the item is scored here (from the cache when `score` already did).")],
    pairs: Annotated[Optional[Path], typer.Option(help="Labelled pairs (JSONL: prompt, chosen, rejected): the new version must rank them at least as well.")] = None,
    probes: Annotated[Optional[list[Path]], typer.Option(help="More exploit probes (JSONL: id, kind, prompt, response), added to the shipped ones (repeatable).")] = None,
    shipped_probes: Annotated[bool, typer.Option("--shipped-probes/--no-shipped-probes", help="Include the shipped probes (rubrics/probes/).")] = True,
    meta_judge: Annotated[Optional[str], typer.Option(help="Meta-judge: a model that writes text (openai:MODEL, litellm:PROVIDER/MODEL, vllm:...), llamacpp:default (offline: detectors + the embedded model weighing the fixes) or 'template' (no model). Default: RUBRICGATE_META_JUDGE, else the judge.")] = None,
    meta_judge_base_url: Annotated[Optional[str], typer.Option(help="Base URL of an OpenAI-compatible meta-judge server (default: RUBRICGATE_META_JUDGE_BASE_URL).")] = None,
    meta_judge_api_key_env: Annotated[Optional[str], typer.Option(help=KEY_ENV_HELP.format(what="meta-judge", var="META_JUDGE"))] = None,
    judge: Annotated[Optional[str], typer.Option(help="Judge that scores samples, pairs and probes, kind:model (default: RUBRICGATE_JUDGE, else llamacpp:default).", show_default=False)] = None,
    judge_base_url: JudgeUrlOption = None,
    judge_api_key_env: JudgeKeyOption = None,
    votes: Annotated[Optional[int], typer.Option(min=1, max=64, help="Judge votes per item (default: RUBRICGATE_VOTES, else 3).", show_default=False)] = None,
    temperature: Annotated[Optional[float], typer.Option(min=0.0, max=2.0, help="Judge sampling temperature (default 0.7).", show_default=False)] = None,
    sample: Annotated[int, typer.Option(min=1, max=500, help="Scored items shown to the meta-judge (evidence first, then top rewards, then a seeded random fill).")] = 20,
    seed: Annotated[int, typer.Option(help="Seeds the sample.")] = 0,
    tolerance: Annotated[float, typer.Option(min=0.0, max=1.0, help="Largest drop in labelled-pair accuracy the gate accepts.")] = 0.02,
    probe_tolerance: Annotated[float, typer.Option(min=0.0, max=1.0, help="Largest rise of any one probe's reward the gate accepts (judge noise); the probes' mean may not rise at all.")] = 0.02,
    concurrency: Annotated[Optional[int], typer.Option(min=1, max=4096, help=CONCURRENCY_HELP)] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per judge or meta-judge call.")] = AUTHORING_TIMEOUT_S,
    cache: CacheOption = None,
    rubric_dir: DirOption = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Also write the accepted version to this file (.yaml/.json).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Run the gate but save nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON on stdout; progress and tables go to stderr.")] = False,
) -> None:
    """Refine a rubric on scored samples: a meta-judge names exploits and ambiguities (with evidence
    ids) and proposes a new version; it is saved only if labelled-pair accuracy holds (within
    --tolerance) and no probe scores higher. Exit 0 when a new version was accepted, 1 when not."""
    with handle_errors():
        settings = Settings.load()
        if settings.cache_url(cache) is None and not dry_run:
            raise UsageError("refine saves versions in the cache database: drop --cache none, or pass --dry-run")
        lines = read_scored(samples)
        pair_list = read_pairs(pairs) if pairs is not None else []
        probe_list = load_probes(probes or [], shipped_probes)
        if not pair_list and not probe_list:
            raise UsageError("nothing to gate on: pass --pairs FILE or keep the shipped probes")
        config = settings.gateway_config(
            judge=judge, judge_base_url=judge_base_url, judge_api_key=settings.secret(judge_api_key_env),
            votes=votes, concurrency=concurrency, temperature=temperature, timeout_s=timeout,
            deadline_s=max(settings.deadline_s, 4 * timeout), cache=cache, rubric_dirs=rubric_dir or ())
        spec, meta_config = meta_judge_settings(settings, config, meta_judge, meta_judge_base_url,
                                                meta_judge_api_key_env)
        refine_config = RefineConfig(sample_size=sample, seed=seed,
                                     gate=GateConfig(accuracy_tolerance=tolerance, probe_tolerance=probe_tolerance))
        console = err_console if as_json else out_console
        started = time.perf_counter()
        run = asyncio.run(_refine(config, rubric, lines, pair_list, probe_list, spec, meta_config, refine_config,
                                  dry_run))
        if out is not None and run.outcome.accepted and run.outcome.proposal is not None:
            write_rubric_file(run.outcome.proposal.rubric, out)
        show_outcome(console, run, time.perf_counter() - started, out)
        if as_json:
            out_console.print_json(json.dumps(run.as_json()))
        raise typer.Exit(EXIT_OK if run.outcome.accepted else EXIT_UNSCORABLE)


class RefineRun:
    """What `rubricgate refine` did, for the terminal and `--json`."""

    def __init__(self, base: Rubric, outcome: RefinementOutcome, samples: int, scored_now: int, saved: bool,
                 dry_run: bool, judge: str) -> None:
        self.base = base
        self.outcome = outcome
        self.samples = samples
        self.scored_now = scored_now
        self.saved = saved
        self.dry_run = dry_run
        self.judge = judge

    def as_json(self) -> dict[str, Any]:
        proposal = self.outcome.proposal
        return {
            "rubric": self.base.ref, "proposed": proposal.rubric.ref if proposal else None,
            "accepted": self.outcome.accepted, "saved": self.saved, "reason": self.outcome.reason,
            "samples": self.samples, "scored_now": self.scored_now, "judge": self.judge,
            **outcome_details(self.outcome, "rubricgate refine"),
            "diff": diff_rubrics(self.base, proposal.rubric).model_dump(mode="json") if proposal else None,
        }


async def _refine(config: GatewayConfig, name: str, lines: list[tuple[Item, RewardResult | None]],
                  pairs: list[PreferencePair], probes: list[Probe], spec: str, meta_config: BackendConfig,
                  refine_config: RefineConfig, dry_run: bool) -> RefineRun:
    async with Gateway.open(config) as gateway:
        base = gateway.rubric(name)
        meta = open_meta_judge(None if spec == TEMPLATE_META_JUDGE else gateway.judge(spec, meta_config, free_text=True))
        try:
            items = [item for item, _ in lines]
            results = [result if result is not None and result.rubric == base.ref else None for _, result in lines]
            missing = [i for i, result in enumerate(results) if result is None]
            if missing:
                with Progress(TextColumn("[bold]scoring samples"), BarColumn(), MofNCompleteColumn(),
                              TimeElapsedColumn(), console=err_console, transient=True) as progress:
                    task = progress.add_task("score", total=len(missing))
                    fresh = await gateway.score([items[i] for i in missing], base,
                                                on_result=lambda *_: progress.advance(task))
                for index, result in zip(missing, fresh, strict=True):
                    results[index] = result
            samples = scored_samples(items, [r for r in results if r is not None])

            async def score(version: Rubric, batch: Any) -> list[RewardResult]:
                return await gateway.score(batch, version)

            err_console.print(f"auditing {base.ref} on {len(samples)} samples with meta-judge {meta.name}; gate: "
                              f"{len(pairs)} labelled pairs, {len(probes)} probes, judge {config.judge}",
                              highlight=False)
            outcome = await refine_rubric(base, samples, meta, score, pairs=pairs, probes=probes, config=refine_config)
            saved = False
            proposal = outcome.proposal
            if not dry_run and gateway.versions is not None and proposal is not None and proposal.changed:
                await gateway.versions.aensure_baseline(base, "the version `rubricgate refine` started from")
                details = outcome_details(outcome, "rubricgate refine")
                if outcome.accepted:
                    saved = await gateway.versions.arecord(proposal.rubric, "refined", outcome.reason,
                                                           parent=base.version, details=details,
                                                           expect_current=base.version)
                else:
                    await gateway.versions.arecord(proposal.rubric, "rejected", outcome.reason, parent=base.version,
                                                   details=details)
            return RefineRun(base, outcome, len(samples), len(missing), saved, dry_run, gateway.backend.name)
        finally:
            await meta.aclose()


def read_scored(path: Path) -> list[tuple[Item, RewardResult | None]]:
    """Items of a samples file, each with the reward fields merged into its line (when present)."""
    if str(path) == "-":
        raise UsageError("--samples needs a file (stdin is not supported here)")
    items = read_items(path)
    raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    out: list[tuple[Item, RewardResult | None]] = []
    for item, data in zip(items, raw, strict=True):
        result = None
        if isinstance(data.get("criteria"), list) and isinstance(data.get("rubric"), str) and "@" in data["rubric"]:
            try:
                result = RewardResult.model_validate({**data, "id": item.id})
            except ValidationError:
                result = None  # not a RewardResult after all: score the item
        out.append((item.model_copy(update={"rubric": None}), result))
    return out


def show_outcome(console: Console, run: RefineRun, wall_s: float, out: Path | None = None) -> None:
    """Findings with evidence, the diff, the gate numbers and the verdict."""
    outcome, proposal = run.outcome, run.outcome.proposal
    console.print(f"[bold]{run.base.ref}[/]: {run.samples} samples ({run.scored_now} scored now), judge {run.judge}"
                  + (f", meta-judge {proposal.meta_judge}" if proposal else ""), highlight=False)
    findings = proposal.findings if proposal else outcome.signals
    if findings:
        table = Table(title="findings", title_justify="left")
        for column in ("kind", "name", "criterion", "evidence", "explanation", "by"):
            table.add_column(column, overflow="fold")
        for f in findings:
            table.add_row(f.kind, f.name, f.criterion or "", ", ".join(f.evidence), f.explanation, f.source)
        console.print(table)
    else:
        console.print("findings: none")
    if proposal is not None:
        console.print(f"[bold]proposal[/] {proposal.base.ref} -> {proposal.rubric.ref}: {proposal.summary}",
                      highlight=False)
        print_diff(console, diff_rubrics(proposal.base, proposal.rubric))
        for edit in proposal.edits:
            if edit.why:
                console.print(f"  why {edit.op} {edit.id}: {edit.why}", highlight=False, markup=False)
        for note in proposal.notes:
            console.print(f"  note: {note}", highlight=False, markup=False)
    if outcome.gate is not None:
        console.print(gate_table(outcome.gate))
    if outcome.accepted and proposal is not None:
        if run.saved:
            where = f"saved as the current version of {run.base.id}"
        elif run.dry_run:
            where = "not saved (--dry-run)"
        else:
            where = "not saved: the current version changed meanwhile"
        console.print(f"[bold green]accepted[/] {proposal.rubric.ref}: {where}" + (f"; written to {out}" if out else ""),
                      highlight=False)
    else:
        console.print(f"[bold red]not accepted[/]: {outcome.reason}", highlight=False)
    console.print(f"({wall_s:.1f} s)", style="dim", highlight=False)


def gate_table(gate: GateReport) -> Table:
    """The gate's numbers: accuracy before/after and every probe before/after, with the limits."""
    relative = any(p.relative for p in gate.probes)
    table = Table(title="gate", title_justify="left",
                  caption="probes: reward (margin over an honest answer to the same prompt; the gate compares "
                          "margins where there is one)" if relative else None, caption_justify="left")
    for column in ("check", "current", "proposed", "limit", "ok"):
        table.add_column(column, justify="left")
    if gate.pairs:
        limit = (f">= {gate.accuracy_before - gate.accuracy_tolerance:.3f}" if gate.accuracy_before is not None else "-")
        ok = gate.accuracy_before is not None and gate.accuracy_after is not None and (
            gate.accuracy_after >= gate.accuracy_before - gate.accuracy_tolerance - 1e-9)
        table.add_row(f"pair accuracy ({gate.pairs_scored}/{gate.pairs} pairs)", _num(gate.accuracy_before),
                      _num(gate.accuracy_after), limit, _mark(ok))
    for probe in gate.probes:
        before, after = probe.score_before, probe.score_after
        limit = f"<= {before + gate.probe_tolerance:+.3f}" if before is not None else "-"
        ok = before is None or (after is not None and after <= before + gate.probe_tolerance + 1e-9)
        table.add_row(f"probe {probe.id}", _probe(probe.before, before, probe.relative),
                      _probe(probe.after, after, probe.relative), limit, _mark(ok))
    if gate.probes:
        ok = gate.probe_mean_before is None or (gate.probe_mean_after is not None
                                                and gate.probe_mean_after <= gate.probe_mean_before + 1e-9)
        limit = f"<= {gate.probe_mean_before:+.3f}" if gate.probe_mean_before is not None else "-"
        table.add_row("probes, mean score", _signed(gate.probe_mean_before), _signed(gate.probe_mean_after), limit,
                      _mark(ok))
    return table


def history(
    name: Annotated[str, typer.Argument(help="Rubric id or file path.")],
    cache: CacheOption = None,
    rubric_dir: DirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the history as JSON.")] = False,
) -> None:
    """A rubric's version history, newest first, with reasons.

    Baseline, refinements (with their gate numbers), proposals the gate rejected, and rollbacks;
    `*` marks the current version.
    """
    with handle_errors():
        store = _store(cache)
        try:
            rubric_id, loaded = _rubric_id(name, store, rubric_dirs_from(rubric_dir))
            events = store.history(rubric_id)
        finally:
            store.close()
        if as_json:
            out_console.print_json(json.dumps({"rubric": rubric_id, "file_version": loaded.version if loaded else None,
                                               "versions": [e.model_dump(mode="json") for e in reversed(events)]}))
            return
        if not events:
            out_console.print(f"{rubric_id}: no history yet (served from its file"
                              + (f", version {loaded.version}" if loaded else "") + "); `rubricgate refine` starts one",
                              highlight=False)
            return
        table = Table(title=f"{rubric_id}: versions, newest first")
        for column in ("", "when", "event", "version", "from", "gate", "reason"):
            table.add_column(column, overflow="fold")
        for event in reversed(events):
            table.add_row("*" if event.current else "", _when(event.created_at), event.event, event.version,
                          event.parent or "", _gate_summary(event), event.reason)
        out_console.print(table)
        if loaded is not None and loaded.version not in {e.version for e in events if e.event in LIVE_EVENTS}:
            out_console.print(f"note: the rubric file is at version {loaded.version}, which is not in this history, so "
                              "it is served as it is (editing a file starts a new line of history)", highlight=False)


def rollback(
    name: Annotated[str, typer.Argument(help="Rubric id or file path.")],
    version: Annotated[str, typer.Argument(help="A version that was live (see `rubricgate rubric history`); a unique prefix will do.")],
    reason: Annotated[Optional[str], typer.Option(help="Why; kept in the history.")] = None,
    cache: CacheOption = None,
    rubric_dir: DirOption = None,
) -> None:
    """Serve an earlier version of a rubric again.

    Gateways reading this cache database pick it up within a few seconds; the rollback is
    recorded in the history.
    """
    with handle_errors():
        store = _store(cache)
        try:
            rubric_id, loaded = _rubric_id(name, store, rubric_dirs_from(rubric_dir))
            rubric, previous = store.rollback(rubric_id, version, reason or "")
            live = {e.version for e in store.history(rubric_id) if e.event in LIVE_EVENTS}
        finally:
            store.close()
        out_console.print(f"[bold]{rubric_id}[/] now serves {rubric.version} (was {previous or 'its file'}); "
                          "running servers on this cache pick it up within 5 s", highlight=False)
        if loaded is not None and loaded.version not in live:
            out_console.print(f"note: the rubric file is at version {loaded.version}, which is not in this history, so "
                              "gateways serve the file, not this version", highlight=False)


def meta_judge_settings(settings: Settings, config: GatewayConfig, meta_judge: str | None,
                        meta_judge_base_url: str | None, meta_judge_api_key_env: str | None) -> tuple[str, BackendConfig]:
    """The meta-judge spec and connection: flags, else RUBRICGATE_META_JUDGE*, else the judge's own."""
    spec = meta_judge or settings.meta_judge or config.judge
    base_url = meta_judge_base_url or settings.meta_judge_base_url
    if spec == config.judge and base_url is None:
        return spec, config.backend
    key = settings.secret(meta_judge_api_key_env) or settings.meta_judge_api_key
    return spec, settings.backend(base_url, key, max(config.backend.timeout_s, AUTHORING_TIMEOUT_S))


def refine_settings(every: int | None, on: list[str] | None, meta_judge: str | None, meta_judge_base_url: str | None,
                    pairs: Path | None, probes: list[Path] | None, sample: int, config: GatewayConfig,
                    settings: Settings) -> RefineSettings | None:
    """`serve --refine-*` options -> settings (None when online refinement is off)."""
    if every is None and not on:
        if meta_judge or pairs or probes:
            raise UsageError("--meta-judge, --refine-pairs and --refine-probes need --refine-every N or --refine-on "
                             f"TRIGGER ({', '.join(TRIGGERS)})")
        return None
    triggers: list[TriggerName] = []
    for name in on or []:
        for part in re.split(r"[,\s]+", name.strip()):
            if not part:
                continue
            matched = next((t for t in TRIGGERS if t == part), None)
            if matched is None:
                raise UsageError(f"--refine-on {part!r}: choose from {', '.join(TRIGGERS)}")
            triggers.append(matched)
    spec, backend = meta_judge_settings(settings, config, meta_judge, meta_judge_base_url, None)
    return RefineSettings(meta_judge=spec, meta_backend=backend, every=every, triggers=tuple(dict.fromkeys(triggers)),
                          sample_size=sample, pairs_file=pairs, probe_files=tuple(probes or ()))


def _store(cache: str | None) -> RubricVersionStore:
    url = cache_url_from(cache)
    if url is None:
        raise UsageError("rubric versions live in the cache database; pass --cache URL|PATH, not none")
    return RubricVersionStore(url)


def _rubric_id(name: str, store: RubricVersionStore, dirs: tuple[Path, ...]) -> tuple[str, Rubric | None]:
    """The rubric id a name means, and its file version when the file resolves (a rubric whose file
    is gone keeps its history)."""
    try:
        loaded = resolve_rubric(name, dirs)
    except UsageError:
        if re.fullmatch(r"[a-z][a-z0-9-]{0,63}", name) and name in store.rubric_ids():
            return name, None
        raise
    return loaded.id, loaded


def _gate_summary(event: VersionEvent) -> str:
    gate = event.details.get("gate")
    if not isinstance(gate, dict):
        return ""
    parts = []
    if gate.get("pairs"):
        parts.append(f"acc {_num(gate.get('accuracy_before'))}->{_num(gate.get('accuracy_after'))}")
    if gate.get("probes"):
        parts.append(f"probes {_signed(gate.get('probe_mean_before'))}->{_signed(gate.get('probe_mean_after'))}")
    return ", ".join(parts)


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def _num(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


def _signed(value: object) -> str:
    return f"{value:+.3f}" if isinstance(value, (int, float)) else "-"


def _probe(reward: float | None, score: float | None, relative: bool) -> str:
    return f"{_num(reward)} ({_signed(score)})" if relative else _num(reward)


def _mark(ok: bool) -> str:
    return "[green]yes[/]" if ok else "[red]no[/]"
