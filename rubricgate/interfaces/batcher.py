"""Gathers items from many concurrent HTTP callers into batches toward the gateway.

OpenRLHF and other trainers send one sample per request, hundreds at once. Scoring them as
batches gives one cache lookup per batch instead of one per vote, and lets batch-aware
engines see many items together. A batch closes when it is full or after `window_s`.

A caller waits at most the item deadline (plus a little): time spent before the scorer's own
deadline starts (batching, cache lookups, a CPU-starved loop) must not push a reply past it. Items
still running then are answered `reward: null` with a reason and finish in the background, so
their judgments are still cached.

Isolation: a batch mixes items from many callers, so an unexpected error that escapes the
gateway for a whole batch is retried item by item; only the item that fails again is answered
`reward: null` (reason `internal_error: ...`), and our own errors (`UsageError`, no judge
reachable) go to the callers whose items raised them.

Drain: `begin_drain(timeout_s)` (on SIGTERM) starts the clock. Admitted callers are answered as
their items finish; when the drain timeout passes, each item still unfinished is answered
`reward: null` with reason `shutdown: ...`, and `drain()` (the lifespan) cancels what is left.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from rubricgate.errors import error_code
from rubricgate.interfaces.gateway import Gateway
from rubricgate.models.reward import Item, RewardResult
from rubricgate.models.rubric import Rubric


logger = logging.getLogger(__name__)


@dataclass
class _Pending:
    items: list[Item] = field(default_factory=list)
    futures: list[asyncio.Future[RewardResult]] = field(default_factory=list)


class Batcher:
    """`await batcher.score(rubric, items, votes)` — same answers as the gateway, batched."""

    def __init__(self, gateway: Gateway, max_items: int = 256, window_s: float = 0.005,
                 drain_timeout_s: float = 30.0) -> None:
        self._gateway = gateway
        self._drain_timeout_s = drain_timeout_s
        self._drain_deadline: float | None = None
        """`time.monotonic()` when the drain ends; None while serving normally."""
        self._drained = asyncio.Event()
        """Set when the drain timeout has passed: callers still waiting are answered `shutdown`."""
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
        gathered = asyncio.ensure_future(asyncio.gather(*futures))
        drained = asyncio.ensure_future(self._drained.wait())
        waited: list[asyncio.Future[Any]] = [gathered, drained]
        try:
            await asyncio.wait(waited, timeout=self._wait_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            drained.cancel()
        if gathered.done():
            return list(gathered.result())  # raises the batch's error, if it failed
        gathered.cancel()  # the batch goes on (its flush task is not ours to cancel); answer now
        late = self._shutdown if self._drained.is_set() else self._late
        return [f.result() if f.done() and not f.cancelled() and f.exception() is None else late(rubric, item)
                for f, item in zip(futures, items, strict=True)]

    def _late(self, rubric: Rubric, item: Item) -> RewardResult:
        return RewardResult(id=item.id, reward=None, rubric=rubric.ref, judge=self._gateway.backend.name, votes=0,
                            reason=f"DeadlineExceeded: not answered within {self._wait_s:g}s of arrival "
                                   "(server overloaded); its judgments finish in the background and are cached")

    def _shutdown(self, rubric: Rubric, item: Item) -> RewardResult:
        return RewardResult(id=item.id, reward=None, rubric=rubric.ref, judge=self._gateway.backend.name, votes=0,
                            reason=f"shutdown: the server is stopping and this item was not scored within "
                                   f"its drain timeout ({self._drain_timeout_s:g}s)")

    def begin_drain(self, timeout_s: float | None = None) -> None:
        """Start the drain clock (idempotent): after `timeout_s` (default: the configured drain
        timeout), every caller still waiting is answered, unfinished items `shutdown`."""
        if self._drain_deadline is not None:
            return
        timeout_s = self._drain_timeout_s if timeout_s is None else timeout_s
        self._drain_deadline = time.monotonic() + timeout_s
        asyncio.get_running_loop().call_later(timeout_s, self._drained.set)

    async def drain(self) -> None:
        """Graceful shutdown: wait for every scheduled batch until the drain timeout (counted from
        `begin_drain`, or from now), then cancel the batches still running."""
        self.begin_drain()
        assert self._drain_deadline is not None
        while self._tasks:
            left = self._drain_deadline - time.monotonic()
            if left <= 0:
                break
            await asyncio.wait(list(self._tasks), timeout=left)
        self._drained.set()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            logger.warning("drain timeout: cancelled %d unfinished batch(es)", len(self._tasks))
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
            if self._drained.is_set():
                results: list[RewardResult | BaseException] = [self._shutdown(rubric, i) for i in pending.items]
            else:
                results = list(await self._gateway.score(pending.items, rubric, votes=key[1]))
        except asyncio.CancelledError:  # the drain timeout passed: the callers are answered `shutdown`
            for future, item in zip(pending.futures, pending.items, strict=True):
                if not future.done():
                    future.set_result(self._shutdown(rubric, item))
            raise
        except Exception as exc:
            if error_code(exc) != "internal_error" or len(pending.items) == 1:
                results = [exc] * len(pending.items)  # shared (no judge, usage) or the item's own
            else:  # an unexpected error for the whole batch: find the item(s) behind it
                logger.warning("batch of %d failed (%s); scoring its items one by one", len(pending.items),
                               type(exc).__name__)
                alone = await asyncio.gather(*(self._gateway.score([item], rubric, votes=key[1])
                                               for item in pending.items), return_exceptions=True)
                results = [r[0] if isinstance(r, list) else r for r in alone]
        for future, item, result in zip(pending.futures, pending.items, results, strict=True):
            if future.done():
                continue
            if isinstance(result, RewardResult):
                future.set_result(result)
            elif isinstance(result, Exception) and error_code(result) == "internal_error":
                logger.error("unexpected error scoring item %s", item.id, exc_info=result)
                future.set_result(self._gateway.scorer().failed(rubric, item, result))
            else:
                future.set_exception(result if isinstance(result, Exception) else RuntimeError(repr(result)))
