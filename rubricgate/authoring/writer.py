"""Rubric writers: what turns principles, ranked responses or instance rubrics into a Rubric.

Two implementations of one protocol, picked by the generator spec (`open_writer`):

- `LLMRubricWriter`: any model that writes text (`openai:`, `litellm:`, `vllm:`, `fake:`) gets the
  versioned prompts in `prompts/generator_*_v1.md`; its reply is parsed leniently, validated
  strictly, checked against the OpenRubrics checklist, and on a problem sent back with the
  problem stated, up to `parse_attempts` times, then a clear VerdictParseError.
- `TemplateRubricWriter` (`authoring/template.py`): deterministic templates and extraction, with the
  embedded model filling label slots (weights, phrasings). Offline, always valid.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from rubricgate.authoring.draft import Draft
from rubricgate.authoring.llm_calls import BackendTextGenerator, LabelChooser, TextGenerator, generate_parsed
from rubricgate.authoring.parse import Review, parse_generated_rubric, review_rubric, revise
from rubricgate.authoring.source import PrincipleSet, RankedPrompt
from rubricgate.errors import UsageError, VerdictParseError
from rubricgate.judges.base import JudgeBackend
from rubricgate.judges.prompts import load_template, prompt_text
from rubricgate.models.reward import Item
from rubricgate.models.rubric import Rubric

PRINCIPLES_TEMPLATE = "generator_principles_v1"
CONTRAST_TEMPLATE = "generator_contrast_v1"
DISTILL_TEMPLATE = "generator_distill_v1"
TEMPLATE_WRITER = "template"
"""`--generator template`: deterministic templates, no model at all."""
_MAX_RESPONSE_CHARS = 6000


@runtime_checkable
class RubricWriter(Protocol):
    """Writes rubrics; `attempt` > 0 asks for a different sample of the same request."""

    @property
    def name(self) -> str:
        """What writes: a generator spec, or `template[+judge spec]`."""
        ...

    async def from_principles(self, source: PrincipleSet, attempt: int = 0) -> Draft:
        """A rubric encoding the principles (hard rules and principles)."""
        ...

    async def from_ranking(self, item: RankedPrompt, rubric_id: str, attempt: int = 0,
                           feedback: str | None = None) -> Draft:
        """An instance rubric for one prompt: hard rules from the request, principles from why
        the better responses win. `feedback` says why the previous attempt was rejected."""
        ...

    async def distill(self, rubrics: Sequence[Rubric], rubric_id: str) -> Draft:
        """One general rubric from instance rubrics (deduplicated, abstracted)."""
        ...

    async def aclose(self) -> None:
        """Release the model, unless it is shared."""
        ...


class LLMRubricWriter:
    """Writes rubrics with a text-generating model (see the module docstring)."""

    def __init__(self, generator: TextGenerator, *, parse_attempts: int = 3, temperature: float = 0.7,
                 max_tokens: int = 2048) -> None:
        if parse_attempts < 1:
            raise UsageError("parse_attempts must be at least 1")
        self._generator = generator
        self._parse_attempts = parse_attempts
        self._temperature = temperature
        self._max_tokens = max_tokens

    @property
    def name(self) -> str:
        return self._generator.name

    async def from_principles(self, source: PrincipleSet, attempt: int = 0) -> Draft:
        examples = ""
        if source.examples:
            shown = "\n".join(f"- {_clip(e, 600)}" for e in source.examples[:8])
            examples = f"\nExample prompts the rubric will grade responses to (for context only):\n{shown}\n"
        values = {"rubric_id": source.name, "principles": "\n".join(f"- {p}" for p in source.principles),
                  "examples_block": examples}
        return await self._write(PRINCIPLES_TEMPLATE, values, source.name, attempt, generic=True,
                                 description=source.description)

    async def from_ranking(self, item: RankedPrompt, rubric_id: str, attempt: int = 0,
                           feedback: str | None = None) -> Draft:
        blocks = []
        for position, (rank, response) in enumerate(item.ordered(), start=1):
            fence = hashlib.sha256(response.encode()).hexdigest()[:12]
            blocks.append(f"### Ranked {position} (rank {rank + 1}{', best' if rank == min(item.ranks) else ''})\n"
                          f"<response-{fence}>\n{_clip(response, _MAX_RESPONSE_CHARS)}\n</response-{fence}>")
        note = (f"\nA previous rubric for this prompt was rejected: {feedback}. Make the criteria capture what "
                "really separates the better responses from the worse ones.\n") if feedback else ""
        values = {"prompt": prompt_text(Item(prompt=item.prompt, response="")), "responses": "\n\n".join(blocks),
                  "feedback_block": note}
        return await self._write(CONTRAST_TEMPLATE, values, rubric_id, attempt, generic=False)

    async def distill(self, rubrics: Sequence[Rubric], rubric_id: str) -> Draft:
        if not rubrics:
            raise UsageError("nothing to distill: no instance rubric given")
        listed = []
        for rubric in rubrics:
            lines = "\n".join(f"  - ({c.kind}, weight {c.weight:g}) {c.text}" for c in rubric.criteria)
            listed.append(f"- {rubric.id}:\n{lines}")
        values = {"rubric_id": rubric_id, "count": str(len(rubrics)), "rubrics": "\n".join(listed)}
        return await self._write(DISTILL_TEMPLATE, values, rubric_id, 0, generic=True)

    async def aclose(self) -> None:
        await self._generator.aclose()

    async def _write(self, template_name: str, values: dict[str, str], rubric_id: str, attempt: int, *,
                     generic: bool, description: str | None = None) -> Draft:
        template = load_template(template_name)

        def parse(text: str) -> Review:
            review = review_rubric(parse_generated_rubric(text, rubric_id, description=description), generic=generic)
            if review.problems:
                raise VerdictParseError("; ".join(review.problems))
            return review

        parsed = await generate_parsed(self._generator, template, values, parse, attempt=attempt,
                                       parse_attempts=self._parse_attempts, temperature=self._temperature,
                                       max_tokens=self._max_tokens, wanted="rubric")
        review = parsed.value
        notes = [*review.fixes]
        if parsed.replies > 1:
            notes.append(f"the generator needed {parsed.replies} replies (fed back: {parsed.problem})")
        metadata = {"generator": self.name, "generator_template": template.version}
        return Draft(revise(review.rubric, metadata={**review.rubric.metadata, **metadata}), notes)


def open_writer(generator: JudgeBackend | None = None, *, parse_attempts: int = 3) -> RubricWriter:
    """The writer for a generator stack (build it with `Gateway.judge(spec, free_text=True)`,
    which owns and closes it).

    None is the model-free `template` writer. A generator that writes no free text
    (`capabilities.free_text`, e.g. `llamacpp:*`) gets the template writer with the model
    choosing labels. Any other generator writes the rubric as text.
    """
    from rubricgate.authoring.template import TemplateRubricWriter

    if generator is None:
        return TemplateRubricWriter()
    if not generator.capabilities.free_text:
        return TemplateRubricWriter(LabelChooser(generator, owned=False))
    return LLMRubricWriter(BackendTextGenerator(generator, owned=False), parse_attempts=parse_attempts)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + " […]"
