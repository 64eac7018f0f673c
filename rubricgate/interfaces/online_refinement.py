"""Online refinement: watch the rewards a server hands out, refine the rubric in the background,
hot-swap the version that passes the gate.

`Refiner.observe` is called with every scored batch. It keeps the recent items of the live version
of each rubric (a bounded window) and fires a refinement every N items (`--refine-every N`) or
when a trigger says the reward is being gamed or has become uninformative:

- saturation: most recent rewards sit at the top of the scale (nothing left to learn from, or
  an exploit that maxes the reward);
- drift: the distribution of recent rewards moved away from the one this version started with
  (two-sample Kolmogorov-Smirnov distance);
- disagreement: the judge's votes agree less than they did when this version went live.

A refinement runs as its own task under a lock: one at a time, and scoring never waits for it
(observing is a few list operations). It audits a sample of the window with the meta-judge,
gates the proposal on the labelled pairs and probes, records the outcome in the version store,
and on success swaps the served version with `Gateway.serve_version`: batches already scoring
finish with the version they started with, later ones get the new one, and every RewardResult
names its version (`rubric: id@version`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rubricgate.authoring.refinement import (
    TEMPLATE_META_JUDGE, GateConfig, MetaJudge, RefineConfig, RefinementOutcome, open_meta_judge, refine_rubric,
    scored_samples,
)
from rubricgate.errors import RubricGateError, UsageError
from rubricgate.interfaces.evaluation import read_pairs
from rubricgate.interfaces.gateway import Gateway
from rubricgate.library.probes import load_probes
from rubricgate.models.config import BackendConfig
from rubricgate.models.reward import Item, RewardResult
from rubricgate.models.rubric import Rubric

logger = logging.getLogger("rubricgate.refiner")

TriggerName = Literal["saturation", "drift", "disagreement"]
TRIGGERS: tuple[TriggerName, ...] = ("saturation", "drift", "disagreement")


class TriggerConfig(BaseModel):
    """Thresholds of the refinement triggers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_items: int = Field(default=40, ge=2)
    """Items of the live version needed on each side of a comparison before a trigger may fire
    (and new items needed after a refinement before the triggers are checked again)."""
    saturation_level: float = Field(default=0.9, gt=0, le=1)
    saturation_share: float = Field(default=0.8, gt=0, le=1)
    """Saturation: this share of recent rewards is at or above `saturation_level`."""
    drift_distance: float = Field(default=0.3, gt=0, le=1)
    """Drift: KS distance between the first and the most recent rewards of the version."""
    disagreement_rise: float = Field(default=0.15, gt=0, le=1)
    """Disagreement: mean vote agreement fell by at least this much (needs votes >= 2)."""


class RefineSettings(BaseModel):
    """`serve --refine-every N` / `--refine-on TRIGGER` and what the refinement uses."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    meta_judge: str
    """Meta-judge spec (see `open_meta_judge`): a text model, `llamacpp:*` or `template`."""
    meta_backend: BackendConfig = Field(default_factory=BackendConfig)
    every: int | None = Field(default=None, ge=1)
    """Refine after every N scored items of a rubric's live version."""
    triggers: tuple[TriggerName, ...] = ()
    thresholds: TriggerConfig = Field(default_factory=TriggerConfig)
    window: int = Field(default=200, ge=4, le=100_000)
    """Recent items kept per rubric; the meta-judge sees a sample of them."""
    sample_size: int = Field(default=20, ge=1, le=500)
    gate: GateConfig = Field(default_factory=GateConfig)
    pairs_file: Path | None = None
    """Labelled pairs for the gate (JSONL: prompt, chosen, rejected)."""
    probe_files: tuple[Path, ...] = ()
    shipped_probes: bool = True
    rubrics: tuple[str, ...] = ()
    """Rubric ids to refine; empty: every rubric served by name."""


def ks_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    if not a or not b:
        return 0.0
    xs, ys = sorted(a), sorted(b)
    i = j = 0
    gap = 0.0
    while i < len(xs) and j < len(ys):
        value = min(xs[i], ys[j])
        while i < len(xs) and xs[i] <= value:
            i += 1
        while j < len(ys) and ys[j] <= value:
            j += 1
        gap = max(gap, abs(i / len(xs) - j / len(ys)))
    return gap


Observation = tuple[float | None, float | None]
"""(reward, agreement) of one scored item."""


