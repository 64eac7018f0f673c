"""End to end with the real embedded model: GGUF from its PyPI package, llama.cpp on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.judges.embedded_model import ensure_embedded_model
from rubricgate.models.config import BackendConfig, ScoringConfig
from rubricgate.models.reward import Item

ITEMS = [
    Item(id="good", prompt="What is the capital of France?", response="The capital of France is Paris."),
    Item(id="off", prompt="What is the capital of France?", response="I like turtles."),
    Item(id="chat", prompt="How do I reverse a list in Python?", response="Use my_list[::-1] for a reversed copy."),
]


def config(model_dir: Path, cache_url: str, votes: int) -> GatewayConfig:
    return GatewayConfig(judge="llamacpp:default", backend=BackendConfig(model_dir=model_dir),
                         scoring=ScoringConfig(votes=votes), cache_url=cache_url)


async def test_score_rerun_from_cache_then_more_votes_only_compute_new_ones(model_dir: Path, cache_url: str) -> None:
    async with Gateway.open(config(model_dir, cache_url, votes=3)) as gw:
        first = await gw.score(ITEMS, "helpfulness")
        assert gw.counters.misses == 9
    for result in first:
        assert result.reward is not None and 0.0 <= result.reward <= 1.0
        assert result.judge == "llamacpp:default" and result.judge_calls == 3 and not result.cached
        assert result.rubric.startswith("helpfulness@")
        judged = [c for c in result.criteria if c.source == "judge"]
        assert judged and all(len(c.votes) == 3 and c.agreement is not None for c in judged)
        assert result.tokens.prompt > 100

    async with Gateway.open(config(model_dir, cache_url, votes=3)) as gw:
        again = await gw.score(ITEMS, "helpfulness")
        assert gw.counters.misses == 0 and gw.counters.hits == 9
    assert [r.model_dump(exclude={"latency_ms", "cached", "judge_calls"}) for r in again] == \
           [r.model_dump(exclude={"latency_ms", "cached", "judge_calls"}) for r in first]
    assert all(r.cached and r.judge_calls == 0 for r in again)

    async with Gateway.open(config(model_dir, cache_url, votes=5)) as gw:
        more = await gw.score(ITEMS, "helpfulness")
        assert gw.counters.misses == 6 and gw.counters.hits == 9
    assert all(r.judge_calls == 2 and r.votes == 5 for r in more)


async def test_embedded_judge_is_deterministic_and_exposes_label_probabilities(model_dir: Path) -> None:
    cfg = GatewayConfig(judge="llamacpp:default", backend=BackendConfig(model_dir=model_dir),
                        scoring=ScoringConfig(votes=2), cache_url=None)
    async with Gateway.open(cfg) as gw:
        [a] = await gw.score(ITEMS[:1], "factual-qa")
        requests = gw.scorer().requests_for(gw.rubric("factual-qa"), ITEMS[0])
        reply = await gw.backend.complete(requests[0])
    async with Gateway.open(cfg) as gw:
        [b] = await gw.score(ITEMS[:1], "factual-qa")
    assert a.reward == pytest.approx(b.reward, abs=1e-9)
    assert reply.label_probs and set(reply.label_probs) == {f.id for f in requests[0].form.fields}
    for probs in reply.label_probs.values():
        assert sum(probs.values()) == pytest.approx(1.0)


def test_model_is_assembled_once_and_verified_once(model_dir: Path) -> None:
    path = ensure_embedded_model(model_dir)
    stamp = path.with_name(path.name + ".verified")
    assert path.stat().st_size > 200_000_000 and stamp.is_file()
    mtime = path.stat().st_mtime_ns
    assert ensure_embedded_model(model_dir) == path and path.stat().st_mtime_ns == mtime
    assert not list(model_dir.glob(".*.partial"))


def test_context_length_comes_from_the_environment(model_dir: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """RUBRICGATE_JUDGE_CONTEXT sizes the embedded judge's context: an item too long for it is
    unscorable with a reason naming the variable; a value that is not a length is a usage error."""
    import json

    from typer.testing import CliRunner

    from rubricgate.interfaces.cli import app

    runner = CliRunner()
    monkeypatch.setenv("RUBRICGATE_MODEL_DIR", str(model_dir))
    long_answer = " ".join(["Paris is the capital of France."] * 150)
    args = ["score", "--rubric", "helpfulness", "--prompt", "What is the capital of France?", "--response",
            long_answer, "--votes", "1", "--cache", "none", "--json"]
    monkeypatch.setenv("RUBRICGATE_JUDGE_CONTEXT", "1024")
    short = runner.invoke(app, args)
    result = json.loads(short.stdout)  # one item: one JSON object
    assert result["reward"] is None and "RUBRICGATE_JUDGE_CONTEXT" in result["reason"], result
    monkeypatch.setenv("RUBRICGATE_JUDGE_CONTEXT", "4096")
    result = json.loads(runner.invoke(app, args).stdout)
    assert result["reward"] is not None, result
    monkeypatch.setenv("RUBRICGATE_JUDGE_CONTEXT", "lots")
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "RUBRICGATE_JUDGE_CONTEXT='lots'" in refused.output
