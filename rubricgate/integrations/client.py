"""A Python client for a running `rubricgate serve` (`POST /v1/reward`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from rubricgate.errors import JudgeRejected, JudgeUnavailable, UsageError
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
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = httpx.Timeout(timeout_s, connect=10.0)
        self._client: httpx.AsyncClient | None = None

    async def score(self, items: Sequence[Item], rubric: str | Rubric, votes: int | None = None) -> list[RewardResult]:
        """Rewards for `items` in order; raises on transport or server errors."""
        payload: dict[str, Any] = {
            "rubric": rubric if isinstance(rubric, str) else rubric.model_dump(mode="json", by_alias=True),
            "items": [item.model_dump(mode="json", exclude_none=True) for item in items],
        }
        if votes is not None:
            payload["votes"] = votes
        if self._client is None:
            self._client = httpx.AsyncClient(base_url=self.base_url, headers=self._headers, timeout=self._timeout)
        try:
            response = await self._client.post("/v1/reward", json=payload)
        except httpx.TransportError as exc:
            raise JudgeUnavailable(f"rubricgate server {self.base_url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code in (400, 401, 403, 404, 413, 422):
            raise UsageError(f"rubricgate server {self.base_url} refused the request "
                             f"({response.status_code}): {_message(response)}")
        if response.status_code >= 500 or response.status_code == 429:
            raise JudgeUnavailable(f"rubricgate server {self.base_url}: {response.status_code} {_message(response)}")
        if response.status_code != 200:
            raise JudgeRejected(f"rubricgate server {self.base_url}: {response.status_code} {_message(response)}")
        return [RewardResult.model_validate(r) for r in response.json()["results"]]

    def score_sync(self, items: Sequence[Item], rubric: str | Rubric, votes: int | None = None) -> list[RewardResult]:
        """Blocking twin of `score` (runs on the shared background loop)."""
        return loop_thread().run(self.score(items, rubric, votes))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("message") or body.get("detail") or body)[:300]
    return str(body)[:300]
