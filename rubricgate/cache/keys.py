"""Cache keys: sha256 of canonical JSON of everything that can change a judge's reply."""

from __future__ import annotations

import hashlib
from functools import lru_cache

from rubricgate.judges.prompts import canonical_json
from rubricgate.models.judging import ChatMessage, JudgeRequest, SamplingParams, VerdictForm


def cache_key(judge: str, request: JudgeRequest) -> str:
    """Key of one vote. Timeouts, retries and API keys never enter it; the rendered prompt does
    (it holds the prompt, response and reference), as do the template and rubric versions."""
    shared = _prompt_digest(judge, request.messages, request.form, request.sampling, request.template_version,
                            request.rubric_ref)
    return hashlib.sha256(f"{shared}:{request.sample_index}".encode()).hexdigest()


@lru_cache(maxsize=1024)  # entries hold whole rendered prompts (~10 KB): 8192 of them held ~100 MB
def _prompt_digest(judge: str, messages: tuple[ChatMessage, ...], form: VerdictForm, sampling: SamplingParams,
                   template: str, rubric: str) -> str:
    """The part every vote on one item shares, hashed once (votes and lookups reuse it)."""
    identity = {
        "judge": judge,
        "sampling": sampling.model_dump(mode="json"),
        "template": template,
        "rubric": rubric,
        "form": form.model_dump(mode="json"),
        "messages": [m.model_dump(mode="json") for m in messages],
    }
    # Text is normalised where it enters (`models.reward.clean_text`); "surrogatepass" keeps a lone
    # surrogate that got in some other way (an inline rubric) from failing the key, and so the batch.
    return hashlib.sha256(canonical_json(identity).encode("utf-8", "surrogatepass")).hexdigest()
