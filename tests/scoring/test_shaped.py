"""Reward specs end to end through the gateway, with scripted judges (fake: specs)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.library.rubric_files import parse_rubric
from rubricgate.models.config import ScoringConfig
from rubricgate.models.reward import Item
from rubricgate.models.rubric import Rubric

CRITERIA: list[dict[str, Any]] = [
    {"id": "answers", "kind": "hard_rule", "text": "The response answers the question."},
    {"id": "short", "kind": "hard_rule", "text": "The response is short.", "check": {"type": "max_words", "value": 8}},
    {"id": "clear", "kind": "principle", "text": "The response is clear."},
]
ITEM = Item(id="a", prompt="What is the capital of France?", response="Paris is the capital of France.",
            reference="The capital of France is Paris.")
LONG = Item(id="b", prompt="What is the capital of France?", response=" ".join(["Paris"] * 16))


def rubric(**reward: Any) -> Rubric:
    return parse_rubric({"id": "shaped", "criteria": CRITERIA, "reward": reward})


def gateway(judge: str = "fake:best", cache_url: str | None = None) -> Gateway:
    return Gateway.open(GatewayConfig(judge=judge, scoring=ScoringConfig(votes=1), cache_url=cache_url))


async def test_ensemble_of_two_judges_and_a_failing_one_is_null_unless_dropped(cache_url: str) -> None:
    async with gateway(cache_url=cache_url) as gw:
        [mean] = await gw.score([ITEM], rubric(judges=["fake:best", "fake:worst"], ensemble="mean"))
        [floor] = await gw.score([ITEM], rubric(judges=["fake:best", "fake:worst"], ensemble="min"))
        [strict] = await gw.score([ITEM], rubric(judges=["fake:best", "fake:garbage"]))
        [lenient] = await gw.score([ITEM], rubric(judges=["fake:best", "fake:garbage"], drop_unscorable=True))
    # best: answers 1, short 1, clear 1 -> 1.0; worst: answers 0, short 1 (check), clear 0 -> 1/3
    assert mean.components["judge:fake:best"] == 1.0 and mean.components["judge:fake:worst"] == pytest.approx(1 / 3)
    assert mean.reward == pytest.approx(2 / 3) and mean.judge == "fake:best+fake:worst" and mean.votes == 2
    assert floor.reward == pytest.approx(1 / 3)
    assert strict.reward is None and "VerdictParseError" in (strict.reason or "")
    assert lenient.reward == 1.0 and lenient.components["judge:fake:garbage"] is None


async def test_mean_minus_std_penalises_disagreement() -> None:
    async with gateway() as gw:
        [result] = await gw.score([ITEM], rubric(judges=["fake:best", "fake:worst"], ensemble="mean_minus_std",
                                                 **{"lambda": 0.5}))
    assert result.reward == pytest.approx(2 / 3 - 0.5 * (1 / 3))


async def test_hard_rule_gate_caps_the_reward() -> None:
    async with gateway() as gw:
        [gated, free] = [(await gw.score([LONG], rubric(gate="hard_rules", gate_cap=0.1)))[0],
                         (await gw.score([LONG], rubric()))[0]]
    assert free.reward == pytest.approx(2 / 3) and "hard_rule_failed" in free.flags
    assert gated.reward == pytest.approx(0.1) and gated.components["judged"] == pytest.approx(2 / 3)


async def test_reference_metric_and_length_penalty_are_in_the_breakdown() -> None:
    spec = rubric(reference_metric={"kind": "chrf", "weight": 0.5}, length_penalty={"target_words": 4, "weight": 0.2})
    async with gateway("fake:worst") as gw:
        [result] = await gw.score([ITEM], spec)
    chrf = result.components["reference_chrf"]
    assert chrf is not None and 0.3 < chrf < 1.0
    # 6 words vs target 4: penalty 0.2 * 0.5 = 0.1
    assert result.components["length_penalty"] == pytest.approx(-0.1)
    assert result.reward == pytest.approx((0.5 * (1 / 3) + 0.5 * chrf) - 0.1)


async def test_log_sigmoid_transform_fixed_and_reference_response() -> None:
    async with gateway("fake:best") as gw:
        [fixed] = await gw.score([ITEM], rubric(transform="log_sigmoid", reference=0.5, scale=10))
        [relative] = await gw.score([ITEM], rubric(transform="log_sigmoid", reference="reference_response"))
        [missing] = await gw.score([LONG], rubric(transform="log_sigmoid", reference="reference_response"))
    assert fixed.reward == pytest.approx(math.log(1 / (1 + math.exp(-5))))
    assert relative.components["reference_score"] == 1.0 and relative.reward == pytest.approx(-math.log(2))
    assert missing.reward is None and "reference answer" in (missing.reason or "")


async def test_zscore_over_the_batch() -> None:
    async with gateway("fake:best") as gw:
        results = await gw.score([ITEM, LONG], rubric(transform="zscore"))
    assert [r.reward for r in results] == pytest.approx([1.0, -1.0])


async def test_two_rubrics_combined_as_a_conjunction_and_weighted() -> None:
    brief = parse_rubric({"id": "brief", "criteria": [CRITERIA[1]]})
    helpful = parse_rubric({"id": "helpful", "criteria": [CRITERIA[0], CRITERIA[2]]})
    async with gateway("fake:best") as gw:
        both = await gw.score_combined([ITEM, LONG], [brief, helpful], "and")
        weighted = await gw.score_combined([ITEM, LONG], [brief, helpful], "weighted", [1, 3])
    assert both[0].reward is not None and both[1].reward is not None and both[0].reward > both[1].reward + 3
    assert both[1].components == {"rubric:brief": 0.0, "rubric:helpful": 1.0}
    assert weighted[1].reward == pytest.approx(0.75)
    assert [c.id for c in both[0].criteria] == ["brief/short", "helpful/answers", "helpful/clear"]
    assert both[0].rubric == f"{brief.ref}+{helpful.ref}"


def test_reward_spec_is_part_of_the_version_but_not_of_cache_keys() -> None:
    plain = parse_rubric({"id": "shaped", "criteria": CRITERIA})
    gated = rubric(gate="hard_rules")
    assert plain.version != gated.version
    assert plain.judged_version == gated.judged_version == plain.version


def test_bad_reward_specs_are_usage_errors() -> None:
    from rubricgate.errors import UsageError

    with pytest.raises(UsageError, match=r"reward.ensemble"):
        rubric(ensemble="average")
    with pytest.raises(UsageError, match=r"reward.length_penalty.target_words"):
        rubric(length_penalty={"target_words": 0})
