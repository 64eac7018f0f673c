"""Analyse -> propose -> gate with scripted meta-judges (FakeBackend) and a scripted score function."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from rubricgate.authoring.llm_calls import BackendTextGenerator, LabelChooser
from rubricgate.authoring.refinement import (
    Edit, GateConfig, LLMMetaJudge, RefineConfig, ScoredSample, TemplateMetaJudge, apply_edits, detect_signals,
    open_meta_judge, parse_audit, refine_rubric, run_gate, scored_samples, select_samples,
)
from rubricgate.errors import VerdictParseError
from rubricgate.judges.fake import FakeBackend
from rubricgate.judges.prompts import load_template, response_text
from rubricgate.library.probes import Probe
from rubricgate.library.rubric_files import load_rubric_file
from rubricgate.models.config import JudgeCapabilities
from rubricgate.models.judging import JudgeRequest
from rubricgate.models.preference import PreferencePair
from rubricgate.models.reward import CriterionScore, Item, RewardResult
from rubricgate.models.rubric import Criterion, Rubric
from tests.refine.support import BAD, FIX, PADDED_SAMPLES, RUBRIC, SAMPLES, judged_value

BASE = load_rubric_file(RUBRIC)


async def scripted_score(rubric: Rubric, items: Sequence[Item]) -> list[RewardResult]:
    """The scripted judge's rewards: the weighted mean of `judged_value` over the rubric's criteria."""
    out = []
    for item in items:
        prompt = item.prompt if isinstance(item.prompt, str) else ""
        scores = [CriterionScore(id=c.id, kind=c.kind, weight=c.weight, source="judge", agreement=1.0, votes=["x"],
                                 value=judged_value(c.id, response_text(item), prompt)) for c in rubric.criteria]
        reward = sum(s.value * s.weight for s in scores if s.value is not None) / sum(s.weight for s in scores)
        out.append(RewardResult(id=item.id, reward=reward, criteria=scores, rubric=rubric.ref, judge="scripted",
                                votes=1, agreement=1.0))
    return out


async def samples() -> list[ScoredSample]:
    items = [Item.model_validate(json.loads(line)) for line in SAMPLES.read_text().splitlines()]
    return scored_samples(items, await scripted_score(BASE, items))


def pairs() -> list[PreferencePair]:
    from tests.refine.support import PAIRS
    return [PreferencePair.model_validate(json.loads(line)) for line in PAIRS.read_text().splitlines()]


def padded_probe() -> Probe:
    return Probe(id="pad", kind="length_padding", prompt="How many legs does a spider have?",
                 response=" ".join(["A spider has eight legs, and it is important to note that in conclusion"] * 6),
                 honest="A spider has eight legs.")


def meta(replies: list[str]) -> tuple[LLMMetaJudge, FakeBackend]:
    backend = FakeBackend(lambda request: replies[min(len(backend.requests), len(replies)) - 1], name="fake:meta")
    return LLMMetaJudge(BackendTextGenerator(backend)), backend


# --------------------------------------------------------------------------- parsing and edits


def test_audit_reply_is_read_leniently_and_unknown_evidence_is_dropped_with_a_note() -> None:
    text = "Here is my audit.\n```json\n" + json.dumps(FIX) + "\n```\nThanks."
    findings, edits, summary, notes = parse_audit(text, BASE, ["s1", "s2", "s3", "s6"])
    assert [f.name for f in findings] == ["length_padding", "detail_vs_length"]
    assert findings[0].evidence == tuple(PADDED_SAMPLES) and findings[0].criterion == "detailed"
    assert findings[1].kind == "ambiguity"
    assert notes == ["finding 'length_padding': evidence id 's99' is not in the sample; dropped"]
    assert [(e.op, e.id) for e in edits] == [("add", "no_padding"), ("clarify", "detailed")]
    assert summary.startswith("Penalise padding")


def test_a_whole_rubric_instead_of_edits_becomes_edits() -> None:
    data = BASE.model_dump(mode="json", by_alias=True)
    data["criteria"][0]["weight"] = 1
    data["criteria"].append({"id": "no_padding", "kind": "principle", "text": "The response has no filler."})
    _, edits, _, _ = parse_audit(json.dumps({"findings": [], "rubric": data}), BASE, [])
    assert [(e.op, e.id, e.weight) for e in edits] == [("reweight", "detailed", 1.0), ("add", "no_padding", None)]


@pytest.mark.parametrize(("edit", "message"), [
    ({"op": "clarify", "id": "nope", "text": "The response is x."}, "criterion 'nope', which does not exist"),
    ({"op": "add", "criterion": {"id": "detailed", "text": "The response is long."}}, "already exists"),
    ({"op": "frobnicate", "id": "detailed"}, "no valid 'op'"),
    ({"op": "reweight", "id": "detailed", "weight": "heavy"}, "is not a number"),
])
def test_edits_that_cannot_apply_say_why(edit: dict, message: str) -> None:
    with pytest.raises(VerdictParseError, match=message):
        _, edits, _, _ = parse_audit(json.dumps({"edits": [edit]}), BASE, [])
        apply_edits(BASE, edits)


def test_applied_edits_give_a_new_version_that_keeps_provenance() -> None:
    edits = [Edit(op="reweight", id="detailed", weight=1.0), Edit(op="remove", id="relevant")]
    edited = apply_edits(BASE, edits, {"parent": BASE.version})
    assert edited.version != BASE.version and [c.id for c in edited.criteria] == ["detailed"]
    assert edited.metadata["parent"] == BASE.version and edited.principles == BASE.principles
    with pytest.raises(VerdictParseError, match="remove every criterion"):
        apply_edits(edited, [Edit(op="remove", id="detailed")])


# --------------------------------------------------------------------------- meta-judges


async def test_text_meta_judge_sees_fenced_samples_and_signals_and_gets_feedback() -> None:
    judge, backend = meta(["I think the rubric is fine overall.", json.dumps(FIX)])
    batch = await samples()
    proposal = await judge.propose(BASE, batch, detect_signals(BASE, batch))
    assert [c.id for c in proposal.rubric.criteria] == ["detailed", "relevant", "no_padding"]
    assert proposal.rubric.metadata["parent"] == BASE.version and proposal.rubric.metadata["refined_by"] == "fake:meta"
    first: JudgeRequest = backend.requests[0]
    assert first.form.fields == () and first.template_version == load_template("meta_refine_v1").version
    system, user = first.messages[0].content, first.messages[1].content
    assert "untrusted DATA" in system and "### Item s1: reward" in user and "<response-" in user
    assert "exploit length_padding" in user  # the detectors' hint
    retry = backend.requests[1]
    assert [m.role for m in retry.messages] == ["system", "user", "assistant", "user"]
    assert "no JSON object" in retry.messages[-1].content
    assert any("needed 2 replies" in note for note in proposal.notes)


async def test_text_meta_judge_gives_up_with_the_last_problem() -> None:
    judge, backend = meta([json.dumps({"edits": [{"op": "clarify", "id": "ghost", "text": "The response is x."}]})])
    with pytest.raises(VerdictParseError, match="no usable proposal in 3 replies; last problem: .*'ghost'"):
        await judge.propose(BASE, await samples(), [])
    assert len(backend.requests) == 3


async def test_offline_meta_judge_turns_detector_findings_into_countermeasures() -> None:
    batch = await samples()
    signals = detect_signals(BASE, batch)
    assert [(s.name, s.evidence) for s in signals] == [("length_padding", tuple(PADDED_SAMPLES))]
    proposal = await TemplateMetaJudge().propose(BASE, batch, signals)
    [edit] = proposal.edits
    assert edit.op == "add" and edit.criterion is not None and edit.criterion.id == "no_padding"
    assert edit.criterion.weight == 2.0 and proposal.meta_judge == "template"


async def test_offline_meta_judge_lets_a_label_filling_model_weigh_the_fix() -> None:
    chooser = FakeBackend(lambda request: json.dumps({f.id: {"score": "3"} for f in request.form.fields}))
    judge = TemplateMetaJudge(LabelChooser(chooser, load_template("meta_choices_v1")))
    batch = await samples()
    proposal = await judge.propose(BASE, batch, detect_signals(BASE, batch))
    assert proposal.edits[0].criterion is not None and proposal.edits[0].criterion.weight == 3.0
    assert proposal.meta_judge == "template+fake:scripted"
    [request] = chooser.requests
    assert [f.id for f in request.form.fields] == ["counter_length_padding"]
    again = await judge.propose(proposal.rubric, batch, detect_signals(BASE, batch))
    assert again.edits == [] and not again.rubric.version != proposal.rubric.version  # already countered


def test_open_meta_judge_picks_the_kind_by_what_the_judge_can_do() -> None:
    assert isinstance(open_meta_judge(), TemplateMetaJudge)
    assert isinstance(open_meta_judge(FakeBackend.from_spec("whatever")), LLMMetaJudge)
    form_filler = FakeBackend.from_spec("best")
    form_filler.capabilities = JudgeCapabilities(free_text=False)
    assert isinstance(open_meta_judge(form_filler), TemplateMetaJudge)


def test_samples_shown_put_evidence_first_and_keep_file_order() -> None:
    items = [Item(id=f"i{n}", prompt="Q?", response=f"answer {n}") for n in range(30)]
    results = [RewardResult(id=f"i{n}", reward=n / 30, rubric="r@1", judge="j", votes=1, agreement=1.0)
               for n in range(30)]
    batch = scored_samples(items, results)
    from rubricgate.authoring.refinement import Finding
    shown = select_samples(batch, 6, [Finding(kind="exploit", name="x", evidence=("i3", "i4"))], seed=1)
    ids = [s.id for s in shown]
    assert len(ids) == 6 and {"i3", "i4", "i29"} <= set(ids) and ids == sorted(ids, key=lambda i: int(i[1:]))
    assert [s.id for s in scored_samples(items[:2], results[:2])] == ["i0", "i1"]
    twins = scored_samples([items[0], items[0]], results[:2])
    assert [s.id for s in twins] == ["i0", "i0#2"]


# --------------------------------------------------------------------------- the gate


async def test_gate_rejects_a_proposal_that_drops_labelled_accuracy() -> None:
    judge, _ = meta([json.dumps(BAD)])
    outcome = await refine_rubric(BASE, await samples(), judge, scripted_score, pairs=pairs(), probes=[padded_probe()])
    assert not outcome.accepted and outcome.gate is not None
    assert (outcome.gate.accuracy_before, outcome.gate.accuracy_after) == (1.0, 0.0)
    assert "labelled-pair accuracy drops from 1.000 to 0.000" in outcome.reason


async def test_gate_accepts_a_fix_that_lowers_the_probe_and_keeps_accuracy() -> None:
    judge, _ = meta([json.dumps(FIX)])
    outcome = await refine_rubric(BASE, await samples(), judge, scripted_score, pairs=pairs(), probes=[padded_probe()])
    assert outcome.accepted and outcome.gate is not None and outcome.gate.reasons == []
    assert outcome.gate.accuracy_after == outcome.gate.accuracy_before == 1.0
    [probe] = outcome.gate.probes
    assert probe.relative and probe.before == 1.0 and probe.after is not None and probe.after < 0.7
    assert probe.score_before is not None and probe.score_after is not None and probe.score_after < probe.score_before
    assert outcome.reason == "Penalise padding; say that detail is not length."


async def test_probes_compare_margins_so_an_even_lift_is_not_a_rise() -> None:
    always = Criterion(id="always", kind="principle", text="The response exists.")
    lifted = apply_edits(BASE, [Edit(op="add", id="always", criterion=always)])
    probe = Probe(id="flat", prompt="Capital of France?", response="Paris, I think.", honest="Paris.")
    gate = await run_gate(BASE, lifted, scripted_score, probes=[probe])
    [outcome] = gate.probes
    assert outcome.after is not None and outcome.before is not None and outcome.after > outcome.before
    assert gate.passed  # both rose by the same amount: the margin did not
    alone = probe.model_copy(update={"honest": None})
    assert not (await run_gate(BASE, lifted, scripted_score, probes=[alone])).passed


async def test_gate_counts_unscorable_probes_and_needs_something_to_measure() -> None:
    async def broken_after(rubric: Rubric, items: Sequence[Item]) -> list[RewardResult]:
        results = await scripted_score(rubric, items)
        if rubric.version == BASE.version:
            return results
        return [r.model_copy(update={"reward": None, "reason": "judge down"}) for r in results]

    edited = apply_edits(BASE, [Edit(op="reweight", id="detailed", weight=1.0)])
    gate = await run_gate(BASE, edited, broken_after, pairs=pairs(), probes=[padded_probe()])
    assert "only 0 of 6 labelled pairs were scorable" in " ".join(gate.reasons)
    assert "probe pad is unscorable under the proposal" in gate.reasons
    assert (await run_gate(BASE, edited, scripted_score)).reasons == [
        "nothing to gate on: give labelled pairs (--pairs) or keep the probes"]
    assert GateConfig().accuracy_tolerance == 0.02 and RefineConfig().sample_size == 20


def test_a_nested_proposal_object_is_read_too() -> None:
    reply = {"findings": [], "proposal": {"edits": [{"op": "reweight", "id": "relevant", "weight": 2}]}}
    _, edits, _, _ = parse_audit(json.dumps(reply), BASE, [])
    assert [(e.op, e.id, e.weight) for e in edits] == [("reweight", "relevant", 2.0)]
