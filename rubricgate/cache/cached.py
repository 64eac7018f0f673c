"""CachedBackend: a judge wrapper that answers from the cache and stores every good reply.

It sits outermost, so a hit skips retries and concurrency limits. Identical requests in
flight at once are coalesced into one judge call. Replies that do not parse into a complete
verdict are never stored: failures are not judgments.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from rubricgate.cache.keys import cache_key
from rubricgate.cache.store import JudgmentStore, StoredJudgment
from rubricgate.errors import VerdictParseError
from rubricgate.judges.base import BackendWrapper, JudgeBackend
from rubricgate.judges.parse import is_complete, parse_verdict
from rubricgate.models.judging import JudgeReply, JudgeRequest, TokenUsage


@dataclass
class CacheCounters:
    """What the cache did since it was opened."""

    hits: int = 0
    misses: int = 0
    coalesced: int = 0
    stored: int = 0
    tokens_spent: TokenUsage = field(default_factory=TokenUsage)
    """Tokens of the replies the judge produced (misses), i.e. what this process paid for."""


class CachedBackend(BackendWrapper):
    """Same protocol as any judge; the wrapped judge is only called on a miss."""

    def __init__(self, inner: JudgeBackend, store: JudgmentStore) -> None:
        super().__init__(inner)
        self._store = store
        self._prefetched: dict[str, JudgeReply] = {}
        self._looked_up: set[str] = set()
        self._inflight: dict[str, asyncio.Future[JudgeReply]] = {}
        self.counters = CacheCounters()

    async def prefetch(self, requests: Sequence[JudgeRequest]) -> int:
        """Load the cached replies of a whole batch in a few queries; returns how many were found."""
        keys = [cache_key(self.name, r) for r in requests]
        found = await self._store.get_many(keys)
        self._prefetched.update(found)
        self._looked_up.update(keys)
        return len(found)

    def forget_prefetched(self) -> None:
        """Drop the batch's prefetched replies (call when the batch is done)."""
        self._prefetched.clear()
        self._looked_up.clear()

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
        if key not in self._looked_up:
            hit = (await self._store.get_many([key])).get(key)
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
            await self._store.put(meta, reply)
            self.counters.stored += 1
        return reply
