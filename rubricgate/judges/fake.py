"""A scripted judge for tests and demos: replies come from a function or a fixed mode."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from rubricgate.models.config import JudgeCapabilities
from rubricgate.models.judging import JudgeReply, JudgeRequest, TokenUsage, VerdictForm


def best_reply(form: VerdictForm) -> str:
    """A verdict giving every field its top label."""
    return json.dumps({f.id: {"rationale": "meets it", "score": f.labels[-1]} for f in form.fields})


def worst_reply(form: VerdictForm) -> str:
    """A verdict giving every field its bottom label."""
    return json.dumps({f.id: {"rationale": "misses it", "score": f.labels[0]} for f in form.fields})


_MODES: dict[str, Callable[[JudgeRequest], str]] = {
    "best": lambda request: best_reply(request.form),
    "worst": lambda request: worst_reply(request.form),
    "garbage": lambda request: "I think it is pretty good overall.",
    "alternate": lambda request: (best_reply if request.sample_index % 2 == 0 else worst_reply)(request.form),
}


@dataclass
class FakeBackend:
    """Replies come from a function, so a test reads like a script of the judge."""

    reply: Callable[[JudgeRequest], str]
    name: str = "fake:scripted"
    requests: list[JudgeRequest] = field(default_factory=list)
    prefers_rationale: bool = True
    record: bool = True
    """Keep every request in `requests` (for tests); off for `fake:` specs, which may serve for days."""
    capabilities: JudgeCapabilities = field(default_factory=JudgeCapabilities)

    @classmethod
    def from_spec(cls, model: str) -> FakeBackend:
        """`fake:best|worst|garbage|alternate`, or any other text as the literal reply."""
        mode = _MODES.get(model)
        return cls(reply=mode if mode else (lambda request: model), name=f"fake:{model}", record=False)

    async def complete(self, request: JudgeRequest) -> JudgeReply:
        if self.record:
            self.requests.append(request)
        text = self.reply(request)
        words = sum(len(m.content.split()) for m in request.messages)
        return JudgeReply(text=text, backend=self.name,
                          usage=TokenUsage(prompt=words, completion=len(text.split())))

    async def aclose(self) -> None:
        return None
