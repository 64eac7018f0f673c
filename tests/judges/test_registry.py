"""Judge specs and what each judge says it can do (capabilities, not spec-string tests)."""

from __future__ import annotations

import asyncio

from rubricgate.integrations.trl import _gateway_config
from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.judges.fake import FakeBackend, best_reply
from rubricgate.judges.registry import get_backend
from rubricgate.models.config import JudgeCapabilities, ScoringConfig


def test_http_judges_state_their_capabilities() -> None:
    plain, probs = get_backend("openai:m"), get_backend("openai:m+logprobs")
    assert plain.capabilities.concurrency == 32 and plain.capabilities.free_text
    assert not plain.capabilities.label_probs and probs.capabilities.label_probs
    assert get_backend("litellm:openai/m").capabilities.concurrency == 32


def test_a_batching_engine_gets_a_full_batch_unless_told_otherwise() -> None:
    engine = FakeBackend(lambda r: best_reply(r.form), capabilities=JudgeCapabilities(concurrency=256, batches=True))

    async def limit(config: GatewayConfig) -> int:
        async with Gateway(config, engine, None) as gateway:
            return gateway.concurrency

    assert asyncio.run(limit(GatewayConfig(judge="fake:engine"))) == 256
    assert asyncio.run(limit(GatewayConfig(judge="fake:engine", scoring=ScoringConfig(concurrency=12)))) == 12
    assert _gateway_config("fake:best", 1, None, None, None, 12, {}).scoring.concurrency == 12
    assert _gateway_config("fake:best", 1, None, None, None, None, {}).scoring.concurrency is None
