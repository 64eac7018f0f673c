"""Meta-judges: audit a rubric on scored samples and propose a new version.

Two meta-judges implement one protocol, as rubric writers do (`authoring/writer.py`): a model that
writes text gets `prompts/meta_refine_v1.md` and replies with JSON (parsed leniently by `audit`, its
problems fed back for another reply); the embedded model, which can only fill label slots, drives the
offline `TemplateMetaJudge`: detector findings become countermeasure criteria from a catalogue,
and the model chooses how strongly to weigh each. Either way the gate decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import yaml

from rubricgate.authoring.exploits import COUNTERMEASURES, DESCRIPTIONS, PATTERNS, Pattern
from rubricgate.authoring.llm_calls import BackendTextGenerator, Choice, LabelChooser, TextGenerator, generate_parsed
from rubricgate.authoring.parse import Review, review_rubric
from rubricgate.authoring.refinement.audit import parse_audit
from rubricgate.authoring.refinement.edits import Edit, Proposal, apply_edits
from rubricgate.authoring.refinement.evidence import Finding, ScoredSample
from rubricgate.errors import UsageError, VerdictParseError
from rubricgate.judges.base import JudgeBackend
from rubricgate.judges.fence import fence_tag, process_key
from rubricgate.judges.prompts import load_template, prompt_text, response_text
from rubricgate.models.rubric import Criterion, Rubric

META_TEMPLATE = "meta_refine_v1"
META_CHOICES_TEMPLATE = "meta_choices_v1"
TEMPLATE_META_JUDGE = "template"
"""`--meta-judge template`: detector findings and the countermeasure catalogue, no model."""
_CLIP_PROMPT = 1200
_CLIP_RESPONSE = 2500


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
