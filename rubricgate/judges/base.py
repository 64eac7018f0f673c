"""The one protocol every judge backend implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pydantic import SecretStr

from rubricgate.models.config import JudgeCapabilities
from rubricgate.models.judging import JudgeReply, JudgeRequest


@runtime_checkable
class JudgeBackend(Protocol):
    """Sends one rendered judge prompt and returns one sampled reply."""

    @property
    def name(self) -> str:
        """Stable id such as `litellm:openai/gpt-4o-mini`; part of every cache key."""
        ...

    @property
    def prefers_rationale(self) -> bool:
        """Whether the verdict should ask for rationales (tiny in-process models skip them)."""
        ...

    @property
    def capabilities(self) -> JudgeCapabilities:
        """Batching, label probabilities, free text, context size and default concurrency."""
        ...

    async def complete(self, request: JudgeRequest) -> JudgeReply:
        """Raises JudgeUnavailable (retry may help) or JudgeRejected (it won't)."""
        ...

    async def aclose(self) -> None:
        """Release clients, threads and models."""
        ...


class BackendWrapper:
    """Base of wrappers (cache, retries, limits) that add behaviour and forward the rest."""

    def __init__(self, inner: JudgeBackend) -> None:
        self._inner = inner

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def prefers_rationale(self) -> bool:
        return self._inner.prefers_rationale

    @property
    def capabilities(self) -> JudgeCapabilities:
        return self._inner.capabilities

    async def complete(self, request: JudgeRequest) -> JudgeReply:
        return await self._inner.complete(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def redact(text: str, secret: SecretStr | None) -> str:
    """`text` without the key or its recognisable ends: providers echo keys in auth errors."""
    if secret is None:
        return text
    value = secret.get_secret_value()
    for fragment in sorted({value, value[:8], value[-8:]} - {""}, key=len, reverse=True):
        text = text.replace(fragment, "***")
    return text
