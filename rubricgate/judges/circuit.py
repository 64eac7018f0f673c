"""Stop hammering a dead judge (circuit breaker) and let another judge take over (fallback).

`CircuitBreakerBackend` sits inside the retries and the concurrency limit, right on the judge,
so it sees every attempt. After `failure_threshold` consecutive transient failures it opens:
calls fail at once with `CircuitOpen` (which retries skip) for `open_s` seconds; then one probe
call goes through, and its success closes the circuit again (its failure re-opens it).

`FallbackBackend` answers a vote with the fallback judge when the main judge is unavailable
(retries exhausted, or its circuit open). The fallback's replies carry the fallback's name, so
the scorer flags the result `fallback`, and each judge has its own cache entries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Literal

from rubricgate.errors import CircuitOpen, JudgeError, JudgeRejected, JudgeUnavailable
from rubricgate.judges.base import BackendWrapper, JudgeBackend
from rubricgate.models.config import CircuitPolicy, JudgeCapabilities
from rubricgate.models.judging import JudgeReply, JudgeRequest

logger = logging.getLogger(__name__)
CircuitState = Literal["closed", "open", "half_open"]


class CircuitBreakerBackend(BackendWrapper):
    """Fails fast while the wrapped judge is considered down; see the module docstring."""

    def __init__(self, inner: JudgeBackend, policy: CircuitPolicy | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(inner)
        self._policy = policy or CircuitPolicy()
        self._clock = clock
        self._state: CircuitState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self.opened = 0
        """Times the circuit opened (for metrics and tests)."""
        self.refused = 0
        """Calls refused without reaching the judge."""

    @property
    def state(self) -> CircuitState:
        if self._state == "open" and self._clock() - self._opened_at >= self._policy.open_s:
            return "half_open"
        return self._state

    async def complete(self, request: JudgeRequest) -> JudgeReply:
        probe = self._admit()
        try:
            reply = await self._inner.complete(request)
        except JudgeUnavailable:
            self._failed(probe)
            raise
        except JudgeError:
            self._succeeded(probe)  # the judge answered (a 4xx): it is up, the request is the problem
            raise
        except BaseException:
            if probe:
                self._probing = False  # cancelled (item deadline): let the next call probe
            raise
        self._succeeded(probe)
        return reply

    def _admit(self) -> bool:
        """True when this call is the half-open probe; raises CircuitOpen when it may not run."""
        state = self.state
        if state == "closed":
            return False
        if state == "half_open" and not self._probing:
            self._state = "half_open"
            self._probing = True
            return True
        self.refused += 1
        wait = max(0.0, self._policy.open_s - (self._clock() - self._opened_at))
        raise CircuitOpen(f"{self.name}: circuit open after {self._policy.failure_threshold} failures in a row; "
                          f"not calling it for {wait:.1f}s more" + (" (a probe is in flight)" if self._probing else ""),
                          retry_after_s=wait or None)

    def _failed(self, probe: bool) -> None:
        self._failures += 1
        if probe or (self._state == "closed" and self._failures >= self._policy.failure_threshold):
            if self._state == "closed":
                self.opened += 1
                logger.warning("judge %s: circuit opened after %d failures in a row; retrying it in %gs",
                               self.name, self._failures, self._policy.open_s)
            self._state = "open"
            self._opened_at = self._clock()
            self._probing = False

    def _succeeded(self, probe: bool) -> None:
        self._failures = 0
        if probe:
            self._state = "closed"
            self._probing = False
            logger.warning("judge %s: probe succeeded, circuit closed", self.name)


class FallbackBackend:
    """The main judge, or the fallback judge when the main one is unavailable."""

    def __init__(self, primary: JudgeBackend, fallback: JudgeBackend) -> None:
        self._primary = primary
        self._fallback = fallback
        self.used = 0
        """Votes the fallback answered (or tried to)."""

    @property
    def name(self) -> str:
        return self._primary.name

    @property
    def prefers_rationale(self) -> bool:
        return self._primary.prefers_rationale

    @property
    def capabilities(self) -> JudgeCapabilities:
        return self._primary.capabilities

    @property
    def fallback_name(self) -> str:
        return self._fallback.name

    async def complete(self, request: JudgeRequest) -> JudgeReply:
        try:
            return await self._primary.complete(request)
        except JudgeUnavailable as exc:
            primary_error = exc
        self.used += 1
        try:
            return await self._fallback.complete(request)
        except JudgeUnavailable as exc:
            raise JudgeUnavailable(f"{primary_error}; fallback {self._fallback.name}: {exc}") from exc
        except JudgeRejected as exc:
            raise JudgeRejected(f"{primary_error}; fallback {self._fallback.name}: {exc}") from exc

    async def aclose(self) -> None:
        try:
            await self._primary.aclose()
        finally:
            await self._fallback.aclose()
