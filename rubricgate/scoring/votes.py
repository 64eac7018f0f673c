"""Running one item's votes: each judge call caught on its own, all under one deadline."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from rubricgate.errors import JudgeError, VerdictParseError
from rubricgate.judges.base import JudgeBackend
from rubricgate.judges.parse import is_complete, parse_verdict
from rubricgate.models.judging import JudgeReply, JudgeRequest, Verdict


@dataclass(frozen=True)
class Vote:
    """What one vote produced: a reply and verdict, or the error that stopped it."""

    reply: JudgeReply | None = None
    verdict: Verdict | None = None
    error: str | None = None
    complete: bool = False


async def collect_votes(backend: JudgeBackend, requests: list[JudgeRequest], deadline_s: float,
                        deadline_name: str = "item deadline") -> list[Vote]:
    """Every vote under the deadline; late votes are cancelled, finished ones kept, in request order."""
    if not requests:
        return []
    tasks = [asyncio.create_task(_vote(backend, r)) for r in requests]
    done, pending = await asyncio.wait(tasks, timeout=deadline_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    late = Vote(error=f"DeadlineExceeded: no reply within the {deadline_s:g}s {deadline_name}")
    return [t.result() if t in done else late for t in tasks]


async def _vote(backend: JudgeBackend, request: JudgeRequest) -> Vote:
    try:
        reply = await backend.complete(request)
    except JudgeError as exc:
        return Vote(error=f"{type(exc).__name__}: {exc}")
    try:
        verdict = parse_verdict(reply, request.form)
    except VerdictParseError as exc:
        return Vote(reply=reply, error=f"VerdictParseError: {exc}")
    return Vote(reply=reply, verdict=verdict, complete=is_complete(verdict, request.form))
