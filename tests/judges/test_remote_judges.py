"""Remote judges (litellm and the lean openai: client) against a real local OpenAI-compatible server."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import pytest

from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.models.config import BackendConfig, RetryPolicy, ScoringConfig
from rubricgate.models.reward import Item
from tests.support.openai_server import ChatCall, Reply, ScriptedJudgeServer, sequence

ITEMS = [Item(id="1", prompt="What is the capital of France?", response="Paris.")]


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedJudgeServer]:
    with ScriptedJudgeServer() as running:
        yield running


@pytest.fixture(params=["litellm:openai/judge-model", "openai:judge-model"])
def spec(request: pytest.FixtureRequest) -> str:
    """Every test runs through litellm and through the lean OpenAI-compatible client."""
    return str(request.param)


@pytest.fixture(autouse=True)
def _fresh(server: ScriptedJudgeServer) -> None:
    server.reset()
    server.set_script(None)


def gateway(server: ScriptedJudgeServer, spec: str, cache_url: str | None = None, votes: int = 2, deadline_s: float = 30,
            attempts: int = 4, timeout_s: float = 10) -> Gateway:
    return Gateway.open(GatewayConfig(
        judge=spec,
        backend=BackendConfig(base_url=server.base_url, api_key="sk-local-test", timeout_s=timeout_s),
        scoring=ScoringConfig(votes=votes, deadline_s=deadline_s),
        retry=RetryPolicy(attempts=attempts, initial_wait_s=0.01, max_wait_s=0.2),
        cache_url=cache_url,
    ))


async def test_schema_constrained_verdicts_score_and_cache(server: ScriptedJudgeServer, spec: str, cache_url: str) -> None:
    async with gateway(server, spec, cache_url) as gw:
        [result] = await gw.score(ITEMS, "helpfulness")
    assert result.reward is not None and 0.0 <= result.reward <= 1.0
    assert result.judge == spec and result.judge_calls == 2
    assert result.tokens.prompt > 0
    call = server.calls[0]
    schema = call.body["response_format"]["json_schema"]["schema"]
    assert set(schema["required"]) == {c.id for c in gw.rubric("helpfulness").judged_criteria}
    assert {c.body.get("seed") for c in server.calls} == {r.seed for r in gw.scorer().requests_for(gw.rubric("helpfulness"), ITEMS[0])}
    async with gateway(server, spec, cache_url) as gw:
        [again] = await gw.score(ITEMS, "helpfulness")
    assert len(server.calls) == 2 and again.cached and again.reward == result.reward


async def test_rate_limit_then_success_is_retried(server: ScriptedJudgeServer, spec: str) -> None:
    server.set_script(sequence(Reply.error(429, retry_after=0.05), Reply.error(429, retry_after=0.05),
                               then=Reply.default()))
    async with gateway(server, spec, votes=1) as gw:
        [result] = await gw.score(ITEMS, "helpfulness")
        assert gw.retrying.retries == 2
    assert result.reward is not None
    assert len(server.calls) == 3


async def test_server_error_forever_gives_null_with_reason(server: ScriptedJudgeServer, spec: str, cache_url: str) -> None:
    server.set_script(lambda call: Reply.error(500, "boom"))
    async with gateway(server, spec, cache_url, votes=2, attempts=3) as gw:
        [result] = await gw.score(ITEMS, "helpfulness")
        assert gw.store is not None and gw.store.stats()["judgments"] == 0
    assert result.reward is None
    assert "JudgeUnavailable" in (result.reason or "") and "boom" in (result.reason or "")
    assert len(server.calls) == 2 * 3  # each vote tried `attempts` times


async def test_auth_errors_are_not_retried(server: ScriptedJudgeServer, spec: str) -> None:
    server.set_script(lambda call: Reply.error(401, "bad key"))
    async with gateway(server, spec, votes=1) as gw:
        [result] = await gw.score(ITEMS, "helpfulness")
    assert result.reward is None and "JudgeRejected" in (result.reason or "")
    assert len(server.calls) == 1


async def test_malformed_verdict_text_is_flagged_not_zero(server: ScriptedJudgeServer, spec: str, cache_url: str) -> None:
    server.set_script(lambda call: Reply.text("The response looks great, 10/10!"))
    async with gateway(server, spec, cache_url, votes=2) as gw:
        [result] = await gw.score(ITEMS, "helpfulness")
        assert gw.store is not None and gw.store.stats()["judgments"] == 0
    assert result.reward is None and "parse_error" in result.flags


async def test_partial_verdict_is_scored_on_what_parsed_and_flagged(server: ScriptedJudgeServer, spec: str) -> None:
    def only_one_criterion(call: ChatCall) -> Reply:
        return Reply.text(json.dumps({"addresses_request": {"rationale": "ok", "score": "pass"}}))

    server.set_script(only_one_criterion)
    async with gateway(server, spec, votes=1) as gw:
        [result] = await gw.score(ITEMS, "helpfulness")
    assert result.reward is not None and "parse_error" in result.flags
    unscored = [c.id for c in result.criteria if c.value is None]
    assert "correctness" in unscored


async def test_slow_judge_hits_the_deadline(server: ScriptedJudgeServer, spec: str) -> None:
    server.set_script(lambda call: Reply.slow(3.0))
    async with gateway(server, spec, votes=1, deadline_s=0.5) as gw:
        [result] = await gw.score(ITEMS, "helpfulness")
    assert result.reward is None and "deadline" in (result.reason or "")


async def test_call_timeout_is_transient_and_retried(server: ScriptedJudgeServer, spec: str) -> None:
    server.set_script(sequence(Reply.slow(2.0), then=Reply.default()))
    async with gateway(server, spec, votes=1, timeout_s=0.3) as gw:
        [result] = await gw.score(ITEMS, "helpfulness")
        assert gw.retrying.retries == 1
    assert result.reward is not None


async def test_api_key_never_reaches_the_cache(server: ScriptedJudgeServer, spec: str, cache_url: str) -> None:
    async with gateway(server, spec, cache_url, votes=1) as gw:
        await gw.score(ITEMS, "helpfulness")
        assert gw.store is not None
        rows = list(gw.store.export())
    assert rows and all("sk-local-test" not in json.dumps(row) for row in rows)
    assert server.calls[0].headers.get("authorization") == "Bearer sk-local-test"


async def test_api_key_echoed_by_the_provider_is_redacted_from_reasons(server: ScriptedJudgeServer, spec: str) -> None:
    server.set_script(lambda call: Reply.error(401, "Incorrect API key provided: sk-local-test. Check it."))
    async with gateway(server, spec, votes=1) as gw:
        [result] = await gw.score(ITEMS, "helpfulness")
    assert result.reward is None and "JudgeRejected" in (result.reason or "")
    assert "sk-local" not in (result.reason or "") and "***" in (result.reason or "")


@pytest.mark.parametrize("model", ["hosted_vllm/judge-model", "openai/judge-model"])
async def test_openai_compatible_providers_work_the_same(server: ScriptedJudgeServer, model: str) -> None:
    config = GatewayConfig(judge=f"litellm:{model}", backend=BackendConfig(base_url=server.base_url),
                           scoring=ScoringConfig(votes=1), cache_url=None)
    async with Gateway.open(config) as gw:
        [result] = await gw.score(ITEMS, "factual-qa")
    assert result.reward is not None and result.judge == f"litellm:{model}"
    assert server.calls[-1].model == "judge-model"


@pytest.mark.parametrize("fault", [Reply.malformed(), Reply.reset(), Reply.cut_off(), Reply.error(503)])
async def test_transport_faults_are_retried_then_succeed(server: ScriptedJudgeServer, spec: str, fault: Reply) -> None:
    server.set_script(sequence(fault, then=Reply.default()))
    async with gateway(server, spec, votes=1) as gw:
        [result] = await gw.score(ITEMS, "factual-qa")
        assert gw.retrying.retries == 1
    assert result.reward is not None


async def test_openai_logprobs_give_label_probabilities(server: ScriptedJudgeServer) -> None:
    config = GatewayConfig(judge="openai:judge-model+logprobs", backend=BackendConfig(base_url=server.base_url),
                           scoring=ScoringConfig(votes=1), cache_url=None)
    async with Gateway.open(config) as gw:
        rubric = gw.rubric("factual-qa")
        request = gw.scorer().requests_for(rubric, ITEMS[0])[0]
        reply = await gw.backend.complete(request)
    assert server.calls[-1].body["logprobs"] is True
    assert reply.label_probs, reply.text
    for field_id, probs in reply.label_probs.items():
        assert field_id in {f.id for f in request.form.fields}
        assert sum(probs.values()) == pytest.approx(1.0)


def test_label_probs_are_read_at_score_slots() -> None:
    from rubricgate.judges._openai import _label_probs
    from rubricgate.models.judging import FormField, VerdictForm

    form = VerdictForm(fields=(FormField(id="clear", labels=("1", "2", "3")), FormField(id="ok", labels=("fail", "pass"))))
    tokens = ['{"', 'clear', '":', ' {"', 'score', '":', ' "', '3', '"},', ' "', 'ok', '":', ' {"', 'score', '":', ' "',
              'pass', '"}}']
    content = [{"token": t, "logprob": 0.0, "top_logprobs": []} for t in tokens]
    content[7]["top_logprobs"] = [{"token": "3", "logprob": -0.105}, {"token": "2", "logprob": -2.303}]
    content[16]["top_logprobs"] = [{"token": "pass", "logprob": -0.693}, {"token": "fail", "logprob": -0.693}]
    probs = _label_probs({"content": content}, form)
    assert probs["clear"]["3"] == pytest.approx(0.9, abs=0.01) and probs["clear"]["1"] == 0.0
    assert probs["ok"] == pytest.approx({"fail": 0.5, "pass": 0.5})


def test_label_probs_follow_labels_split_across_tokens() -> None:
    """A server whose tokenizer splits `pass` into `pa`+`ss` still yields a distribution; a quote
    token that decides nothing hands the slot on to the next position (chain rule)."""
    from rubricgate.judges._openai import _label_probs
    from rubricgate.models.judging import FormField, VerdictForm

    form = VerdictForm(fields=(FormField(id="ok", labels=("fail", "pass")),))
    tokens = ['{"ok":{"score":', '"', 'pa', 'ss', '"}}']
    content = [{"token": t, "logprob": 0.0, "top_logprobs": []} for t in tokens]
    content[1]["top_logprobs"] = [{"token": '"', "logprob": 0.0}]
    content[2]["top_logprobs"] = [{"token": "pa", "logprob": math.log(0.75)}, {"token": "fa", "logprob": math.log(0.25)}]
    assert _label_probs({"content": content}, form)["ok"] == pytest.approx({"fail": 0.25, "pass": 0.75})
