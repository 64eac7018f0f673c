"""Bounded, linear scoring work: folding votes scales with the rubric, not its square."""

from __future__ import annotations

import time

from rubricgate.models.judging import FieldVerdict, FormField, JudgeReply, JudgeRequest, Verdict, VerdictForm
from rubricgate.models.rubric import Rubric
from rubricgate.scoring.votes import Vote, fold_votes


def wide_rubric(n: int) -> Rubric:
    return Rubric.model_validate({"id": "wide", "criteria": [
        {"id": f"c{i}", "kind": "hard_rule", "text": f"The response does thing {i}."} for i in range(n)]})


def test_folding_twenty_thousand_criteria_is_linear() -> None:
    """The old fold looked each field's criterion up by scanning the rubric: 2e8 steps here (tens of
    seconds); a linear fold takes well under a second, so 5 s separates the two on a busy machine."""
    n = 20_000
    rubric = wide_rubric(n)
    form = VerdictForm(fields=tuple(FormField(id=c.id, labels=("fail", "pass")) for c in rubric.criteria))
    request = JudgeRequest(messages=(), form=form, template_version="t", rubric_ref=rubric.ref)
    verdict = Verdict(fields={c.id: FieldVerdict(label="pass") for c in rubric.criteria})
    vote = Vote(reply=JudgeReply(text="{}", backend="fake:best"), verdict=verdict, complete=True)
    started = time.perf_counter()
    folded = fold_votes(rubric, [request], [vote], min_vote_share=0.5, use_label_probs=False)
    assert time.perf_counter() - started < 5.0
    assert len(folded.scores) == n and all(s.value == 1.0 for s in folded.scores.values())
