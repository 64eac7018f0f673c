"""A scripted judge and a scripted meta-judge behind the local OpenAI-compatible server.

The judge is deliberately gullible in one way: it rates `detailed` by length, so a padded answer
games `thorough-answers`. It rates `no_padding` with the padding detector, and `short_answers`
(the criterion of a bad proposal) by brevity, which flips the labelled pairs. The meta-judge
answers `prompts/meta_refine_v1.md` requests with whatever proposal the test sets.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

from rubricgate.authoring.exploits import detect_patterns
from tests.support.openai_server import ChatCall, Reply

DATA = Path(__file__).resolve().parent / "data"
RUBRIC = DATA / "thorough-answers.yaml"
SAMPLES = DATA / "samples.jsonl"
PAIRS = DATA / "pairs.jsonl"
PADDED_SAMPLES = ["s1", "s3", "s6"]
JUDGE = "openai:judge-model"
META = "openai:meta-model"
_RESPONSE = re.compile(r"<response-(\w+)>\n(.*)\n</response-\1>", re.DOTALL)
_PROMPT = re.compile(r"## Prompt the response answers\n(.*?)\n(?:## Reference|## Response to grade)", re.DOTALL)

NO_PADDING = {"id": "no_padding", "kind": "principle", "weight": 2,
              "text": "The response is as long as its content requires, with no filler or repetition.",
              "pass": "Every sentence adds information.", "fail": "Restates itself or adds filler to look thorough."}
FIX = {"findings": [{"kind": "exploit", "name": "length_padding", "criterion": "detailed",
                     "evidence": PADDED_SAMPLES + ["s99"],
                     "explanation": "Padded answers that repeat one fact pass 'detailed' with top marks."},
                    {"kind": "ambiguity", "name": "detail_vs_length", "criterion": "detailed", "evidence": ["s2"],
                     "explanation": "'detailed' can be read as 'long'."}],
       "edits": [{"op": "add", "criterion": NO_PADDING, "why": "stop paying for padding"},
                 {"op": "clarify", "id": "detailed", "fail": "Is thin, or long only through repetition and filler.",
                  "why": "detail is not length"}],
       "summary": "Penalise padding; say that detail is not length."}
BAD = {"findings": [{"kind": "exploit", "name": "length_padding", "evidence": PADDED_SAMPLES,
                     "explanation": "Long answers score high."}],
       "edits": [{"op": "add", "criterion": {"id": "short_answers", "kind": "principle", "weight": 5,
                                             "text": "The response is as short as possible.",
                                             "pass": "A few words.", "fail": "More than a sentence."},
                  "why": "long answers are suspicious"}],
       "summary": "Prefer short answers."}


def judged_value(criterion: str, response: str, prompt: str) -> float:
    """The scripted judge's opinion in [0, 1] (mapped onto the field's labels)."""
    words = len(response.split())
    if criterion == "detailed":
        return 1.0 if words >= 60 else 0.5 if words >= 20 else 0.0
    if criterion == "relevant":
        asked = {w[:4] for w in re.findall(r"[a-z]{4,}", prompt.lower())}
        said = {w[:4] for w in re.findall(r"[a-z]{4,}", response.lower())}
        return 1.0 if asked & said else 0.0
    if criterion == "no_padding":
        return 0.0 if "length_padding" in detect_patterns(response, prompt) else 1.0
    if criterion == "short_answers":
        return 1.0 if words < 20 else 0.0
    return 1.0


def judge_reply(call: ChatCall) -> Reply:
    """A verdict for every field of the request's JSON schema."""
    user = call.last_user_text
    response = _RESPONSE.search(user)
    prompt = _PROMPT.search(user)
    schema = call.body["response_format"]["json_schema"]["schema"]
    verdict = {}
    for field, spec in schema["properties"].items():
        labels = spec["properties"]["score"]["enum"]
        value = judged_value(field, response.group(2) if response else "", prompt.group(1) if prompt else "")
        verdict[field] = {"rationale": f"scripted {field}", "score": labels[round(value * (len(labels) - 1))]}
    return Reply.json(verdict)


class Scripts:
    """Routes judge and meta-judge requests; `meta_replies` are served in order (the last repeats)."""

    def __init__(self) -> None:
        self.meta_replies: list[str] = [json.dumps(FIX)]
        self.meta_calls: list[ChatCall] = []
        self.judge_delay_s = 0.0
        self.meta_delay_s = 0.0
        self._lock = threading.Lock()

    def __call__(self, call: ChatCall) -> Reply:
        if call.model == "meta-model":
            with self._lock:
                self.meta_calls.append(call)
                index = min(len(self.meta_calls), len(self.meta_replies)) - 1
            return Reply.text(self.meta_replies[index], delay_s=self.meta_delay_s)
        reply = judge_reply(call)
        return reply.delayed(self.judge_delay_s) if self.judge_delay_s else reply


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
