"""Cache keys: sha256 of canonical JSON of everything that can change a judge's reply."""

from __future__ import annotations

import hashlib

from rubricgate.judges.prompts import canonical_json
from rubricgate.models.judging import JudgeRequest


def cache_key(judge: str, request: JudgeRequest) -> str:
    """Key of one vote. Timeouts, retries and API keys never enter it; the rendered prompt does
    (it holds the prompt, response and reference), as do the template and rubric versions."""
    identity = {
        "judge": judge,
        "sampling": request.sampling.model_dump(mode="json"),
        "template": request.template_version,
        "rubric": request.rubric_ref,
        "form": request.form.model_dump(mode="json"),
        "messages": [m.model_dump(mode="json") for m in request.messages],
        "sample_index": request.sample_index,
    }
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()
