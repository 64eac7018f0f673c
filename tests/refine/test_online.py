"""Online refinement: triggers, the background task on a real uvicorn server, hot swaps under load."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from rubricgate.authoring.refinement import Edit, apply_edits
from rubricgate.errors import UsageError
from rubricgate.interfaces.cli.refine import refine_settings
from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.interfaces.http import ServerSettings, create_app
from rubricgate.interfaces.settings import Settings
from rubricgate.interfaces.online_refinement import RefineSettings, Refiner, TriggerConfig, check_triggers, ks_distance
from rubricgate.judges.fake import best_reply
from rubricgate.library.rubric_files import load_rubric_file
from rubricgate.models.config import BackendConfig, JudgeCapabilities, RetryPolicy, ScoringConfig
from rubricgate.models.judging import JudgeReply, JudgeRequest
from rubricgate.models.reward import Item
from tests.refine.support import DATA, JUDGE, META, PAIRS, RUBRIC, SAMPLES, Scripts
from tests.support.app_server import serving
from tests.support.openai_server import ScriptedJudgeServer

BASE = load_rubric_file(RUBRIC)
SAMPLE_ITEMS = [json.loads(line) for line in SAMPLES.read_text().splitlines()]
PADDED = {"prompt": "How many legs does a spider have?",
          "response": " ".join(["A spider has eight legs, and it is important to note that in conclusion"] * 6)}


# --------------------------------------------------------------------------- triggers


def test_ks_distance() -> None:
    assert ks_distance([0.1, 0.2, 0.3], [0.1, 0.2, 0.3]) == 0.0
    assert ks_distance([0.0] * 5, [1.0] * 5) == 1.0
    assert ks_distance([0.1, 0.5], [0.5, 0.9]) == pytest.approx(0.5)


def test_each_trigger_fires_on_its_own_signal_only() -> None:
    config = TriggerConfig(min_items=10)
    calm = [(0.5 + 0.01 * (i % 5), 0.9) for i in range(20)]
    assert check_triggers(calm, calm, ["saturation", "drift", "disagreement"], config) == []
    [saturated] = check_triggers(calm, [(0.95, 0.9)] * 20, ["saturation"], config)
    assert saturated.startswith("saturation: 100% of the last 20 rewards are >= 0.9")
    [drifted] = check_triggers(calm, [(0.2, 0.9)] * 20, ["drift"], config)
    assert drifted.startswith("drift: KS distance 1.00") and "(mean 0.52 -> 0.20)" in drifted
    [split] = check_triggers(calm, [(0.5, 0.6)] * 20, ["disagreement"], config)
    assert split == "disagreement: vote agreement fell from 0.90 to 0.60"
    assert check_triggers(calm, [(0.95, 0.9)] * 9, ["saturation"], config) == []  # too few items yet


def test_serve_options_become_refine_settings() -> None:
    env = Settings()
    config = env.gateway_config(judge=JUDGE, judge_base_url="http://judge/v1", timeout_s=30)
    judge = config.backend
    assert refine_settings(None, None, None, None, None, None, 20, config, env) is None
    settings = refine_settings(10, ["drift,saturation", "drift"], None, None, PAIRS, None, 12, config, env)
    assert settings is not None and settings.triggers == ("drift", "saturation") and settings.every == 10
    assert settings.meta_judge == JUDGE and settings.meta_backend == judge and settings.sample_size == 12
    other = refine_settings(None, ["disagreement"], META, "http://meta/v1", None, None, 20, config, env)
    assert other is not None and other.meta_backend.base_url == "http://meta/v1"
    with pytest.raises(UsageError, match="choose from saturation, drift, disagreement"):
        refine_settings(5, ["boredom"], None, None, None, None, 20, config, env)
    with pytest.raises(UsageError, match="need --refine-every N or --refine-on"):
        refine_settings(None, None, META, None, None, None, 20, config, env)


def test_refiner_needs_a_cache_a_schedule_and_something_to_gate_on(cache_url: str) -> None:
    settings = RefineSettings(meta_judge="template", every=5)
    with pytest.raises(UsageError, match="not --cache none"):
        Refiner(Gateway.open(GatewayConfig(judge="fake:best")), settings)
    gateway = Gateway.open(GatewayConfig(judge="fake:best", cache_url=cache_url))
    with pytest.raises(UsageError, match="needs --refine-every N or at least one --refine-on"):
        Refiner(gateway, RefineSettings(meta_judge="template"))
    with pytest.raises(UsageError, match="something to gate on"):
        Refiner(gateway, RefineSettings(meta_judge="template", every=5, shipped_probes=False))


# --------------------------------------------------------------------------- a hot swap under load


@dataclass
class SlowJudge:
    """Every field at its top label, after a random few milliseconds (so batches overlap swaps)."""

    name: str = "fake:slow"
    prefers_rationale: bool = True
    capabilities: JudgeCapabilities = field(default_factory=JudgeCapabilities)
    requests: list[JudgeRequest] = field(default_factory=list)

    async def complete(self, request: JudgeRequest) -> JudgeReply:
        self.requests.append(request)
        await asyncio.sleep(random.uniform(0, 0.004))
        return JudgeReply(text=best_reply(request.form), backend=self.name)

    async def aclose(self) -> None:
        return None


async def test_concurrent_scoring_during_hot_swaps_never_mixes_versions_in_a_result() -> None:
    three = apply_edits(BASE, [Edit.model_validate({"op": "add", "id": "no_padding", "criterion": {
        "id": "no_padding", "kind": "principle", "text": "The response has no filler.", "weight": 2}})])
    versions = {r.ref: r for r in (BASE, three)}
    judged = {f"{r.id}@{r.judged_version}": r for r in (BASE, three)}
    judge = SlowJudge()
    gateway = Gateway(GatewayConfig(judge="fake:slow", rubric_dirs=(DATA,), scoring=ScoringConfig(votes=2)), judge,
                      None)
    stop = asyncio.Event()

    async def swapper() -> int:
        swaps = 0
        while not stop.is_set():
            gateway.serve_version(three if swaps % 2 == 0 else BASE)
            swaps += 1
            await asyncio.sleep(0.001)
        return swaps

    async def caller(n: int) -> list[list[Any]]:
        batches = []
        for k in range(15):
            items = [Item(id=f"{n}-{k}-{i}", prompt="Q?", response=f"answer {i}") for i in range(3)]
            batches.append(await gateway.score(items, "thorough-answers"))
        return batches

    swapping = asyncio.create_task(swapper())
    batches = [b for per_caller in await asyncio.gather(*(caller(n) for n in range(12))) for b in per_caller]
    stop.set()
    swaps = await swapping
    seen = set()
    for batch in batches:
        assert len({r.rubric for r in batch}) == 1  # a batch resolves its version once
        for result in batch:
            version = versions[result.rubric]
            seen.add(result.rubric)
            assert [c.id for c in result.criteria] == [c.id for c in version.criteria]
            assert [c.weight for c in result.criteria] == [c.weight for c in version.criteria]
            assert result.reward == 1.0
    assert seen == set(versions) and swaps > 20
    for request in judge.requests:  # and every judge call asked about exactly one version's criteria
        assert [f.id for f in request.form.fields] == [c.id for c in judged[request.rubric_ref].judged_criteria]


# --------------------------------------------------------------------------- the server


@pytest.fixture(scope="module")
def judge_server() -> Iterator[ScriptedJudgeServer]:
    with ScriptedJudgeServer() as running:
        yield running


@pytest.fixture
def scripts(judge_server: ScriptedJudgeServer) -> Iterator[Scripts]:
    script = Scripts()
    judge_server.reset()
    judge_server.set_script(script)
    yield script
    judge_server.set_script(None)


def make_app(judge_server: ScriptedJudgeServer, cache_url: str, **refine: Any) -> Any:
    gateway = Gateway.open(GatewayConfig(
        judge=JUDGE, backend=BackendConfig(base_url=judge_server.base_url, timeout_s=10),
        scoring=ScoringConfig(votes=1, concurrency=64), retry=RetryPolicy(attempts=2, initial_wait_s=0.01),
        cache_url=cache_url, rubric_dirs=(DATA,)))
    settings = RefineSettings(meta_judge=META, meta_backend=BackendConfig(base_url=judge_server.base_url),
                              pairs_file=PAIRS, **refine)
    return create_app(gateway, ServerSettings(default_rubric="thorough-answers", refine=settings))


def wait_for(predicate: Any, timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_refine_every_n_hot_swaps_while_scoring_goes_on(judge_server: ScriptedJudgeServer, scripts: Scripts,
                                                       cache_url: str) -> None:
    scripts.meta_delay_s = 1.5  # the meta-judge thinks for 1.5 s: scoring must go on meanwhile
    scripts.judge_delay_s = 0.01
    with serving(make_app(judge_server, cache_url, every=8)) as server, httpx.Client(base_url=server.url,
                                                                                    timeout=30) as client:
        first = client.post("/v1/reward", json={"items": SAMPLE_ITEMS}).json()["results"]
        assert {r["rubric"] for r in first} == {BASE.ref}
        records: list[tuple[float, float, list[dict[str, Any]]]] = []
        done = threading.Event()

        def load() -> None:
            with httpx.Client(base_url=server.url, timeout=30) as mine:
                while not done.is_set():
                    started = time.monotonic()
                    body = mine.post("/v1/reward", json={"items": [PADDED, SAMPLE_ITEMS[1]]}).json()
                    records.append((started, time.monotonic(), body["results"]))

        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        history = wait_for(lambda: (h := client.get("/v1/rubrics/thorough-answers/versions").json())["served"]
                           != BASE.version and h)
        time.sleep(0.3)
        done.set()
        for thread in threads:
            thread.join()
        listed = {r["id"]: r for r in client.get("/v1/rubrics").json()["rubrics"]}
        assert listed["thorough-answers"]["version"] == BASE.version
        assert listed["thorough-answers"]["served_version"] == history["served"]

    new = history["served"]
    refined = history["versions"][0]
    assert refined["event"] == "refined" and refined["current"] and refined["version"] == new
    assert refined["reason"] == "every 8 items: Penalise padding; say that detail is not length."
    assert refined["details"]["gate"]["passed"] and refined["details"]["trigger"] == "every 8 items"
    assert [e["event"] for e in history["versions"]] == ["refined", "baseline"]
    assert history["refinement"]["recent"][-1]["accepted"] is True
    criteria = {BASE.version: ["detailed", "relevant"], new: ["detailed", "relevant", "no_padding"]}
    versions_seen = set()
    for _, _, results in records:
        [version] = {r["rubric"].split("@")[1] for r in results}  # one version per request
        versions_seen.add(version)
        for result in results:
            assert [c["id"] for c in result["criteria"]] == criteria[version]
    assert versions_seen == {BASE.version, new}
    padded = {r[0]["rubric"].split("@")[1]: r[0]["reward"] for _, _, r in records}
    assert padded[BASE.version] == 1.0 and padded[new] < 0.7
    meta_call = scripts.meta_calls[0]  # later ones refine the new version again
    thinking = (meta_call.received_at, meta_call.received_at + scripts.meta_delay_s)
    during = [r for started, ended, r in records if thinking[0] <= started and ended <= thinking[1]]
    assert len(during) >= 3, "scoring waited while the meta-judge was thinking"


def test_a_trigger_starts_a_refinement_and_rejections_are_kept(judge_server: ScriptedJudgeServer, scripts: Scripts,
                                                               cache_url: str) -> None:
    from tests.refine.support import BAD

    scripts.meta_replies = [json.dumps(BAD)]
    app = make_app(judge_server, cache_url, triggers=("saturation",), window=8,
                   thresholds=TriggerConfig(min_items=4))
    with serving(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        client.post("/v1/reward", json={"items": [PADDED] * 4})  # every reward 1.0: saturated
        history = wait_for(lambda: (h := client.get("/v1/rubrics/thorough-answers/versions").json())["versions"]
                           and h["refinement"]["recent"] and h)
        assert client.get("/v1/rubrics/no-such-rubric/versions").status_code == 404
    events = history["versions"]
    assert [e["event"] for e in events] == ["rejected", "baseline"] and history["served"] == BASE.version
    assert events[0]["reason"].startswith("saturation: 100% of the last 4 rewards are >= 0.9: rejected by the gate")
    assert "labelled-pair accuracy drops" in events[0]["reason"]


def test_versions_endpoint_without_refinement(judge_server: ScriptedJudgeServer, cache_url: str, tmp_path: Path) -> None:
    gateway = Gateway.open(GatewayConfig(judge=JUDGE, backend=BackendConfig(base_url=judge_server.base_url),
                                         cache_url=cache_url, rubric_dirs=(DATA,)))
    with serving(create_app(gateway)) as server:
        body = httpx.get(f"{server.url}/v1/rubrics/thorough-answers/versions").json()
    assert body == {"rubric": "thorough-answers", "served": BASE.version, "current": None, "versioned": True,
                    "versions": [], "refinement": None}


def test_serve_refuses_online_refinement_without_a_cache() -> None:
    from typer.testing import CliRunner

    from rubricgate.interfaces.cli import app

    result = CliRunner().invoke(app, ["serve", "--allow-test-judges", "--judge", "fake:best", "--cache", "none", "--refine-every", "5",
                                      "--meta-judge", "template"])
    assert result.exit_code == 2 and "not --cache none" in result.output
    bad = CliRunner().invoke(app, ["serve", "--allow-test-judges", "--judge", "fake:best", "--refine-on", "boredom"])
    assert bad.exit_code == 2 and "choose from saturation, drift, disagreement" in bad.output
