"""Gathers items from many concurrent HTTP callers into batches toward the gateway.

OpenRLHF and other trainers send one sample per request, hundreds at once. Scoring them as
batches gives one cache lookup per batch instead of one per vote, and lets batch-aware
engines see many items together. A batch closes when it is full or after `window_s`.

A caller waits at most the item deadline (plus a little): time spent before the scorer's own
deadline starts (batching, cache lookups, a CPU-starved loop) must not push a reply past it. Items
still running then are answered `reward: null` with a reason and finish in the background, so
their judgments are still cached.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from rubricgate.interfaces.gateway import Gateway
from rubricgate.models.reward import Item, RewardResult
from rubricgate.models.rubric import Rubric


@dataclass
class _Pending:
    items: list[Item] = field(default_factory=list)
    futures: list[asyncio.Future[RewardResult]] = field(default_factory=list)


class Batcher:
    """`await batcher.score(rubric, items, votes)` — same answers as the gateway, batched."""

    def __init__(self, gateway: Gateway, max_items: int = 256, window_s: float = 0.005) -> None:
        self._gateway = gateway
        self._max_items = max_items
        self._window_s = window_s
        deadline = gateway.config.scoring.deadline_s
        self._wait_s = deadline * 1.1 + 0.25
        """How long a caller waits: past the scorer's deadline, so its partial results win the race."""
        self._pending: dict[tuple[str, int | None], tuple[Rubric, _Pending]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def score(self, rubric: Rubric, items: list[Item], votes: int | None = None) -> list[RewardResult]:
        """Queue `items` for `rubric` and wait for their results, in order."""
        loop = asyncio.get_running_loop()
        key = (rubric.ref, votes)
        futures = []
        for item in items:
            entry = self._pending.get(key)
            if entry is None:
                entry = self._pending[key] = (rubric, _Pending())
                self._schedule(key, self._window_s)
            future: asyncio.Future[RewardResult] = loop.create_future()
            entry[1].items.append(item)
            entry[1].futures.append(future)
            futures.append(future)
            if len(entry[1].items) >= self._max_items:
                self._schedule(key, 0.0)
        try:
            return list(await asyncio.wait_for(asyncio.gather(*futures), self._wait_s))
        except TimeoutError:  # the batch goes on (its flush task is not ours to cancel); answer now
            return [f.result() if f.done() and not f.cancelled() else self._late(rubric, item)
                    for f, item in zip(futures, items, strict=True)]

    def _late(self, rubric: Rubric, item: Item) -> RewardResult:
        return RewardResult(id=item.id, reward=None, rubric=rubric.ref, judge=self._gateway.backend.name, votes=0,
                            reason=f"DeadlineExceeded: not answered within {self._wait_s:g}s of arrival "
                                   "(server overloaded); its judgments finish in the background and are cached")

    async def drain(self) -> None:
        """Wait for every scheduled batch (graceful shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _schedule(self, key: tuple[str, int | None], delay_s: float) -> None:
        task = asyncio.create_task(self._flush_after(key, delay_s))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush_after(self, key: tuple[str, int | None], delay_s: float) -> None:
        if delay_s:
            await asyncio.sleep(delay_s)
        entry = self._pending.pop(key, None)
        if entry is None:
            return  # flushed already (it filled up before the window closed)
        rubric, pending = entry
        try:
            results = await self._gateway.score(pending.items, rubric, votes=key[1])
        except BaseException as exc:  # hand any failure to every waiting caller, then re-raise cancels
            for future in pending.futures:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else RuntimeError("cancelled"))
            if not isinstance(exc, Exception):
                raise
            return
        for future, result in zip(pending.futures, results, strict=True):
            if not future.done():
                future.set_result(result)
