"""A pooled aiohttp session bound to the event loop that uses it.

aiohttp over httpx for the gateway's outbound calls: with ~100 requests in flight httpx's pool
managed 90-180 calls/s against the bench judge where aiohttp managed ~1,100 (the `openai:` and
`litellm:` rows of bench/throughput.py show the effect end to end). A session belongs to one
loop; a caller on another loop (a script's second `asyncio.run`) gets a fresh one. Proxy
variables (HTTPS_PROXY, NO_PROXY) are honoured, as they were with httpx.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping

import aiohttp


class LoopSession:
    """Lazily opens one `aiohttp.ClientSession` per running loop; `aclose` closes it."""

    def __init__(self, headers: Mapping[str, str], timeout_s: float, connect_timeout_s: float = 10.0,
                 max_connections: int = 1024) -> None:
        self._headers = dict(headers)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(connect_timeout_s, timeout_s))
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            self._session = aiohttp.ClientSession(
                headers=self._headers, timeout=self._timeout, json_serialize=json.dumps, trust_env=True,
                connector=aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=30))
            self._loop = loop
        return self._session

    async def aclose(self) -> None:
        if self._session is not None and self._loop is asyncio.get_running_loop():
            await self._session.close()  # a session of another (finished) loop went with that loop
        self._session = None


def error_message(content: bytes, *keys: str) -> str:
    """The human part of an error body: the first of `keys` found in a JSON object, else the text."""
    text = content.decode("utf-8", "replace")
    try:
        body = json.loads(text)
    except ValueError:
        return text
    for key in keys:
        value = body.get(key) if isinstance(body, dict) else None
        if isinstance(value, dict):
            value = value.get("message")
        if value:
            return str(value)
    return str(body)
