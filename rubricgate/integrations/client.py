"""A Python client for a running `rubricgate serve` (`POST /v1/reward`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import json

import aiohttp

from rubricgate.errors import JudgeRejected, JudgeUnavailable, UsageError
from rubricgate.http_pool import LoopSession, error_message
from rubricgate.integrations._runtime import loop_thread
from rubricgate.models.reward import Item, RewardResult
from rubricgate.models.rubric import Rubric


class RewardClient:
    """Scores items on a remote gateway. One pooled HTTP client per instance; close with `aclose`.

    Args:
        base_url: e.g. `http://127.0.0.1:8000`.
        api_key: Bearer token, when the server requires one.
        timeout_s: per-request timeout; a batch waits for every judge call behind it.
    """

    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float = 600.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._pool = LoopSession({"Authorization": f"Bearer {api_key}"} if api_key else {}, timeout_s)

    async def score(self, items: Sequence[Item], rubric: str | Rubric, votes: int | None = None) -> list[RewardResult]:
        """Rewards for `items` in order; raises on transport or server errors."""
        payload: dict[str, Any] = {
            "rubric": rubric if isinstance(rubric, str) else rubric.model_dump(mode="json", by_alias=True),
            "items": [item.model_dump(mode="json", exclude_none=True) for item in items],
        }
        if votes is not None:
            payload["votes"] = votes
        try:
            async with self._pool.get().post(f"{self.base_url}/v1/reward", json=payload) as response:
                status, content = response.status, await response.read()
        except TimeoutError as exc:
            raise JudgeUnavailable(f"rubricgate server {self.base_url}: no answer in time") from exc
        except aiohttp.ClientError as exc:
            raise JudgeUnavailable(f"rubricgate server {self.base_url}: {type(exc).__name__}: {exc}") from exc
        message = error_message(content, "message", "detail")[:300]
        if status in (400, 401, 403, 404, 413, 422):
            raise UsageError(f"rubricgate server {self.base_url} refused the request ({status}): {message}")
        if status >= 500 or status == 429:
            raise JudgeUnavailable(f"rubricgate server {self.base_url}: {status} {message}")
        if status != 200:
            raise JudgeRejected(f"rubricgate server {self.base_url}: {status} {message}")
        return [RewardResult.model_validate(r) for r in json.loads(content)["results"]]

    def score_sync(self, items: Sequence[Item], rubric: str | Rubric, votes: int | None = None) -> list[RewardResult]:
        """Blocking twin of `score` (runs on the shared background loop)."""
        return loop_thread().run(self.score(items, rubric, votes))

    async def aclose(self) -> None:
        await self._pool.aclose()
