"""Retries for transient judge failures, in one place, and a per-judge concurrency limit."""

from __future__ import annotations

import asyncio

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_random_exponential

from rubricgate.errors import CircuitOpen, JudgeUnavailable
from rubricgate.judges.base import BackendWrapper, JudgeBackend
from rubricgate.models.config import RetryPolicy
from rubricgate.models.judging import JudgeReply, JudgeRequest


class RetryingBackend(BackendWrapper):
    """Retries `JudgeUnavailable` with jittered exponential backoff; anything else passes through.

    The item deadline (in the scorer) bounds the total time, so retries never outlive it.
    """

    def __init__(self, inner: JudgeBackend, policy: RetryPolicy) -> None:
        super().__init__(inner)
        self._policy = policy
        self._backoff = wait_random_exponential(multiplier=policy.initial_wait_s, max=policy.max_wait_s)
        self.retries = 0
        """Retries made so far (for metrics and tests)."""
        self.attempts = 0
        """Requests handed to the judge so far, retries included (an open circuit sends none)."""

    async def complete(self, request: JudgeRequest) -> JudgeReply:
        retrying = AsyncRetrying(
            retry=retry_if_exception(_transient),
            stop=stop_after_attempt(self._policy.attempts),
            wait=self._wait,
            before_sleep=self._count,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                self.attempts += 1
                try:
                    return await self._inner.complete(request)
                except CircuitOpen:
                    self.attempts -= 1  # refused before any request was sent
                    raise
        raise AssertionError("unreachable: tenacity reraises the last error")

    def _wait(self, state: RetryCallState) -> float:
        backoff = float(self._backoff(state))
        error = state.outcome.exception() if state.outcome else None
        hinted = getattr(error, "retry_after_s", None)
        if self._policy.honour_retry_after and hinted is not None:
            return float(min(max(hinted, backoff), self._policy.max_wait_s))
        return backoff

    def _count(self, state: RetryCallState) -> None:
        self.retries += 1


def _transient(error: BaseException) -> bool:
    """Worth another attempt: a transient failure, but not an open circuit (no call was made)."""
    return isinstance(error, JudgeUnavailable) and not isinstance(error, CircuitOpen)


class LimitedBackend(BackendWrapper):
    """At most `limit` calls in flight to the wrapped judge."""

    def __init__(self, inner: JudgeBackend, limit: int) -> None:
        super().__init__(inner)
        self._slots = asyncio.Semaphore(limit)

    async def complete(self, request: JudgeRequest) -> JudgeReply:
        async with self._slots:
            return await self._inner.complete(request)
