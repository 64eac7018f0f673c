"""`rubricgate eval`'s engine: judge labelled preference pairs with one or more protocols.

Each variant (pointwise or pairwise, rubric or plain prompt, votes, sampled or expected scores)
runs on the same pairs, in the same seeded presentation order, through the gateway's judge stack;
all variants share the cache (and, when the cache is off, an in-memory copy of this run's
replies), so a variant that only re-aggregates another's votes costs no judge call.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path


from rubricgate.cache.keys import cache_key
from rubricgate.errors import UsageError
from rubricgate.interfaces.gateway import Gateway
from rubricgate.judges.base import BackendWrapper, JudgeBackend
from rubricgate.library.rubric_files import parse_rubric
from rubricgate.models.preference import (
    EvalReport, EvalVariant, Matchup, Mode, PairRecord, PreferencePair, ScoreKind, VariantReport,
)
from rubricgate.models.judging import JudgeReply, JudgeRequest, TokenUsage
from rubricgate.models.reward import Item, RewardResult
from rubricgate.models.rubric import Rubric
from rubricgate.scoring.metrics import (
    PairScore, mean_agreement, order_preference, pair_metrics, pointwise_preference, swap_averaged,
)
from rubricgate.library.jsonl import read_jsonl_models

PLAIN_RUBRIC: Rubric = parse_rubric({
    "id": "plain",
    "description": "A minimal baseline prompt: one overall judgment, no rubric.",
    "criteria": [{"id": "quality", "kind": "principle",
                  "text": "The response follows the user's instruction and is a helpful, correct and clear answer."}],
}, "plain baseline rubric")
"""The `plain` prompt of `--compare`: one overall criterion, no descriptors."""

Progress = Callable[[EvalVariant, int], None]
"""Called with a variant and how many judgments (responses or orders) just finished."""


def read_pairs(path: Path) -> list[PreferencePair]:
    """Parse a pair file (JSONL of `{id, prompt, chosen, rejected, category?}`); a bad line says
    which line and what is wrong."""
    return read_jsonl_models(path, PreferencePair, "pair file", "prompt, chosen and rejected", "pairs",
                             default_id=str)



def select_pairs(pairs: Sequence[PreferencePair], limit: int | None, seed: int) -> list[PreferencePair]:
    """A seeded random sample of `limit` pairs, kept in file order (all pairs without a limit).

    Pair files are often sorted by category; a sample keeps every category represented.
    """
    if limit is None or limit >= len(pairs):
        return list(pairs)
    keep = sorted(random.Random(f"sample:{seed}").sample(range(len(pairs)), limit))
    return [pairs[i] for i in keep]


def presentation_order(count: int, seed: int) -> list[bool]:
    """Whether chosen is shown first, per pair: exactly half of the pairs (rounded up), shuffled
    with the seed, so chosen is never always first and the same seed gives the same order."""
    order = [True] * ((count + 1) // 2) + [False] * (count // 2)
    random.Random(f"order:{seed}").shuffle(order)
    return order


def main_variant(mode: Mode, votes: int, scores: ScoreKind) -> EvalVariant:
    """The single protocol `rubricgate eval` runs without `--compare`."""
    return EvalVariant(mode=mode, prompt="rubric", votes=votes, scores=scores)


def compare_variants(votes: int, first: Mode = "pointwise") -> list[EvalVariant]:
    """`--compare`: one protocol changed at a time around (`first`, rubric, k votes, sampled).

    Rubric vs plain prompt, k votes vs 1, sampled verdicts vs the expected score from one call's
    label probabilities, and the other mode. Only three variants need new judge calls (the k-vote
    sampled ones); the others re-read those votes from the cache.
    """
    other: Mode = "pairwise" if first == "pointwise" else "pointwise"
    candidates = [
        EvalVariant(mode=first, prompt="rubric", votes=votes, scores="sampled"),
        EvalVariant(mode=first, prompt="rubric", votes=1, scores="sampled"),
        EvalVariant(mode=first, prompt="rubric", votes=1, scores="expected"),
        EvalVariant(mode=first, prompt="plain", votes=votes, scores="sampled"),
        EvalVariant(mode=first, prompt="plain", votes=1, scores="expected"),
        EvalVariant(mode=other, prompt="rubric", votes=votes, scores="sampled"),
        EvalVariant(mode=other, prompt="rubric", votes=1, scores="sampled"),
        EvalVariant(mode=other, prompt="rubric", votes=1, scores="expected"),
    ]
    return list(dict.fromkeys(candidates))


async def evaluate(gateway: Gateway, pairs: Sequence[PreferencePair], rubric: Rubric,
                   variants: Sequence[EvalVariant], *, seed: int = 0, confidence: float = 0.95,
                   resamples: int = 2000, pairs_file: str = "", progress: Progress | None = None) -> EvalReport:
    """Judge every pair with every variant and report accuracy, ties, position bias and cost.

    Args:
        gateway: an opened gateway; its judge stack (cache, retries, limits) serves every variant.
        pairs: the labelled pairs (see `read_pairs`, `select_pairs`).
        rubric: the rubric of the `rubric` variants (`plain` ones use `PLAIN_RUBRIC`).
        variants: protocols to run, in order (see `main_variant`, `compare_variants`).
        seed: seeds the presentation order and the bootstrap intervals.
        confidence: level of the bootstrap intervals.
        resamples: bootstrap resamples.
        pairs_file: recorded in the report.
        progress: called as judgments finish.
    """
    if not variants:
        raise UsageError("nothing to evaluate: no protocol variant given")
    chosen_first = presentation_order(len(pairs), seed)
    shared = _SharedReplies(gateway.backend)
    reports: list[VariantReport] = []
    preferences: dict[str, list[float | None]] = {}
    for variant in variants:
        started = time.perf_counter()
        shared.saw_label_probs = False
        run = _pointwise if variant.mode == "pointwise" else _pairwise
        scores, results, template = await run(gateway, shared, variant, rubric, pairs, chosen_first, progress)
        wall_s = time.perf_counter() - started
        metrics = pair_metrics(scores, confidence, resamples, seed)
        unscored = [r for r in results if r.reward is None]
        reports.append(VariantReport(
            name=variant.name, variant=variant, rubric=(rubric if variant.prompt == "rubric" else PLAIN_RUBRIC).ref,
            template=template, pairs=len(pairs), scored=metrics.overall.scored,
            unscorable=len(pairs) - metrics.overall.scored, accuracy=metrics.overall.accuracy,
            ci=metrics.overall.ci, tie_rate=metrics.overall.tie_rate,
            accuracy_one_order=metrics.accuracy_one_order, position_bias_rate=metrics.position_bias_rate,
            first_position_rate=metrics.first_position_rate,
            agreement=mean_agreement([r.agreement for r in results if r.reward is not None])
            if variant.votes > 1 else None,
            label_probs=variant.scores == "expected" and shared.saw_label_probs,
            by_category=metrics.by_category,
            judge_calls=sum(r.votes for r in results), judge_calls_run=sum(r.judge_calls for r in results),
            tokens=sum((r.tokens for r in results), TokenUsage()), wall_s=wall_s,
            unscorable_reason=unscored[0].reason if unscored else None,
        ))
        preferences[variant.name] = [s.preference for s in scores]
    records = [
        PairRecord(id=pair.id, category=pair.category, chosen_first=chosen_first[i],
                   preferences={name: prefs[i] for name, prefs in preferences.items()})
        for i, pair in enumerate(pairs)
    ]
    return EvalReport(pairs_file=pairs_file, judge=gateway.backend.name, rubric=rubric.ref, pairs=len(pairs),
                      seed=seed, confidence=confidence, resamples=resamples, variants=reports, records=records)


_Run = tuple[list[PairScore], list[RewardResult], str]


async def _pointwise(gateway: Gateway, backend: JudgeBackend, variant: EvalVariant, rubric: Rubric,
                     pairs: Sequence[PreferencePair], chosen_first: list[bool], progress: Progress | None) -> _Run:
    """Score chosen and rejected alone (in the seeded order); the higher reward wins."""
    scorer = gateway.scorer(backend, votes=variant.votes, use_label_probs=variant.scores == "expected")
    used = rubric if variant.prompt == "rubric" else PLAIN_RUBRIC
    items: list[Item] = []
    for pair, first in zip(pairs, chosen_first, strict=True):
        chosen = Item(id=f"{pair.id}/chosen", prompt=pair.prompt, response=pair.chosen)
        rejected = Item(id=f"{pair.id}/rejected", prompt=pair.prompt, response=pair.rejected)
        items += [chosen, rejected] if first else [rejected, chosen]

    requests = [scorer.requests_for(used, item) for item in items]
    results = await _in_window(gateway, requests, lambda i: scorer.score(used, items[i], requests[i]),
                               variant, gateway.concurrency, progress)
    scores = []
    for i, (pair, first) in enumerate(zip(pairs, chosen_first, strict=True)):
        one, two = results[2 * i], results[2 * i + 1]
        for_chosen, for_rejected = (one, two) if first else (two, one)
        scores.append(PairScore(category=pair.category,
                                preference=pointwise_preference(for_chosen.reward, for_rejected.reward),
                                chosen_first=first))
    return scores, results, scorer.template.version


async def _pairwise(gateway: Gateway, backend: JudgeBackend, variant: EvalVariant, rubric: Rubric,
                    pairs: Sequence[PreferencePair], chosen_first: list[bool], progress: Progress | None) -> _Run:
    """Show both responses in both orders (the seeded order first); average the two preferences."""
    scorer = gateway.pairwise_scorer(backend, votes=variant.votes, use_label_probs=variant.scores == "expected")
    used = rubric if variant.prompt == "rubric" else PLAIN_RUBRIC
    matchups: list[Matchup] = []
    for pair, first in zip(pairs, chosen_first, strict=True):
        a_first = Matchup(id=f"{pair.id}/chosen-a", prompt=pair.prompt, response_a=pair.chosen,
                          response_b=pair.rejected)
        b_first = Matchup(id=f"{pair.id}/chosen-b", prompt=pair.prompt, response_a=pair.rejected,
                          response_b=pair.chosen)
        matchups += [a_first, b_first] if first else [b_first, a_first]

    requests = [scorer.requests_for(used, matchup) for matchup in matchups]
    results = await _in_window(gateway, requests, lambda i: scorer.compare(used, matchups[i], requests[i]),
                               variant, gateway.concurrency, progress)
    scores = []
    for i, (pair, first) in enumerate(zip(pairs, chosen_first, strict=True)):
        one, two = results[2 * i], results[2 * i + 1]
        as_a, as_b = (one, two) if first else (two, one)
        orders = (order_preference(as_a.reward, chosen_is_a=True), order_preference(as_b.reward, chosen_is_a=False))
        scores.append(PairScore(category=pair.category, preference=swap_averaged(*orders), orders=orders,
                                chosen_first=first))
    return scores, results, scorer.template.version


async def _in_window(gateway: Gateway, requests: list[list[JudgeRequest]],
                     judge: Callable[[int], Awaitable[RewardResult]], variant: EvalVariant, concurrency: int,
                     progress: Progress | None) -> list[RewardResult]:
    """Judge every unit, admitting only as many as the judge's concurrency can serve at once.

    A unit's deadline starts when its scoring starts, so units must not wait in a long queue
    first: on a one-at-a-time judge (the embedded model) a whole batch queued at once would run
    out of time. The window keeps about `concurrency` votes in flight and refills as units finish.
    """
    await _prefetch(gateway, requests)
    window = asyncio.Semaphore(max(1, -(-concurrency // variant.votes)))
    results: list[RewardResult | None] = [None] * len(requests)

    async def one(index: int) -> None:
        async with window:
            results[index] = await judge(index)
        if progress is not None:
            progress(variant, 1)

    try:
        async with asyncio.TaskGroup() as group:
            for index in range(len(requests)):
                group.create_task(one(index))
    finally:
        _forget(gateway)
    return [r for r in results if r is not None]


async def _prefetch(gateway: Gateway, requests: list[list[JudgeRequest]]) -> None:
    if gateway.cached is not None:
        await gateway.cached.prefetch([r for item_requests in requests for r in item_requests])


def _forget(gateway: Gateway) -> None:
    if gateway.cached is not None:
        gateway.cached.forget_prefetched()


class _SharedReplies(BackendWrapper):
    """This run's replies in memory, so variants share votes even with the cache off; also notes
    whether the judge returns label probabilities."""

    def __init__(self, inner: JudgeBackend) -> None:
        super().__init__(inner)
        self._replies: dict[str, JudgeReply] = {}
        self.saw_label_probs = False

    async def complete(self, request: JudgeRequest) -> JudgeReply:
        key = cache_key(self.name, request)
        reply = self._replies.get(key)
        if reply is None:
            reply = self._replies[key] = await self._inner.complete(request)
        else:
            reply = reply.model_copy(update={"cached": True})
        self.saw_label_probs = self.saw_label_probs or bool(reply.label_probs)
        return reply
