"""One refinement round: detect, sample, propose, gate."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from rubricgate.authoring.refinement.edits import Proposal
from rubricgate.authoring.refinement.evidence import Finding, ScoredSample, detect_signals, select_samples
from rubricgate.authoring.refinement.gate import GateConfig, GateReport, ScoreFn, run_gate
from rubricgate.authoring.refinement.meta_judge import MetaJudge
from rubricgate.errors import UsageError
from rubricgate.library.probes import Probe
from rubricgate.models.preference import PreferencePair
from rubricgate.models.rubric import Rubric


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
