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

One module per job: `evidence` (scored samples, detector signals, what the meta-judge sees),
`edits` (`Edit`, `apply_edits`, `Proposal`), `audit` (a text meta-judge's reply -> findings and
edits), `meta_judge` (the `MetaJudge` protocol, its text and template implementations,
`open_meta_judge`), `gate` (`run_gate`: pairs and probes under both versions) and `loop`
(`refine_rubric`: one detect -> sample -> propose -> gate round).

This package never stores or serves anything: it *receives* a score function (the gateway's) and
returns an outcome; versions live in `cache/versions.py`, serving in the gateway.
"""

from rubricgate.authoring.refinement.audit import parse_audit
from rubricgate.authoring.refinement.edits import Edit, Proposal, apply_edits
from rubricgate.authoring.refinement.evidence import (
    Finding, ScoredSample, detect_signals, scored_samples, select_samples,
)
from rubricgate.authoring.refinement.gate import GateConfig, GateReport, ProbeOutcome, ScoreFn, run_gate
from rubricgate.authoring.refinement.loop import RefineConfig, RefinementOutcome, refine_rubric
from rubricgate.authoring.refinement.meta_judge import (
    META_CHOICES_TEMPLATE, META_TEMPLATE, TEMPLATE_META_JUDGE, LLMMetaJudge, MetaJudge, TemplateMetaJudge,
    open_meta_judge,
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
