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

This package never stores or serves anything: it *receives* a score function (the gateway's) and
returns an outcome; versions live in `cache/versions.py`, serving in the gateway.
"""

from rubricgate.authoring.refinement.meta_judge import (
    META_CHOICES_TEMPLATE, META_TEMPLATE, TEMPLATE_META_JUDGE, Edit, Finding, GateConfig, GateReport, LLMMetaJudge,
    MetaJudge, ProbeOutcome, Proposal, RefineConfig, RefinementOutcome, ScoredSample, ScoreFn, TemplateMetaJudge,
    apply_edits, detect_signals, open_meta_judge, parse_audit, refine_rubric, run_gate, scored_samples,
    select_samples,
)

__all__ = [
    "META_CHOICES_TEMPLATE",
    "META_TEMPLATE",
    "TEMPLATE_META_JUDGE",
    "Edit",
    "Finding",
    "GateConfig",
    "GateReport",
    "LLMMetaJudge",
    "MetaJudge",
    "ProbeOutcome",
    "Proposal",
    "RefineConfig",
    "RefinementOutcome",
    "ScoreFn",
    "ScoredSample",
    "TemplateMetaJudge",
    "apply_edits",
    "detect_signals",
    "open_meta_judge",
    "parse_audit",
    "refine_rubric",
    "run_gate",
    "scored_samples",
    "select_samples",
]