def check_triggers(reference: Sequence[Observation], recent: Sequence[Observation],
                   enabled: Sequence[TriggerName], config: TriggerConfig) -> list[str]:
    """Why a refinement should run now (empty: it should not).

    `reference` is what the live version saw first, `recent` what it saw last.
    """
    reasons = []
    recent_rewards = [r for r, _ in recent if r is not None]
    reference_rewards = [r for r, _ in reference if r is not None]
    if "saturation" in enabled and len(recent_rewards) >= config.min_items:
        share = sum(r >= config.saturation_level for r in recent_rewards) / len(recent_rewards)
        if share >= config.saturation_share:
            reasons.append(f"saturation: {share:.0%} of the last {len(recent_rewards)} rewards are >= "
                           f"{config.saturation_level:g}")
    if "drift" in enabled and min(len(recent_rewards), len(reference_rewards)) >= config.min_items:
        distance = ks_distance(reference_rewards, recent_rewards)
        if distance >= config.drift_distance:
            reasons.append(f"drift: KS distance {distance:.2f} between the first {len(reference_rewards)} and the last "
                           f"{len(recent_rewards)} rewards (mean {mean(reference_rewards):.2f} -> "
                           f"{mean(recent_rewards):.2f})")
    recent_agreement = [a for _, a in recent if a is not None]
    reference_agreement = [a for _, a in reference if a is not None]
    if "disagreement" in enabled and min(len(recent_agreement), len(reference_agreement)) >= config.min_items:
        before, after = mean(reference_agreement), mean(recent_agreement)
        if before - after >= config.disagreement_rise:
            reasons.append(f"disagreement: vote agreement fell from {before:.2f} to {after:.2f}")
    return reasons


@dataclass
class _Traffic:
    """What the live version of one rubric has seen since it went live."""

    rubric: Rubric
    window: deque[tuple[Item, RewardResult]]
    reference: list[Observation] = field(default_factory=list)
    since_refinement: int = 0


def outcome_details(outcome: RefinementOutcome, trigger: str, elapsed_s: float | None = None) -> dict[str, Any]:
    """What the version history keeps about a refinement: trigger, findings, edits, gate numbers."""
    proposal = outcome.proposal
    details: dict[str, Any] = {
        "trigger": trigger,
        "signals": [f.model_dump(mode="json") for f in outcome.signals],
        "accepted": outcome.accepted,
    }
    if proposal is not None:
        details.update({
            "meta_judge": proposal.meta_judge, "summary": proposal.summary,
            "findings": [f.model_dump(mode="json") for f in proposal.findings],
            "edits": [e.model_dump(mode="json", by_alias=True, exclude_none=True) for e in proposal.edits],
            "shown": proposal.sample_ids, "notes": proposal.notes,
        })
    if outcome.gate is not None:
        details["gate"] = outcome.gate.model_dump(mode="json")
    if elapsed_s is not None:
        details["elapsed_s"] = round(elapsed_s, 3)
    return details


