"""The gate: a proposed version must not lower labelled-pair accuracy or pay adversarial probes more."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from statistics import mean

from pydantic import BaseModel, ConfigDict, Field

from rubricgate.library.probes import Probe
from rubricgate.models.preference import PreferencePair
from rubricgate.models.reward import Item, RewardResult
from rubricgate.models.rubric import Rubric
from rubricgate.scoring.metrics import accuracy, pointwise_preference

_EPS = 1e-9

ScoreFn = Callable[[Rubric, Sequence[Item]], Awaitable[list[RewardResult]]]
"""Scores items with a given rubric version (the gateway's `score`, argument order swapped)."""


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
