"""Gathers items from many concurrent HTTP callers into batches toward the gateway.

OpenRLHF and other trainers send one sample per request, hundreds at once. Scoring them as
batches gives one cache lookup per batch instead of one per vote, and lets batch-aware
engines see many items together. A batch closes when it is full or after `window_s`.
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
        return list(await asyncio.gather(*futures))

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