class Refiner:
    """Background refinement for a running gateway (see the module docstring)."""

    def __init__(self, gateway: Gateway, settings: RefineSettings) -> None:
        versions = gateway.versions
        if versions is None:
            raise UsageError("online refinement keeps rubric versions in the cache database: run with a cache "
                             "(not --cache none)")
        if settings.every is None and not settings.triggers:
            raise UsageError("online refinement needs --refine-every N or at least one --refine-on trigger "
                             f"({', '.join(TRIGGERS)})")
        self._gateway = gateway
        self._versions = versions
        self.settings = settings
        self._pairs = read_pairs(settings.pairs_file) if settings.pairs_file is not None else []
        self._probes = load_probes(settings.probe_files, settings.shipped_probes)
        if not self._pairs and not self._probes:
            raise UsageError("online refinement needs something to gate on: --refine-pairs FILE or probes")
        self._lock = asyncio.Lock()
        self._traffic: dict[str, _Traffic] = {}
        self._meta: MetaJudge | None = None
        self._tasks: set[asyncio.Task[RefinementOutcome | None]] = set()
        self.running: str | None = None
        """Id of the rubric being refined now."""
        self.outcomes: deque[dict[str, Any]] = deque(maxlen=20)
        """The latest refinements, newest last (for `/v1/rubrics/{id}/versions`)."""

    # -- the hot path ----------------------------------------------------------------------
    def observe(self, rubric: Rubric, items: Sequence[Item], results: Sequence[RewardResult]) -> None:
        """Record a scored batch; may start a refinement task. Never waits."""
        if self.settings.rubrics and rubric.id not in self.settings.rubrics:
            return
        live = self._gateway.live_version(rubric.id)
        if live is None or live.version != rubric.version:
            return  # an inline rubric, or a batch that started before the last swap
        traffic = self._traffic.get(rubric.id)
        if traffic is None or traffic.rubric.version != rubric.version:
            traffic = self._traffic[rubric.id] = _Traffic(rubric, deque(maxlen=self.settings.window))
        half = max(2, self.settings.window // 2)
        for item, result in zip(items, results, strict=True):
            traffic.window.append((item, result))
            if len(traffic.reference) < half:
                traffic.reference.append((result.reward, result.agreement))
            traffic.since_refinement += 1
        if self._lock.locked():
            return
        reasons = []
        if self.settings.every is not None and traffic.since_refinement >= self.settings.every:
            reasons.append(f"every {self.settings.every} items")
        if self.settings.triggers and traffic.since_refinement >= self.settings.thresholds.min_items:
            recent = [(r.reward, r.agreement) for _, r in list(traffic.window)[-half:]]
            reasons += check_triggers(traffic.reference, recent, self.settings.triggers, self.settings.thresholds)
        if reasons:
            traffic.since_refinement = 0
            self._spawn(rubric, "; ".join(reasons))

    # -- refinement ------------------------------------------------------------------------
    async def refine_now(self, rubric: Rubric, trigger: str = "manual") -> RefinementOutcome | None:
        """Refine the live version on its recent traffic now; None when another refinement runs
        or there is no traffic yet."""
        if self._lock.locked():
            return None
        return await self._refine(rubric, trigger)

    def status(self) -> dict[str, Any]:
        """What the refiner does: settings, the running refinement, the latest outcomes."""
        return {"running": self.running, "every": self.settings.every, "triggers": list(self.settings.triggers),
                "meta_judge": self.settings.meta_judge, "window": self.settings.window,
                "observed": {k: len(t.window) for k, t in self._traffic.items()},
                "recent": list(self.outcomes)}

    async def aclose(self) -> None:
        """Cancel a running refinement (nothing half-done is stored) and close the meta-judge."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._meta is not None:
            await self._meta.aclose()
            self._meta = None

    def _spawn(self, rubric: Rubric, trigger: str) -> None:
        task = asyncio.create_task(self._refine(rubric, trigger), name=f"refine-{rubric.id}")
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[RefinementOutcome | None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("refinement task failed", exc_info=task.exception())

    async def _refine(self, rubric: Rubric, trigger: str) -> RefinementOutcome | None:
        async with self._lock:
            traffic = self._traffic.get(rubric.id)
            if traffic is None or not traffic.window or traffic.rubric.version != rubric.version:
                return None
            self.running = rubric.id
            started = time.perf_counter()
            window = list(traffic.window)
            try:
                outcome = await self._round(rubric, window, trigger, started)
            except RubricGateError as exc:
                logger.warning("refinement of %s failed: %s: %s", rubric.ref, type(exc).__name__, exc)
                self.outcomes.append({"rubric": rubric.ref, "trigger": trigger, "error": f"{type(exc).__name__}: {exc}",
                                      "at": time.time()})
                return None
            finally:
                self.running = None
            return outcome

    async def _round(self, rubric: Rubric, window: list[tuple[Item, RewardResult]], trigger: str,
                     started: float) -> RefinementOutcome:
        samples = scored_samples([i for i, _ in window], [r for _, r in window])
        await self._versions.aensure_baseline(rubric, "the version served when online refinement started")

        async def score(version: Rubric, items: Sequence[Item]) -> list[RewardResult]:
            return await self._gateway.score(items, version)

        outcome = await refine_rubric(rubric, samples, self._meta_judge(), score, pairs=self._pairs,
                                      probes=self._probes, config=RefineConfig(sample_size=self.settings.sample_size,
                                                                               gate=self.settings.gate))
        details = outcome_details(outcome, trigger, time.perf_counter() - started)
        summary: dict[str, Any] = {"rubric": rubric.ref, "trigger": trigger, "accepted": outcome.accepted,
                                   "reason": outcome.reason, "at": time.time()}
        proposal = outcome.proposal
        if outcome.accepted and proposal is not None:
            live = await self._versions.arecord(proposal.rubric, "refined", f"{trigger}: {outcome.reason}",
                                                parent=rubric.version, details=details, expect_current=rubric.version)
            if live:
                self._gateway.serve_version(proposal.rubric)
                summary["version"] = proposal.rubric.version
                logger.info("refined %s -> %s (%s)", rubric.ref, proposal.rubric.ref, trigger)
            else:
                summary.update(accepted=False, reason="the served version changed during refinement; proposal dropped")
        elif proposal is not None and proposal.changed:
            await self._versions.arecord(proposal.rubric, "rejected", f"{trigger}: {outcome.reason}",
                                         parent=rubric.version, details=details)
            summary["version"] = proposal.rubric.version
        self.outcomes.append(summary)
        return outcome

    def _meta_judge(self) -> MetaJudge:
        if self._meta is None:
            spec = self.settings.meta_judge
            self._meta = open_meta_judge(None if spec == TEMPLATE_META_JUDGE else
                                         self._gateway.judge(spec, self.settings.meta_backend, free_text=True))
        return self._meta



async def version_history(gateway: Gateway, rubric_id: str, refiner: Refiner | None = None) -> dict[str, Any] | None:
    """`GET /v1/rubrics/{id}/versions`: the history with reasons, the version served here, and the
    refiner's status; None for a rubric that is neither in the library nor in the history."""
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,63}", rubric_id):
        return None
    events = await asyncio.to_thread(gateway.versions.history, rubric_id) if gateway.versions is not None else []
    live = gateway.live_version(rubric_id)
    if live is None:
        try:
            live = gateway.rubric(rubric_id)
        except UsageError:
            live = None
    if live is None and not events:
        return None
    current = next((e.version for e in events if e.current), None)
    return {
        "rubric": rubric_id,
        "served": live.version if live is not None else None,
        "current": current,
        "versioned": gateway.versions is not None,
        "versions": [e.model_dump(mode="json") for e in reversed(events)],
        "refinement": refiner.status() if refiner is not None else None,
    }
