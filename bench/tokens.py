"""Judge tokens per reward: all criteria in one call (rubricgate) vs one call per criterion.

Usage: python bench/tokens.py [--items N]

For every shipped rubric, the same items are rendered both ways with the same template machinery
(`prompts/judge_v1.md`, `verdict_form`, `render_messages`): once with every judged criterion in one
verdict form, and once per criterion with a one-criterion view of the rubric. Each request goes
to the local OpenAI-compatible judge (in process, 127.0.0.1), which answers schema-valid JSON with
a one-sentence rationale per criterion, as a remote judge would. Tokens are counted with a real
tokenizer (Gemma 3's, from the embedded judge's GGUF, vocabulary only) on the rendered messages
and on the reply text; chat-template tokens (a few per message) are not included. Falls back to
the judge server's word counts when llama-cpp-python is not installed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from typing import Any

from common import JUDGE_MODEL, load_items, print_table

from rubricgate.judges._openai import OpenAIBackend
from rubricgate.judges.prompts import load_template, render_messages, verdict_form
from rubricgate.library.rubric_files import iter_rubric_files, load_rubric_file
from rubricgate.models.config import BackendConfig
from rubricgate.models.judging import JudgeReply, JudgeRequest
from rubricgate.models.reward import Item
from rubricgate.models.rubric import Criterion, Rubric
from tests.support.openai_server import ChatCall, Reply, ScriptedJudgeServer

RATIONALE = ("The response addresses the request directly and gives a concrete, correct answer, "
             "though one step could be explained more clearly.")


def judge_script(call: ChatCall) -> Reply:
    """A schema-valid verdict with a one-sentence rationale per criterion."""
    schema = call.body["response_format"]["json_schema"]["schema"]
    return Reply.json({name: {"rationale": RATIONALE, "score": spec["properties"]["score"]["enum"][-1]}
                       for name, spec in schema["properties"].items()})


def tokenizer() -> tuple[str, Callable[[str], int]] | None:
    """Gemma 3's tokenizer from the embedded judge's weights (vocabulary only), if installed."""
    try:
        from llama_cpp import Llama

        import rubricgate.judges._llamacpp  # noqa: F401 - installs its quiet llama.cpp log callback
        from rubricgate.judges.embedded_model import ensure_embedded_model
        from rubricgate.judges.registry import default_model_dir
    except ImportError:
        return None
    llm = Llama(model_path=str(ensure_embedded_model(default_model_dir())), vocab_only=True, verbose=False)
    return "Gemma 3 tokens", lambda text: len(llm.tokenize(text.encode(), add_bos=False, special=False))


def one_criterion(rubric: Rubric, criterion: Criterion) -> Rubric:
    """The rubric seen through one criterion (same id, description and scale)."""
    data: dict[str, Any] = rubric.model_dump(mode="json", by_alias=True)
    data["criteria"] = [criterion.model_dump(mode="json", by_alias=True, exclude_none=True)]
    return Rubric.model_validate(data)


async def measure(backend: OpenAIBackend, rubric: Rubric, items: list[Item], per_criterion: bool,
                  count: Callable[[str], int] | None) -> tuple[int, int, int]:
    """(calls, prompt tokens, completion tokens) to grade every item once."""
    template = load_template()
    views = [one_criterion(rubric, c) for c in rubric.judged_criteria] if per_criterion else [rubric]
    requests = []
    for item in items:
        for view in views:
            form = verdict_form(view, rationale=True)
            requests.append(JudgeRequest(messages=render_messages(template, view, item, form), form=form,
                                         template_version=template.version, rubric_ref=view.ref))
    slots = asyncio.Semaphore(16)  # a few connections at a time: the server's listen backlog is finite

    async def send(request: JudgeRequest) -> JudgeReply:
        async with slots:
            return await backend.complete(request)

    replies = await asyncio.gather(*(send(r) for r in requests))
    prompt = completion = 0
    for request, reply in zip(requests, replies, strict=True):
        json.loads(reply.text)  # every reply is a valid verdict
        if count is None:
            prompt, completion = prompt + reply.usage.prompt, completion + reply.usage.completion
        else:
            prompt += sum(count(m.content) for m in request.messages)
            completion += count(reply.text)
    return len(requests), prompt, completion


async def run(items: list[Item], url: str, count: Callable[[str], int] | None) -> list[list[str]]:
    backend = OpenAIBackend(JUDGE_MODEL, BackendConfig(base_url=url))
    rows = []
    try:
        for path in iter_rubric_files():
            rubric = load_rubric_file(path)
            judged = len(rubric.judged_criteria)
            if judged < 2:
                continue
            one = await measure(backend, rubric, items, False, count)
            each = await measure(backend, rubric, items, True, count)
            n = len(items)
            rows.append([rubric.id, str(judged), f"{one[0] / n:.0f} / {each[0] / n:.0f}",
                         f"{one[1] / n:,.0f}", f"{each[1] / n:,.0f}", f"{one[2] / n:,.0f}", f"{each[2] / n:,.0f}",
                         f"{(one[1] + one[2]) / n:,.0f}", f"{(each[1] + each[2]) / n:,.0f}",
                         f"{(each[1] + each[2]) / (one[1] + one[2]):.2f}x"])
    finally:
        await backend.aclose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=22, help="items graded per rubric")
    args = parser.parse_args()
    counter = tokenizer()
    unit, count = counter if counter else ("judge-reported tokens (word counts)", None)
    with ScriptedJudgeServer(judge_script) as server:
        rows = asyncio.run(run(load_items(args.items), server.base_url, count))
    print_table(
        f"judge tokens per reward (1 vote), {args.items} items (LLMBar sample + chat examples), {unit}",
        ["rubric", "judged criteria", "calls: one / per crit.", "prompt: one", "prompt: per crit.",
         "completion: one", "completion: per crit.", "total: one", "total: per crit.", "per crit. / one"],
        rows,
        ["one = all criteria in one call (rubricgate); per crit. = one call per criterion, same template",
         "a one-sentence rationale per criterion in every reply; deterministic checks need no judge tokens"])


if __name__ == "__main__":
    main()
