"""The two ways a model helps author rubrics: writing text, or filling label slots.

A `TextGenerator` writes free text (a rubric document). Remote judges can: `BackendTextGenerator`
sends them an ordinary `JudgeRequest` whose verdict form is empty, so the request carries no
schema and the backend returns the model's text unchanged (build the backend with
`structured_output="none"`, see `open_writer`). Retries, limits and transport errors are the
backend stack's, as for judging.

The embedded model (`llamacpp:*`) cannot write text: it fills a verdict form slot by slot. A
`LabelChooser` uses exactly that: it asks multiple-choice questions (weights, phrasings) as form
fields and reads the chosen labels, so even a 270M base model takes part deterministically.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar, runtime_checkable

from rubricgate.errors import JudgeError, VerdictParseError
from rubricgate.judges.base import JudgeBackend
from rubricgate.judges.parse import parse_verdict
from rubricgate.judges.prompts import PromptTemplate, load_template
from rubricgate.models.judging import ChatMessage, FormField, JudgeRequest, SamplingParams, VerdictForm

FREE_TEXT = VerdictForm(fields=(), rationale=False)
"""An empty form: the request asks for text, not a verdict."""
CHOICES_TEMPLATE = "generator_choices_v1"
FEEDBACK = ("Your reply could not be used: {problem}. Reply again with the complete, corrected JSON object only, "
            "following the same instructions.")
"""What a text generator is told when its reply does not parse, before it tries again."""
T = TypeVar("T")


@runtime_checkable
class TextGenerator(Protocol):
    """A model that answers chat messages with free text."""

    @property
    def name(self) -> str:
        """`kind:model` of the model behind it."""
        ...

    async def generate(self, messages: Sequence[ChatMessage], *, sample_index: int = 0, temperature: float = 0.7,
                       max_tokens: int = 2048, tag: str = "generator") -> str:
        """One sampled reply; `sample_index` seeds it, `tag` names the prompt template and version.

        Raises JudgeUnavailable / JudgeRejected like a judge call.
        """
        ...

    async def aclose(self) -> None:
        """Release clients and models."""
        ...


class BackendTextGenerator:
    """A judge backend used as a text generator (see the module docstring)."""

    def __init__(self, backend: JudgeBackend, owned: bool = True) -> None:
        self._backend = backend
        self._owned = owned

    @property
    def name(self) -> str:
        return self._backend.name

    async def generate(self, messages: Sequence[ChatMessage], *, sample_index: int = 0, temperature: float = 0.7,
                       max_tokens: int = 2048, tag: str = "generator") -> str:
        request = JudgeRequest(messages=tuple(messages), form=FREE_TEXT,
                               sampling=SamplingParams(temperature=temperature, max_tokens=max_tokens),
                               sample_index=sample_index, template_version=tag, rubric_ref="authoring")
        reply = await self._backend.complete(request)
        return reply.text

    async def aclose(self) -> None:
        if self._owned:  # a backend shared with the judge is closed by whoever opened it
            await self._backend.aclose()


@dataclass(frozen=True)
class Choice:
    """One multiple-choice question for a label-filling model."""

    id: str
    """Form field id (a criterion's `weight_<id>`, `style_<id>`, ...)."""
    question: str
    labels: tuple[str, ...]
    """Single-token labels with distinct first tokens ("1".."3", "a"/"b")."""
    default: str
    """The answer when no model is asked or its reply is unusable."""


class LabelChooser:
    """Asks a judge backend multiple-choice questions through one verdict form."""

    def __init__(self, backend: JudgeBackend, template: PromptTemplate | None = None, owned: bool = True) -> None:
        self._backend = backend
        self._owned = owned
        self._template = template or load_template(CHOICES_TEMPLATE)
        self.notes: list[str] = []
        """Why defaults were used, if they were."""

    @property
    def name(self) -> str:
        return self._backend.name

    async def choose(self, task: str, context: str, choices: Sequence[Choice], attempt: int = 0) -> dict[str, str]:
        """The label picked for every choice; attempt 0 takes the most likely label, later
        attempts sample (temperature 1, seeded by the attempt), so resampling explores."""
        answers = {c.id: c.default for c in choices}
        if not choices:
            return answers
        form = VerdictForm(fields=tuple(FormField(id=c.id, labels=c.labels) for c in choices), rationale=False)
        questions = "\n".join(f"- {c.id}: {c.question} Answer {' or '.join(repr(x) for x in c.labels)}."
                              for c in choices)
        fields = ",\n".join(f'  "{c.id}": {{"score": "{"|".join(c.labels)}"}}' for c in choices)
        system = self._template.system.safe_substitute(task=task, questions=questions,
                                                       verdict_format="{\n" + fields + "\n}")
        user = self._template.user.safe_substitute(context=context)
        request = JudgeRequest(
            messages=(ChatMessage(role="system", content=system), ChatMessage(role="user", content=user)),
            form=form, sampling=SamplingParams(temperature=0.0 if attempt == 0 else 1.0, max_tokens=256),
            sample_index=attempt, template_version=self._template.version, rubric_ref="authoring")
        try:
            verdict = parse_verdict(await self._backend.complete(request), form)
        except (JudgeError, VerdictParseError) as exc:
            self.notes.append(f"{self.name} could not choose ({type(exc).__name__}: {exc}); used defaults")
            return answers
        for field_id, answer in verdict.fields.items():
            answers[field_id] = answer.label
        return answers

    async def aclose(self) -> None:
        if self._owned:  # a backend shared with the judge is closed by whoever opened it
            await self._backend.aclose()


@dataclass(frozen=True)
class Parsed(Generic[T]):
    """A parsed reply and how it was reached: `replies` asked for, the last problem fed back."""

    value: T
    replies: int
    problem: str | None


async def generate_parsed(generator: TextGenerator, template: PromptTemplate, values: dict[str, str],
                          parse: Callable[[str], T], *, attempt: int, parse_attempts: int, temperature: float,
                          max_tokens: int, wanted: str) -> Parsed[T]:
    """Ask until `parse` accepts a reply: each VerdictParseError is fed back to the model as a
    correction turn. Raises VerdictParseError naming `wanted` after `parse_attempts` replies."""
    messages = [ChatMessage(role="system", content=template.system.safe_substitute(values)),
                ChatMessage(role="user", content=template.user.safe_substitute(values))]
    problem: str | None = None
    for retry in range(parse_attempts):
        text = await generator.generate(messages, sample_index=attempt * parse_attempts + retry,
                                        temperature=temperature, max_tokens=max_tokens, tag=template.version)
        try:
            return Parsed(parse(text), retry + 1, problem)
        except VerdictParseError as exc:
            problem = str(exc)
            messages += [ChatMessage(role="assistant", content=text[:8000]),
                         ChatMessage(role="user", content=FEEDBACK.format(problem=problem))]
    raise VerdictParseError(f"{generator.name} gave no usable {wanted} in {parse_attempts} replies; "
                            f"last problem: {problem}")
