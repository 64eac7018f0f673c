"""`vllm:MODEL`: a real vLLM engine in this process, on the tiny judge, through the gateway."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.vllm.support import require_vllm

require_vllm()

import jsonschema  # noqa: E402

from rubricgate.errors import UsageError  # noqa: E402
from rubricgate.interfaces.gateway import Gateway, GatewayConfig  # noqa: E402
from rubricgate.judges._vllm import VLLMBackend  # noqa: E402
from rubricgate.judges.label_probs import label_probs, score_slots  # noqa: E402
from rubricgate.judges.base import BackendWrapper, JudgeBackend  # noqa: E402
from rubricgate.judges.registry import get_backend  # noqa: E402
from rubricgate.models.config import BackendConfig, RetryPolicy, ScoringConfig  # noqa: E402
from rubricgate.models.judging import FormField, JudgeReply, JudgeRequest, SamplingParams, VerdictForm  # noqa: E402
from rubricgate.models.reward import Item, RewardResult  # noqa: E402

pytestmark = pytest.mark.vllm

RUBRIC = "factual-qa"  # three pass/fail hard rules and three 1-5 principles, all judged
ITEMS = [Item(id=f"q{i}", prompt=f"What is {i} + {i}?", response=f"{i} + {i} = {2 * i}." if i % 2 else "I am not sure.")
         for i in range(8)]
VOTES = 3


class Recording(BackendWrapper):
    """Keeps every (request, reply) pair that passed through, in completion order."""

    def __init__(self, inner: JudgeBackend) -> None:
        super().__init__(inner)
        self.exchanges: list[tuple[JudgeRequest, JudgeReply]] = []

    async def complete(self, request: JudgeRequest) -> JudgeReply:
        reply = await self._inner.complete(request)
        self.exchanges.append((request, reply))
        return reply

    async def aclose(self) -> None:
        pass  # the engine outlives each test's gateway; the module fixture closes it


@pytest.fixture(scope="module")
def engine(tiny_judge_dir: Path) -> Iterator[VLLMBackend]:
    """One engine for the module (each start costs seconds), built through the registry."""
    backend = get_backend(f"vllm:{tiny_judge_dir}", BackendConfig(n_ctx=4096))
    assert isinstance(backend, VLLMBackend)
    yield backend
    asyncio.run(backend.aclose())


def gateway(engine: VLLMBackend, temperature: float) -> tuple[Gateway, Recording]:
    recording = Recording(engine)
    config = GatewayConfig(judge=engine.name, scoring=ScoringConfig(votes=VOTES, concurrency=64),
                           sampling=SamplingParams(temperature=temperature, max_tokens=1024),
                           retry=RetryPolicy(attempts=1), cache_url=None)
    return Gateway(config, recording, None), recording


async def score_twice(engine: VLLMBackend, temperature: float) -> tuple[list[RewardResult], list[RewardResult], Recording, list[int]]:
    gw, recording = gateway(engine, temperature)
    calls = [engine.engine_calls]
    first = await gw.score(ITEMS, RUBRIC)
    calls.append(engine.engine_calls)
    second = await gw.score(ITEMS, RUBRIC)
    calls.append(engine.engine_calls)
    return first, second, recording, calls


async def test_greedy_batch_is_one_engine_call_with_valid_verdicts_and_repeats(engine: VLLMBackend) -> None:
    first, second, recording, calls = await score_twice(engine, temperature=0.0)

    assert [calls[1] - calls[0], calls[2] - calls[1]] == [1, 1], "8 items x 3 votes must be ONE engine call"
    assert len(recording.exchanges) == 2 * len(ITEMS) * VOTES
    assert engine.engine_start_s is not None and engine.engine_start_s > 0
    for request, reply in recording.exchanges:
        jsonschema.validate(json.loads(reply.text, strict=False), request.form.json_schema())
        assert reply.usage.prompt > 500 and 0 < reply.usage.completion <= request.sampling.max_tokens
    assert all(r.reward is not None and r.reason is None for r in first + second), [r.reason for r in first]
    # Greedy verdicts repeat exactly; expected scores are float sums over label probabilities from a
    # batched CPU engine, whose kernels do not promise bit-identical logits across runs (seen: 2e-5).
    assert all(math.isclose(a.reward or 0.0, b.reward or 0.0, rel_tol=1e-3) for a, b in zip(first, second, strict=True)), \
        "greedy scores must repeat"
    half = len(ITEMS) * VOTES
    runs = [{(request.messages, request.sample_index): reply.text for request, reply in part}
            for part in (recording.exchanges[:half], recording.exchanges[half:])]
    assert runs[0] == runs[1] and len(runs[0]) == half, "greedy verdict texts must repeat"


async def test_label_probabilities_from_engine_logprobs_give_expected_scores(engine: VLLMBackend) -> None:
    gw, recording = gateway(engine, temperature=0.0)
    [result] = await gw.score(ITEMS[:1], RUBRIC)

    replies = [reply for _, reply in recording.exchanges]
    form = recording.exchanges[0][0].form
    assert len(replies) == VOTES
    for reply in replies:
        assert reply.label_probs is not None and set(reply.label_probs) == {f.id for f in form.fields}
        for field in form.fields:
            probs = reply.label_probs[field.id]
            assert set(probs) == set(field.labels) and math.isclose(sum(probs.values()), 1.0, rel_tol=1e-6)
    for field in form.fields:  # the criterion value is the mean expected score, not a vote count
        top = len(field.labels) - 1
        expected = sum(sum(field.labels.index(label) * p for label, p in (r.label_probs or {})[field.id].items())
                       for r in replies) / (len(replies) * top)
        [score] = [c for c in result.criteria if c.id == field.id]
        assert score.value is not None and math.isclose(score.value, expected, rel_tol=1e-6)
        assert 0.0 < score.value < 1.0


async def test_seeded_votes_differ_from_each_other_but_repeat_across_runs(engine: VLLMBackend) -> None:
    first, second, recording, calls = await score_twice(engine, temperature=1.0)

    assert calls[2] - calls[0] == 2
    assert [r.reward for r in first] == [r.reward for r in second], "a vote's seed comes from its index"
    assert all(r.reward is not None for r in first)
    per_vote = {}
    for request, reply in recording.exchanges[:len(ITEMS) * VOTES]:
        per_vote.setdefault(request.sample_index, []).append(reply.text)
    assert len({tuple(sorted(texts)) for texts in per_vote.values()}) > 1, "votes must not all be identical"


async def test_a_prompt_too_long_for_the_context_is_unscorable_and_the_rest_of_the_batch_is_scored(
        engine: VLLMBackend) -> None:
    long_item = Item(id="long", prompt="Summarise this.", response="word " * 6000)
    gw, _ = gateway(engine, temperature=0.0)
    before = engine.engine_calls
    results = await gw.score([*ITEMS[:3], long_item], RUBRIC)

    *fine, long_result = results
    assert long_result.reward is None and long_result.reason is not None
    assert "JudgeRejected" in long_result.reason and "too long for max_model_len 4096" in long_result.reason
    assert all(r.reward is not None for r in fine)
    assert engine.engine_calls - before == 1, "rejected prompts never reach the engine"


def test_spec_names_the_backend_and_starts_nothing(tiny_judge_dir: Path) -> None:
    backend = get_backend(f"vllm:{tiny_judge_dir}")
    assert backend.name == f"vllm:{tiny_judge_dir}"
    assert isinstance(backend, VLLMBackend) and backend.engine_calls == 0 and backend.engine_start_s is None
    with pytest.raises(UsageError, match="does not exist"):
        get_backend("vllm:./no-such-model-folder")


def test_score_slots_ignore_look_alikes_inside_rationales() -> None:
    pieces = ['{"', 'a', '":{"rationale":"', 'x}{\\"score\\":\\"', '","', 'score', '":', '"', 'p', 'ass', '"},"',
              'b', '":{"rationale":"","score":"', '2', '"}}']
    assert score_slots(pieces) == [(7, "a", False), (8, "a", True), (13, "b", True)]


def test_label_probs_follow_a_bare_quote_with_the_chain_rule() -> None:
    form = VerdictForm(fields=(FormField(id="a", labels=("fail", "pass")), FormField(id="b", labels=("1", "2", "3"))))
    pieces = ['{"a":{"rationale":"","score":', '"', 'p', 'ass', '"},"b":{"rationale":"","score":"', '2', '"}}']
    alternatives = {
        1: [('"', math.log(0.5)), ('"f', math.log(0.3)), ('"pass', math.log(0.2))],  # after `"score":`
        2: [("p", math.log(0.6)), ("fa", math.log(0.4))],                           # after `"score":"`
        5: [("1", math.log(0.2)), ("2", math.log(0.5)), ('3"}}', math.log(0.3)), ("x", -math.inf)],
    }
    probs = label_probs(pieces, alternatives, form)
    assert probs["a"] == pytest.approx({"fail": 0.3 + 0.5 * 0.4, "pass": 0.2 + 0.5 * 0.6})
    assert probs["b"] == pytest.approx({"1": 0.2, "2": 0.5, "3": 0.3})
