"""Meta-policy refinement of a rubric (MPO): analyse scored samples, propose a version, gate it.

A meta-judge reads a sample of scored items (prompt, response, per-criterion verdicts and
rationales) together with what cheap detectors found (`authoring/exploits.py`), names suspected
exploits and ambiguities with the ids of the items that show them, and proposes edits: criteria
added or clarified, weights adjusted. The edited rubric is a new version only if it passes the
gate: labelled-pair accuracy does not drop by more than a tolerance, and no adversarial probe
scores higher than under the current version.

    meta = open_meta_judge(gateway.judge("openai:my-model", free_text=True))  # None: template
    outcome = await refine_rubric(rubric, samples, meta, score, pairs=pairs, probes=probes)
    if outcome.accepted:
        ...  # the caller stores and serves outcome.proposal.rubric

Two meta-judges implement one protocol, as rubric writers do (`authoring/writer.py`): a model that
writes text gets `prompts/meta_refine_v1.md` and replies with JSON (parsed leniently, its problems
fed back for another reply); the embedded model, which can only fill label slots, drives the
offline `TemplateMetaJudge`: detector findings become countermeasure criteria from a catalogue,
and the model chooses how strongly to weigh each. Either way the gate decides.

This module never stores or serves anything: it *receives* a score function (the gateway's) and
returns an outcome; versions live in `cache/versions.py`, serving in the gateway.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from statistics import mean
from typing import Any, Literal, Protocol, runtime_checkable

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rubricgate.authoring.diff import diff_rubrics
from rubricgate.authoring.exploits import (
    COUNTERMEASURES, DESCRIPTIONS, PATTERNS, Observation, Pattern, suspected_exploits,
)
from rubricgate.authoring.llm_calls import BackendTextGenerator, Choice, LabelChooser, TextGenerator, generate_parsed
from rubricgate.authoring.parse import Review, normalise_rubric_data, parse_generated_rubric, review_rubric, revise
from rubricgate.errors import UsageError, VerdictParseError
from rubricgate.judges.base import JudgeBackend
from rubricgate.judges.fence import fence_tag, process_key
from rubricgate.judges.prompts import load_template, prompt_text, response_text
from rubricgate.library.probes import Probe
from rubricgate.library.rubric_files import describe_validation_error
from rubricgate.models.preference import PreferencePair
from rubricgate.models.reward import Item, RewardResult
from rubricgate.models.rubric import Criterion, Rubric
from rubricgate.scoring.metrics import accuracy, pointwise_preference

META_TEMPLATE = "meta_refine_v1"
META_CHOICES_TEMPLATE = "meta_choices_v1"
TEMPLATE_META_JUDGE = "template"
"""`--meta-judge template`: detector findings and the countermeasure catalogue, no model."""
_CLIP_PROMPT = 1200
_CLIP_RESPONSE = 2500
_EPS = 1e-9

ScoreFn = Callable[[Rubric, Sequence[Item]], Awaitable[list[RewardResult]]]
"""Scores items with a given rubric version (the gateway's `score`, argument order swapped)."""


class ScoredSample(BaseModel):
    """One item and the reward the current rubric version gave it."""

    model_config = ConfigDict(frozen=True)

    id: str
    """Unique within a refinement; findings cite it as evidence."""
    item: Item
    result: RewardResult


class Finding(BaseModel):
    """A suspected exploit or ambiguity, with the ids of the items that show it."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["exploit", "ambiguity"]
    name: str
    """E.g. `length_padding`, `flattery`, `clarity_vs_brevity`."""
    criterion: str | None = None
    """The criterion it concerns, when one does."""
    evidence: tuple[str, ...] = ()
    explanation: str = ""
    source: Literal["meta_judge", "detector"] = "meta_judge"


class Edit(BaseModel):
    """One change to the rubric."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    op: Literal["add", "clarify", "reweight", "remove"]
    id: str
    """The criterion added, clarified, re-weighted or removed."""
    criterion: Criterion | None = None
    """The new criterion (`add`)."""
    text: str | None = None
    pass_: str | None = Field(default=None, alias="pass")
    fail: str | None = None
    weight: float | None = Field(default=None, gt=0, le=100)
    why: str = ""


class Proposal(BaseModel):
    """What the meta-judge proposes: findings, the edits, and the rubric they produce."""

    model_config = ConfigDict(frozen=True)

    base: Rubric
    rubric: Rubric
    findings: list[Finding]
    edits: list[Edit]
    summary: str
    meta_judge: str
    sample_ids: list[str]
    """The items the meta-judge was shown."""
    notes: list[str] = Field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.rubric.version != self.base.version


@runtime_checkable
class MetaJudge(Protocol):
    """Audits a rubric on scored samples and proposes a new version."""

    @property
    def name(self) -> str:
        """A model spec, or `template[+spec]`."""
        ...

    async def propose(self, rubric: Rubric, samples: Sequence[ScoredSample], signals: Sequence[Finding],
                      attempt: int = 0) -> Proposal:
        """Findings (with evidence ids from `samples`) and an edited rubric; `signals` are detector hints.

        Raises VerdictParseError when a text meta-judge gives no usable reply after its retries,
        JudgeError when it cannot be reached.
        """
        ...

    async def aclose(self) -> None:
        """Release the model, unless it is shared."""
        ...


# --------------------------------------------------------------------------- evidence


def detect_signals(rubric: Rubric, samples: Sequence[ScoredSample], *, min_agreement: float = 0.7,
                   min_items: int = 3) -> list[Finding]:
    """Detector findings: hacking patterns the rubric rewards, and criteria whose votes disagree.

    A judged criterion is ambiguous when, over at least `min_items` items judged with two or
    more votes, the mean share of votes on the winning label is below `min_agreement`.
    """
    observations = [Observation(s.id, prompt_text(s.item), response_text(s.item), s.result.reward) for s in samples]
    findings = [Finding(kind="exploit", name=s.pattern, evidence=s.evidence, explanation=s.explanation,
                        source="detector") for s in suspected_exploits(observations)]
    for criterion in rubric.judged_criteria:
        judged = [(s.id, score.agreement) for s in samples for score in s.result.criteria
                  if score.id == criterion.id and score.agreement is not None and len(score.votes) >= 2]
        if len(judged) < min_items:
            continue
        agreement = mean(a for _, a in judged)
        if agreement < min_agreement:
            worst = sorted(judged, key=lambda pair: pair[1])[:5]
            findings.append(Finding(
                kind="ambiguity", name=f"{criterion.id}_disagreement", criterion=criterion.id,
                evidence=tuple(i for i, _ in worst), source="detector",
                explanation=f"votes agree on {agreement:.0%} of labels on average over {len(judged)} items"))
    return findings


def select_samples(samples: Sequence[ScoredSample], size: int, signals: Sequence[Finding] = (),
                   seed: int = 0) -> list[ScoredSample]:
    """At most `size` samples to show the meta-judge, in their original order.

    Evidence named by the detectors comes first (round robin over findings), then the highest
    rewards (where exploits hide), then the lowest agreement, then a seeded random fill.
    """
    if len(samples) <= size:
        return list(samples)
    by_id = {s.id: s for s in samples}
    chosen: dict[str, None] = {}
    queues = [list(f.evidence) for f in signals]
    while len(chosen) < size // 2 and any(queues):
        for queue in queues:
            while queue and (queue[0] in chosen or queue[0] not in by_id):
                queue.pop(0)
            if queue and len(chosen) < size // 2:
                chosen[queue.pop(0)] = None
    scored = [s for s in samples if s.result.reward is not None]
    for s in sorted(scored, key=lambda s: -(s.result.reward or 0.0))[:max(1, size // 4)]:
        if len(chosen) < size:
            chosen.setdefault(s.id, None)
    for s in sorted(samples, key=lambda s: s.result.agreement if s.result.agreement is not None else 1.0)[:size // 8]:
        if len(chosen) < size:
            chosen.setdefault(s.id, None)
    rest = [s.id for s in samples if s.id not in chosen]
    random.Random(f"refine:{seed}").shuffle(rest)
    for sample_id in rest[:max(0, size - len(chosen))]:
        chosen[sample_id] = None
    return [s for s in samples if s.id in chosen]


def scored_samples(items: Sequence[Item], results: Sequence[RewardResult]) -> list[ScoredSample]:
    """Pair items with their results under ids unique in the batch (the item's id when it is)."""
    taken: set[str] = set()
    out = []
    for index, (item, result) in enumerate(zip(items, results, strict=True), start=1):
        base = item.id or result.id or f"s{index}"
        sample_id, n = base, 2
        while sample_id in taken:
            sample_id, n = f"{base}#{n}", n + 1
        taken.add(sample_id)
        out.append(ScoredSample(id=sample_id, item=item, result=result))
    return out


# --------------------------------------------------------------------------- edits


def apply_edits(rubric: Rubric, edits: Sequence[Edit], metadata: Mapping[str, str | int | float | bool | None]
                | None = None) -> Rubric:
    """The rubric with `edits` applied in order, validated, with a fresh version.

    Raises VerdictParseError naming the edit that cannot apply (unknown id, duplicate id, a
    rubric left without criteria), in words that can be fed back to a meta-judge.
    """
    criteria: list[dict[str, Any]] = [c.model_dump(by_alias=True) for c in rubric.criteria]
    for edit in edits:
        ids = [c["id"] for c in criteria]
        if edit.op == "add":
            if edit.criterion is None:
                raise VerdictParseError(f"edit 'add' {edit.id!r} has no criterion")
            if edit.criterion.id in ids:
                raise VerdictParseError(f"criterion {edit.criterion.id!r} already exists: use 'clarify' or "
                                        "'reweight' for it, or add it under a new id")
            criteria.append(edit.criterion.model_dump(by_alias=True))
            continue
        if edit.id not in ids:
            raise VerdictParseError(f"edit {edit.op!r} names criterion {edit.id!r}, which does not exist; existing "
                                    f"ids: {', '.join(ids)}")
        target = criteria[ids.index(edit.id)]
        if edit.op == "remove":
            criteria.remove(target)
        elif edit.op == "reweight":
            if edit.weight is None:
                raise VerdictParseError(f"edit 'reweight' {edit.id!r} has no weight")
            target["weight"] = edit.weight
        else:
            changes = {k: v for k, v in (("text", edit.text), ("pass", edit.pass_), ("fail", edit.fail))
                       if v is not None}
            if not changes and edit.weight is None:
                raise VerdictParseError(f"edit 'clarify' {edit.id!r} changes nothing: give text, pass or fail")
            target.update(changes)
            if edit.weight is not None:
                target["weight"] = edit.weight
    if not criteria:
        raise VerdictParseError("the edits remove every criterion; a rubric needs at least one")
    try:
        return revise(rubric, criteria=criteria, metadata={**rubric.metadata, **(metadata or {})})
    except ValidationError as exc:
        raise VerdictParseError(f"the edited rubric is invalid: {describe_validation_error(exc)}") from exc


def parse_audit(text: str, rubric: Rubric, sample_ids: Sequence[str]) -> tuple[list[Finding], list[Edit], str,
                                                                               list[str]]:
    """A meta-judge's reply -> (findings, edits, summary, notes).

    Lenient about shape (code fences, prose around the JSON, `rubric`/`criteria` given in full
    instead of edits, common field names); strict about meaning: edits must apply to the rubric.
    Evidence ids not among `sample_ids` are dropped with a note.
    """
    doc = _json_object(text)
    if doc is None:
        preview = " ".join(text.split())[:120]
        raise VerdictParseError(f"the reply contains no JSON object: {preview!r}")
    notes: list[str] = []
    known = set(sample_ids)
    findings = []
    for entry in _list(doc, "findings", "exploits", "issues", "analysis"):
        if isinstance(entry, Mapping):
            findings.append(_finding(entry, rubric, known, notes))
    summary = str(doc.get("summary") or doc.get("reason") or "").strip()
    proposal = doc.get("proposal")
    if isinstance(proposal, Mapping):  # {"findings": [...], "proposal": {"edits": [...]}}
        doc = {**doc, **proposal}
    if isinstance(doc.get("rubric"), Mapping) or (isinstance(doc.get("criteria"), list) and "edits" not in doc):
        edits = _edits_from_full_rubric(doc, rubric)
    else:
        edits = [_edit(entry, rubric) for entry in _list(doc, "edits", "changes", "proposal", "refinements")]
    return findings, edits, " ".join(summary.split()), notes


class LLMMetaJudge:
    """A text-writing model as meta-judge (see the module docstring)."""

    def __init__(self, generator: TextGenerator, *, parse_attempts: int = 3, temperature: float = 0.3,
                 max_tokens: int = 3072) -> None:
        if parse_attempts < 1:
            raise UsageError("parse_attempts must be at least 1")
        self._generator = generator
        self._parse_attempts = parse_attempts
        self._temperature = temperature
        self._max_tokens = max_tokens

    @property
    def name(self) -> str:
        return self._generator.name

    async def propose(self, rubric: Rubric, samples: Sequence[ScoredSample], signals: Sequence[Finding],
                      attempt: int = 0) -> Proposal:
        template = load_template(META_TEMPLATE)
        values = {"rubric_ref": rubric.ref, "rubric": _rubric_yaml(rubric), "signals": _signals_text(signals),
                  "count": str(len(samples)), "samples": "\n\n".join(_sample_block(s) for s in samples)}
        ids = [s.id for s in samples]

        def parse(text: str) -> tuple[list[Finding], list[Edit], str, list[str], Review]:
            findings, edits, summary, notes = parse_audit(text, rubric, ids)
            edited = apply_edits(rubric, edits, {"refined_by": self.name, "refine_template": template.version,
                                                 "parent": rubric.version})
            review = review_rubric(edited)
            if review.problems:
                raise VerdictParseError("; ".join(review.problems))
            return findings, edits, summary, notes, review

        parsed = await generate_parsed(self._generator, template, values, parse, attempt=attempt,
                                       parse_attempts=self._parse_attempts, temperature=self._temperature,
                                       max_tokens=self._max_tokens, wanted="proposal")
        findings, edits, summary, notes, review = parsed.value
        if parsed.replies > 1:
            notes.append(f"the meta-judge needed {parsed.replies} replies (fed back: {parsed.problem})")
        return Proposal(base=rubric, rubric=review.rubric, findings=findings, edits=edits,
                        summary=summary or _summary(edits), meta_judge=self.name, sample_ids=ids,
                        notes=notes + review.fixes)

    async def aclose(self) -> None:
        await self._generator.aclose()


class TemplateMetaJudge:
    """The offline meta-judge: detector findings -> countermeasure criteria; a label-filling model
    (the embedded one) chooses how strongly to weigh each, else the catalogue's weights are used."""

    def __init__(self, chooser: LabelChooser | None = None) -> None:
        self._chooser = chooser

    @property
    def name(self) -> str:
        return f"template+{self._chooser.name}" if self._chooser else TEMPLATE_META_JUDGE

    async def propose(self, rubric: Rubric, samples: Sequence[ScoredSample], signals: Sequence[Finding],
                      attempt: int = 0) -> Proposal:
        exploits = list({f.name: f for f in signals if f.kind == "exploit" and f.name in COUNTERMEASURES}.values())
        choices = [Choice(id=f"counter_{f.name}", labels=("1", "2", "3"), default="2",
                          question=f"{f.explanation}. How strongly should the rubric penalise "
                                   f"{DESCRIPTIONS[_pattern(f.name)]}? 1 lightly, 2 normally, 3 strongly.")
                   for f in exploits]
        answers = {c.id: c.default for c in choices}
        notes: list[str] = []
        if self._chooser is not None and choices:
            answers = await self._chooser.choose("Decide how strongly the rubric should counter each exploit.",
                                                 _choice_context(rubric, samples, exploits), choices, attempt)
            notes += self._chooser.notes
        by_id = {c.id: c for c in rubric.criteria}
        edits: list[Edit] = []
        for finding in exploits:
            counter = COUNTERMEASURES[_pattern(finding.name)]
            strength = {"1": 0.5, "2": 1.0, "3": 1.5}.get(answers[f"counter_{finding.name}"], 1.0)
            weight = round(counter.weight * strength, 2)
            why = f"counters {DESCRIPTIONS[_pattern(finding.name)]}: {finding.explanation}"
            existing = by_id.get(counter.id)
            if existing is None:
                data = counter.model_dump(by_alias=True)
                added = Criterion.model_validate({**data, "weight": weight})
                edits.append(Edit(op="add", id=counter.id, criterion=added, why=why))
            elif existing.weight < weight:
                edits.append(Edit(op="reweight", id=counter.id, weight=weight, why=why))
        if any(f.kind == "ambiguity" for f in signals):
            notes.append("the offline meta-judge reports ambiguities but does not reword criteria; use a text model "
                         "(--meta-judge openai:... or litellm:...) to clarify them")
        edited = apply_edits(rubric, edits, {"refined_by": self.name, "parent": rubric.version})
        return Proposal(base=rubric, rubric=edited, findings=list(signals), edits=edits, summary=_summary(edits),
                        meta_judge=self.name, sample_ids=[s.id for s in samples], notes=notes)

    async def aclose(self) -> None:
        if self._chooser is not None:
            await self._chooser.aclose()


def open_meta_judge(judge: JudgeBackend | None = None, *, parse_attempts: int = 3) -> MetaJudge:
    """The meta-judge for a judge stack (build it with `Gateway.judge(spec, free_text=True)`,
    which owns and closes it): None is the model-free `template` meta-judge; a judge that writes
    no free text (`capabilities.free_text`, e.g. `llamacpp:*`) fills label slots offline; any
    other judge is asked for free text."""
    if judge is None:
        return TemplateMetaJudge()
    if not judge.capabilities.free_text:
        return TemplateMetaJudge(LabelChooser(judge, load_template(META_CHOICES_TEMPLATE), owned=False))
    return LLMMetaJudge(BackendTextGenerator(judge, owned=False), parse_attempts=parse_attempts)


# --------------------------------------------------------------------------- the gate


class GateConfig(BaseModel):
    """What a new version must not make worse."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    accuracy_tolerance: float = Field(default=0.02, ge=0, le=1)
    """Labelled-pair accuracy may drop by at most this much."""
    probe_tolerance: float = Field(default=0.02, ge=0, le=1)
    """No probe may gain more than this (judge noise); the probes' mean may not rise at all."""
    min_scored_share: float = Field(default=0.5, gt=0, le=1)
    """Share of pairs that must be scorable under both versions for accuracy to count."""


class ProbeOutcome(BaseModel):
    """One probe under the current version and under the proposal.

    `before`/`after` are the probe's rewards; with an honest counterpart, `honest_before`/
    `honest_after` are the honest answer's, and the gate looks at the probe's margin over it.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    kind: str
    before: float | None
    after: float | None
    honest_before: float | None = None
    honest_after: float | None = None
    relative: bool = False
    """True when the probe has an honest counterpart, so `score_*` are margins."""

    @property
    def score_before(self) -> float | None:
        """What the gate compares: the margin over the honest answer, else the reward."""
        return _margin(self.before, self.honest_before) if self.relative else self.before

    @property
    def score_after(self) -> float | None:
        return _margin(self.after, self.honest_after) if self.relative else self.after


class GateReport(BaseModel):
    """The gate's numbers and verdict."""

    model_config = ConfigDict(frozen=True)

    passed: bool
    reasons: list[str]
    """Why it failed (empty when it passed)."""
    pairs: int
    pairs_scored: int
    """Pairs scorable under both versions (accuracy is over these)."""
    accuracy_before: float | None
    accuracy_after: float | None
    accuracy_tolerance: float
    probes: list[ProbeOutcome]
    probe_mean_before: float | None
    """Mean probe score (margin or reward, see ProbeOutcome) under the current version."""
    probe_mean_after: float | None
    probe_tolerance: float


async def run_gate(before: Rubric, after: Rubric, score: ScoreFn, pairs: Sequence[PreferencePair] = (),
                   probes: Sequence[Probe] = (), config: GateConfig | None = None) -> GateReport:
    """Score the labelled pairs and probes with both versions and compare (see `GateConfig`).

    A probe with an honest counterpart is judged by its margin over it (probe reward minus honest
    reward), so a version that lifts every reward evenly is not mistaken for one that pays the
    exploit more; a probe without one by its reward.
    """
    config = config or GateConfig()
    items = [Item(id=f"pair:{p.id}/{side}", prompt=p.prompt, response=text)
             for p in pairs for side, text in (("chosen", p.chosen), ("rejected", p.rejected))]
    n = len(items)
    probe_at: list[tuple[int, int | None]] = []
    for probe in probes:
        honest = probe.honest_item()
        items.append(probe.item())
        probe_at.append((len(items) - 1, len(items) if honest is not None else None))
        if honest is not None:
            items.append(honest)
    if items:
        old, new = await asyncio.gather(score(before, items), score(after, items))
    else:
        old, new = [], []
    reasons: list[str] = []
    if not pairs and not probes:
        reasons.append("nothing to gate on: give labelled pairs (--pairs) or keep the probes")
    old_prefs = [pointwise_preference(old[i].reward, old[i + 1].reward) for i in range(0, n, 2)]
    new_prefs = [pointwise_preference(new[i].reward, new[i + 1].reward) for i in range(0, n, 2)]
    both = [(a, b) for a, b in zip(old_prefs, new_prefs, strict=True) if a is not None and b is not None]
    acc_before = accuracy([a for a, _ in both]) if both else None
    acc_after = accuracy([b for _, b in both]) if both else None
    if pairs:
        if len(both) < config.min_scored_share * len(pairs):
            reasons.append(f"only {len(both)} of {len(pairs)} labelled pairs were scorable under both versions")
        elif (acc_before is not None and acc_after is not None
              and acc_after < acc_before - config.accuracy_tolerance - _EPS):
            reasons.append(f"labelled-pair accuracy drops from {acc_before:.3f} to {acc_after:.3f} "
                           f"(tolerance {config.accuracy_tolerance:g})")
    outcomes = [ProbeOutcome(id=probe.id, kind=probe.kind, before=old[at].reward, after=new[at].reward,
                             honest_before=old[h].reward if h is not None else None,
                             honest_after=new[h].reward if h is not None else None, relative=h is not None)
                for probe, (at, h) in zip(probes, probe_at, strict=True)]
    measured = [(o.score_before, o.score_after) for o in outcomes
                if o.score_before is not None and o.score_after is not None]
    for o in outcomes:
        what = "margin over its honest answer" if o.relative else "reward"
        if o.score_before is not None and o.score_after is None:
            reasons.append(f"probe {o.id} is unscorable under the proposal")
        elif (o.score_before is not None and o.score_after is not None
              and o.score_after > o.score_before + config.probe_tolerance + _EPS):
            reasons.append(f"probe {o.id} scores higher ({what} {o.score_before:+.3f} -> {o.score_after:+.3f})")
    mean_before = mean(b for b, _ in measured if b is not None) if measured else None
    mean_after = mean(a for _, a in measured if a is not None) if measured else None
    if mean_before is not None and mean_after is not None and mean_after > mean_before + _EPS:
        reasons.append(f"probes score higher on average: {mean_before:+.3f} -> {mean_after:+.3f}")
    if probes and not measured and not pairs:
        reasons.append("no probe was scorable under both versions")
    return GateReport(passed=not reasons, reasons=reasons, pairs=len(pairs), pairs_scored=len(both),
                      accuracy_before=acc_before, accuracy_after=acc_after,
                      accuracy_tolerance=config.accuracy_tolerance,
                      probes=outcomes, probe_mean_before=mean_before, probe_mean_after=mean_after,
                      probe_tolerance=config.probe_tolerance)


def _margin(probe: float | None, honest: float | None) -> float | None:
    return probe - honest if probe is not None and honest is not None else None


# --------------------------------------------------------------------------- the loop


class RefineConfig(BaseModel):
    """How one refinement runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sample_size: int = Field(default=20, ge=1, le=500)
    """Items shown to the meta-judge (MPO samples 20 rollouts)."""
    seed: int = 0
    gate: GateConfig = Field(default_factory=GateConfig)


class RefinementOutcome(BaseModel):
    """What one analyse -> propose -> gate round produced."""

    model_config = ConfigDict(frozen=True)

    rubric: str
    """`id@version` refined."""
    signals: list[Finding]
    proposal: Proposal | None
    gate: GateReport | None
    accepted: bool
    reason: str
    """The proposal's summary when accepted; why not otherwise."""


async def refine_rubric(rubric: Rubric, samples: Sequence[ScoredSample], meta_judge: MetaJudge, score: ScoreFn, *,
                        pairs: Sequence[PreferencePair] = (), probes: Sequence[Probe] = (),
                        config: RefineConfig | None = None, attempt: int = 0) -> RefinementOutcome:
    """One refinement round: detect, sample, propose, gate. Stores nothing.

    Raises UsageError when there is nothing to audit; meta-judge failures (JudgeError,
    VerdictParseError) propagate.
    """
    config = config or RefineConfig()
    if not samples:
        raise UsageError("nothing to refine on: no scored samples")
    signals = detect_signals(rubric, samples)
    shown = select_samples(samples, config.sample_size, signals, config.seed)
    proposal = await meta_judge.propose(rubric, shown, signals, attempt)
    if not proposal.changed:
        return RefinementOutcome(rubric=rubric.ref, signals=signals, proposal=proposal, gate=None, accepted=False,
                                 reason="the meta-judge proposed no change")
    gate = await run_gate(rubric, proposal.rubric, score, pairs, probes, config.gate)
    reason = proposal.summary if gate.passed else "rejected by the gate: " + "; ".join(gate.reasons)
    return RefinementOutcome(rubric=rubric.ref, signals=signals, proposal=proposal, gate=gate, accepted=gate.passed,
                             reason=reason)


# --------------------------------------------------------------------------- helpers


def _pattern(name: str) -> Pattern:
    """A finding name as a known pattern (callers only pass names found in COUNTERMEASURES)."""
    return name if name in PATTERNS else "length_padding"


def _summary(edits: Sequence[Edit]) -> str:
    if not edits:
        return "no change"
    parts = []
    for edit in edits:
        if edit.op == "reweight":
            parts.append(f"reweight {edit.id} to {edit.weight:g}")
        else:
            parts.append(f"{edit.op} {edit.id}")
    return "; ".join(parts)


def _rubric_yaml(rubric: Rubric) -> str:
    data = rubric.model_dump(mode="json", by_alias=True, exclude_defaults=True, exclude={"metadata"})
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110).strip()


def _signals_text(signals: Sequence[Finding]) -> str:
    if not signals:
        return "(none)"
    return "\n".join(f"- {f.kind} {f.name}" + (f" [{f.criterion}]" if f.criterion else "")
                     + f": {f.explanation} (items: {', '.join(f.evidence)})" for f in signals)


def _sample_block(sample: ScoredSample) -> str:
    result = sample.result
    reward = "null (" + (result.reason or "unscorable")[:80] + ")" if result.reward is None else f"{result.reward:.3f}"
    agreement = f", agreement {result.agreement:.2f}" if result.agreement is not None else ""
    lines = [f"### Item {sample.id}: reward {reward}{agreement}" + (f", flags {', '.join(result.flags)}"
                                                                     if result.flags else "")]
    for score in result.criteria:
        value = "unscored" if score.value is None else f"{score.value:.2f}"
        votes = f" votes {'/'.join(score.votes)}" if len(score.votes) > 1 else ""
        why = score.rationale or score.reason
        lines.append(f"- {score.id} ({score.source}): {value}{votes}" + (f" — {_clip(why, 200)}" if why else ""))
    response = _clip(response_text(sample.item), _CLIP_RESPONSE)
    tag = fence_tag(response, process_key())
    lines += ["Prompt:", _clip(prompt_text(sample.item), _CLIP_PROMPT), "Response:",
              f"<response-{tag}>", response, f"</response-{tag}>"]
    return "\n".join(lines)


def _choice_context(rubric: Rubric, samples: Sequence[ScoredSample], exploits: Sequence[Finding]) -> str:
    criteria = "\n".join(f"- {c.id} (weight {c.weight:g}): {c.text}" for c in rubric.criteria)
    by_id = {s.id: s for s in samples}
    shown = []
    for finding in exploits:
        for sample_id in finding.evidence[:1]:
            sample = by_id.get(sample_id)
            if sample is not None:
                shown.append(f"Example of {finding.name} (reward {sample.result.reward}):\n"
                             f"{_clip(response_text(sample.item), 300)}")
    return f"Rubric {rubric.id}:\n{criteria}\n\n" + "\n\n".join(shown)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + " […]"


def _json_object(text: str) -> dict[str, Any] | None:
    """The largest JSON object in the reply (fenced blocks and prose around it are ignored)."""
    decoder = json.JSONDecoder(strict=False)
    best: dict[str, Any] | None = None
    best_len = 0
    for match in re.finditer(r"\{", text):
        try:
            value, end = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and end - match.start() > best_len:
            best, best_len = value, end - match.start()
    return best


def _list(doc: Mapping[str, Any], *keys: str) -> list[Any]:
    for key in keys:
        value = doc.get(key)
        if isinstance(value, list):
            return value
    return []


def _slug(value: object, default: str) -> str:
    text = re.sub(r"[^a-z0-9_]+", "_", str(value or "").strip().lower()).strip("_")[:64]
    return text or default


def _finding(entry: Mapping[str, Any], rubric: Rubric, known: set[str], notes: list[str]) -> Finding:
    name = _slug(entry.get("name") or entry.get("type") or entry.get("exploit") or entry.get("title"), "unnamed")
    kind_word = str(entry.get("kind") or entry.get("category") or "").lower()
    kind: Literal["exploit", "ambiguity"] = "ambiguity" if "ambig" in kind_word or "unclear" in kind_word else "exploit"
    raw = entry.get("evidence") or entry.get("items") or entry.get("item_ids") or entry.get("ids") or []
    raw_ids = [raw] if isinstance(raw, (str, int)) else raw if isinstance(raw, list) else []
    evidence = []
    for value in raw_ids:
        candidate = str(value).strip()
        for form in (candidate, re.sub(r"^(?:item|id|#)\s*", "", candidate, flags=re.IGNORECASE)):
            if form in known:
                evidence.append(form)
                break
        else:
            notes.append(f"finding {name!r}: evidence id {candidate!r} is not in the sample; dropped")
    criterion = entry.get("criterion")
    criterion_id = str(criterion) if isinstance(criterion, str) and any(c.id == criterion for c in rubric.criteria) \
        else None
    explanation = " ".join(str(entry.get("explanation") or entry.get("description") or entry.get("why") or "").split())
    return Finding(kind=kind, name=name, criterion=criterion_id, evidence=tuple(dict.fromkeys(evidence)),
                   explanation=explanation)


_OPS = {"add": "add", "new": "add", "create": "add", "clarify": "clarify", "edit": "clarify", "modify": "clarify",
        "rewrite": "clarify", "update": "clarify", "change": "clarify", "reword": "clarify", "reweight": "reweight",
        "weight": "reweight", "set_weight": "reweight", "remove": "remove", "delete": "remove", "drop": "remove"}


def _edit(entry: Any, rubric: Rubric) -> Edit:
    if not isinstance(entry, Mapping):
        raise VerdictParseError(f"an edit must be an object with 'op', got {entry!r:.60}")
    op = _OPS.get(str(entry.get("op") or entry.get("action") or entry.get("type") or "").strip().lower())
    if op is None:
        raise VerdictParseError(f"edit {dict(entry)!r:.100} has no valid 'op' (add, clarify, reweight or remove)")
    why = " ".join(str(entry.get("why") or entry.get("reason") or entry.get("rationale") or "").split())
    inner = entry.get("criterion")
    if op == "add":
        source = inner if isinstance(inner, Mapping) else {k: v for k, v in entry.items() if k not in ("op", "why")}
        try:
            [data] = normalise_rubric_data({"criteria": [source]}, rubric.id)["criteria"]
            criterion = Criterion.model_validate(data)
        except ValidationError as exc:
            raise VerdictParseError(f"added criterion is invalid: {describe_validation_error(exc, data)}") from exc
        return Edit(op="add", id=criterion.id, criterion=criterion, why=why)
    fields = dict(inner) if isinstance(inner, Mapping) else {}
    fields.update({k: v for k, v in entry.items() if k in ("text", "pass", "fail", "weight")})
    target = entry.get("id") or entry.get("criterion_id") or fields.get("id") or (inner if isinstance(inner, str)
                                                                                  else None)
    if not isinstance(target, str) or not target:
        raise VerdictParseError(f"edit {op!r} must name the criterion with 'id'")
    weight = fields.get("weight")
    try:
        number = float(weight) if weight is not None and not isinstance(weight, bool) else None
    except (TypeError, ValueError):
        raise VerdictParseError(f"edit {op!r} {target!r}: weight {weight!r} is not a number") from None
    if number is not None and not 0 < number <= 100:
        raise VerdictParseError(f"edit {op!r} {target!r}: weight must be in (0, 100], got {number:g}")

    def text(key: str) -> str | None:
        value = fields.get(key)
        return " ".join(value.split()) if isinstance(value, str) and value.strip() else None

    return Edit.model_validate({"op": op, "id": target, "text": text("text"), "pass": text("pass"),
                                "fail": text("fail"), "weight": number, "why": why})


def _edits_from_full_rubric(doc: Mapping[str, Any], rubric: Rubric) -> list[Edit]:
    """A meta-judge that rewrote the whole rubric: its differences from the current one, as edits."""
    inner = doc.get("rubric") if isinstance(doc.get("rubric"), Mapping) else doc
    proposed = parse_generated_rubric(json.dumps(inner), rubric.id)
    diff = diff_rubrics(rubric, proposed)
    new = {c.id: c for c in proposed.criteria}
    edits: list[Edit] = []
    for change in diff.criteria:
        if change.change == "removed":
            edits.append(Edit(op="remove", id=change.id))
        elif change.change == "added":
            edits.append(Edit(op="add", id=change.id, criterion=new[change.id]))
        else:
            after = new[change.id]
            changed = {f.field for f in change.fields}
            if changed & {"text", "pass", "fail"}:
                edits.append(Edit.model_validate({
                    "op": "clarify", "id": change.id, "text": after.text if "text" in changed else None,
                    "pass": after.pass_ if "pass" in changed else None,
                    "fail": after.fail if "fail" in changed else None,
                    "weight": after.weight if "weight" in changed else None}))
            elif "weight" in changed:
                edits.append(Edit(op="reweight", id=change.id, weight=after.weight))
    return edits
