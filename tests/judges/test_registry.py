"""Judge specs: defaults that depend on the judge kind."""

from __future__ import annotations

from rubricgate.integrations.trl import _gateway_config
from rubricgate.judges.registry import default_concurrency


def test_a_batching_engine_gets_a_full_batch_unless_told_otherwise() -> None:
    assert default_concurrency("vllm:Qwen/Qwen3-8B", 8) == 256
    assert default_concurrency("openai:m", 8) == 8 and default_concurrency("llamacpp:default", 32) == 32
    assert _gateway_config("vllm:m", 1, None, None, None, None, {}).scoring.concurrency == 256
    assert _gateway_config("vllm:m", 1, None, None, None, 12, {}).scoring.concurrency == 12
    assert _gateway_config("openai:m", 1, None, None, None, None, {}).scoring.concurrency == 8

