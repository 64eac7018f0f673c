"""Pairwise judge prompts: two responses side by side, one a/b preference per criterion.

The verdict has the same shape as a pointwise one (`{criterion: {"score": label}}`), so the one
parser, the JSON-schema output and the embedded model's slot filling all work unchanged. The
labels are "a" and "b" (LLMBar's "Output (a)" / "Output (b)"): lower case, because the parser
lower-cases labels, and one token each with distinct first tokens, so the embedded model reads
P(a) vs P(b) from one logit row. Labels ascend like any form's, so a field's folded value is the
preference for Output (b) in [0, 1].

Both responses are untrusted data, fenced with a keyed tag of their content; the shared part
(instructions, rubric) comes first so prefix caches apply.
"""

from __future__ import annotations

from rubricgate.judges.fence import fence_tag, installation_key
from rubricgate.judges.prompts import PromptTemplate, prompt_text, verdict_example
from rubricgate.models.judging import ChatMessage, FormField, VerdictForm
from rubricgate.models.preference import Matchup
from rubricgate.models.reward import Item
from rubricgate.models.rubric import Criterion, Rubric

PAIRWISE_TEMPLATE = "pairwise_v1"
PAIR_LABELS = ("a", "b")
"""Output (a), Output (b): in this order, a field's value is the preference for (b)."""


def pairwise_form(rubric: Rubric, rationale: bool = True) -> VerdictForm:
    """One a/b field per criterion the judge decides (deterministic checks are compared directly)."""
    return VerdictForm(fields=tuple(FormField(id=c.id, labels=PAIR_LABELS) for c in rubric.judged_criteria),
                       rationale=rationale)


def render_pair_messages(template: PromptTemplate, rubric: Rubric, matchup: Matchup, form: VerdictForm,
                         fence_key: bytes | None = None) -> tuple[ChatMessage, ...]:
    """System (instructions + rubric) then user (prompt, reference, both fenced outputs).

    The fence tag is a keyed hash of both outputs, as for pointwise prompts (`judges/fence.py`):
    neither output can close its fence. `fence_key` None uses this process's random key.
    """
    fence = fence_tag(f"{matchup.response_a}\x00{matchup.response_b}", fence_key or installation_key())
    judged = {f.id for f in form.fields}
    system = template.system.safe_substitute(
        rubric_id=rubric.id,
        rubric_description=rubric.description or "(no description)",
        criteria="\n".join(_criterion_line(c) for c in rubric.criteria if c.id in judged),
        points=str(rubric.scale.points),
        verdict_format=verdict_example(form),
    )
    reference = (f"\n## Reference answer (trusted, for comparison)\n{matchup.reference}\n"
                 if matchup.reference else "")
    user = template.user.safe_substitute(
        prompt=prompt_text(Item(prompt=matchup.prompt, response="")), reference_block=reference,
        response_a=matchup.response_a, response_b=matchup.response_b, fence=fence,
    )
    return (ChatMessage(role="system", content=system), ChatMessage(role="user", content=user))


def _criterion_line(criterion: Criterion) -> str:
    line = f"- {criterion.id} ({criterion.kind}): {criterion.text}"
    if criterion.pass_:
        line += f"\n    better: {criterion.pass_}"
    if criterion.fail:
        line += f"\n    worse: {criterion.fail}"
    return line
