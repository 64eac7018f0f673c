"""CachedBackend: a judge wrapper that answers from the cache and stores every good reply.

It sits outermost, so a hit skips retries and concurrency limits. Identical requests in
flight at once are coalesced into one judge call. Replies that do not parse into a complete
verdict are never stored: failures are not judgments.

A cache that cannot be read or written (a lock held past the busy timeout, a full disk, a
read-only file, a database server gone) never fails a vote: the judge answers it uncached and
the reply says `cache_unavailable`. Faults come in bursts, so after one the failing kind of
operation (read or write) is skipped for a few seconds, and a burst is logged once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from rubricgate.cache.keys import cache_key
from rubricgate.cache.store import JudgmentStore, StoredJudgment
from rubricgate.errors import CacheError, VerdictParseError
from rubricgate.judges.base import BackendWrapper, JudgeBackend
from rubricgate.judges.parse import is_complete, parse_verdict
from rubricgate.models.judging import JudgeReply, JudgeRequest, TokenUsage

logger = logging.getLogger(__name__)


@dataclass
class CacheCounters:
    """What the cache did since it was opened."""

    hits: int = 0
    misses: int = 0
    coalesced: int = 0
    stored: int = 0
    tokens_spent: TokenUsage = field(default_factory=TokenUsage)
    """Tokens of the replies the judge produced (misses), i.e. what this process paid for."""
    errors: int = 0
    """Reads and writes the store failed (the votes behind them were judged uncached)."""


Operation = Literal["read", "write"]


@dataclass
class _Burst:
    """One kind of store operation failing: skipped until `retry_at`, logged once per burst."""

    failing: bool = False
    retry_at: float = 0.0
    errors: int = 0


class CachedBackend(BackendWrapper):
    """Same protocol as any judge; the wrapped judge is only called on a miss.

    Args:
        inner: the judge stack to call on a miss.
        store: where replies are read and written.
        retry_s: after a failed read (write), reads (writes) skip the store for this long.
    """

    def __init__(self, inner: JudgeBackend, store: JudgmentStore, retry_s: float = 5.0) -> None:
        super().__init__(inner)
        self._store = store
        self._retry_s = retry_s
        self._prefetched: dict[str, JudgeReply] = {}
        self._looked_up: set[str] = set()
        self._unread: set[str] = set()
        """Keys whose batch lookup failed: their votes go to the judge without another try."""
        self._inflight: dict[str, asyncio.Future[JudgeReply]] = {}
        self._bursts: dict[Operation, _Burst] = {"read": _Burst(), "write": _Burst()}
        self.counters = CacheCounters()

    async def prefetch(self, requests: Sequence[JudgeRequest]) -> int:
        """Load the cached replies of a whole batch in a few queries; returns how many were found.

        When the store cannot be read, nothing is found and the batch's votes go to the judge.
        """
        keys = [cache_key(self.name, r) for r in requests]
        found = await self._read(keys)
        self._looked_up.update(keys)
        if found is None:
            self._unread.update(keys)
            return 0
        self._prefetched.update(found)
        return len(found)

    def forget_prefetched(self) -> None:
        """Drop the batch's prefetched replies (call when the batch is done)."""
        self._prefetched.clear()
        self._looked_up.clear()
        self._unread.clear()

    async def complete(self, request: JudgeRequest) -> JudgeReply:
        key = cache_key(self.name, request)
        hit = self._prefetched.get(key)
        if hit is not None:
            self.counters.hits += 1
            return hit
        pending = self._inflight.get(key)
        if pending is not None:  # same vote already being looked up or judged: share it
            self.counters.coalesced += 1
            return (await asyncio.shield(pending)).model_copy(update={"cached": True})
        task = asyncio.ensure_future(self._lookup_or_judge(key, request))
        self._inflight[key] = task
        task.add_done_callback(lambda done: self._settled(key, done))
        # Shielded: a caller's deadline must not cancel a judgment others share or that will be cached.
        return await asyncio.shield(task)

    def _settled(self, key: str, task: asyncio.Future[JudgeReply]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved: callers past their deadline no longer await it, and a failure is not news

    async def _lookup_or_judge(self, key: str, request: JudgeRequest) -> JudgeReply:
        usable = key not in self._unread
        if key not in self._looked_up:
            found = await self._read([key])
            usable = found is not None
            hit = found.get(key) if found else None
            if hit is not None:
                self.counters.hits += 1
                return hit
        self.counters.misses += 1
        reply = await self._inner.complete(request)
        self.counters.tokens_spent += reply.usage
        try:
            complete = is_complete(parse_verdict(reply, request.form), request.form)
        except VerdictParseError:
            complete = False
        if complete:
            meta = StoredJudgment(key=key, judge=self.name, rubric=request.rubric_ref,
                                  template=request.template_version, sample_index=request.sample_index)
            if await self._write(meta, reply):
                self.counters.stored += 1
            else:
                usable = False
        return reply if usable else reply.model_copy(update={"cache_unavailable": True})

    async def _read(self, keys: list[str]) -> dict[str, JudgeReply] | None:
        """The stored replies of `keys`, or None when the store cannot be read now."""
        if self._skipping("read"):
            return None
        try:
            found = await self._store.get_many(keys)
        except CacheError as exc:
            self._failed("read", exc)
            return None
        self._worked("read")
        return found

    async def _write(self, meta: StoredJudgment, reply: JudgeReply) -> bool:
        """Store one reply; False when the store cannot be written now (the reply is kept anyway)."""
        if self._skipping("write"):
            return False
        try:
            await self._store.put(meta, reply)
        except CacheError as exc:
            self._failed("write", exc)
            return False
        self._worked("write")
        return True

    def _skipping(self, operation: Operation) -> bool:
        burst = self._bursts[operation]
        return burst.failing and time.monotonic() < burst.retry_at

    def _failed(self, operation: Operation, exc: CacheError) -> None:
        burst = self._bursts[operation]
        self.counters.errors += 1
        burst.errors += 1
        burst.retry_at = time.monotonic() + self._retry_s
        if not burst.failing:
            burst.failing = True
            # The message names the database with its password masked (see store.safe_url).
            logger.warning("cache %s failed, judging votes uncached (flag cache_unavailable) and retrying the "
                           "cache every %gs: %s", operation, self._retry_s, exc)

    def _worked(self, operation: Operation) -> None:
        burst = self._bursts[operation]
        if burst.failing:
            logger.info("cache %s works again after %d failure(s)", operation, burst.errors)
            self._bursts[operation] = _Burst()
