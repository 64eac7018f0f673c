"""Judges reached through litellm: any hosted provider or OpenAI-compatible server.

litellm is imported here only, lazily, after forbidding its import-time price-map fetch.
"""

from __future__ import annotations

import os
import time
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm  # noqa: E402  (the environment must be set first)
from litellm import exceptions as errors  # noqa: E402

from rubricgate.errors import JudgeRejected, JudgeUnavailable  # noqa: E402
from rubricgate.judges.base import redact  # noqa: E402
from rubricgate.models.config import BackendConfig, JudgeCapabilities  # noqa: E402
from rubricgate.models.judging import JudgeReply, JudgeRequest, TokenUsage  # noqa: E402

litellm.suppress_debug_info = True
litellm.telemetry = False

_TRANSIENT = (errors.RateLimitError, errors.Timeout, errors.APIConnectionError, errors.ServiceUnavailableError,
              errors.InternalServerError, errors.BadGatewayError)
_PERMANENT = (errors.BadRequestError, errors.AuthenticationError, errors.NotFoundError,
              errors.PermissionDeniedError, errors.UnprocessableEntityError)


class LiteLLMBackend:
    """One litellm provider/model; litellm's own retries are off so ours do not multiply."""

    prefers_rationale = True

    def __init__(self, model: str, config: BackendConfig) -> None:
        self._model = model
        self._config = config
        self._structured = self._pick_structured_output()

    @property
    def name(self) -> str:
        return f"litellm:{self._model}"

    @property
    def capabilities(self) -> JudgeCapabilities:
        return JudgeCapabilities(concurrency=32)

    async def complete(self, request: JudgeRequest) -> JudgeReply:
        started = time.perf_counter()
        try:
            response = await litellm.acompletion(**self._call_args(request))
        except _TRANSIENT as exc:
            raise JudgeUnavailable(self._describe(exc), retry_after_s=_retry_after(exc)) from exc
        except _PERMANENT as exc:
            raise JudgeRejected(self._describe(exc)) from exc
        except errors.APIError as exc:
            # Unclassified provider failures (malformed bodies, resets mid-stream) are transient.
            raise JudgeUnavailable(self._describe(exc)) from exc
        return self._to_reply(response, (time.perf_counter() - started) * 1000)

    async def aclose(self) -> None:
        return None

    def _call_args(self, request: JudgeRequest) -> dict[str, Any]:
        args: dict[str, Any] = {
            "model": self._model,
            "messages": [m.model_dump() for m in request.messages],
            "temperature": request.sampling.temperature,
            "max_tokens": request.sampling.max_tokens,
            "seed": request.seed,
            "timeout": self._config.timeout_s,
            "max_retries": 0,
            "num_retries": 0,
        }
        if request.sampling.top_p is not None:
            args["top_p"] = request.sampling.top_p
        if self._config.base_url:
            args["api_base"] = self._config.base_url
        if self._config.api_key is not None:
            args["api_key"] = self._config.api_key.get_secret_value()
        elif self._config.base_url:
            args["api_key"] = "no-key"  # local servers (vLLM, llama.cpp) need none; the OpenAI client insists
        if self._structured == "json_schema":
            args["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "verdict", "schema": request.form.json_schema(), "strict": True},
            }
        elif self._structured == "json_object":
            args["response_format"] = {"type": "json_object"}
        return args

    def _describe(self, exc: Exception) -> str:
        """One line for logs and reasons; providers echo keys in auth errors, so redact ours."""
        message = redact(" ".join(str(getattr(exc, "message", exc)).split()), self._config.api_key)
        return f"{self.name}: {type(exc).__name__}: {message[:300]}"

    def _pick_structured_output(self) -> str:
        mode = self._config.structured_output
        if mode != "auto":
            return mode
        if self._config.base_url or litellm.supports_response_schema(model=self._model):
            return "json_schema"  # OpenAI-compatible servers (vLLM included) accept it
        return "none"

    def _to_reply(self, response: Any, latency_ms: float) -> JudgeReply:
        try:
            text = response.choices[0].message.content or ""
        except (AttributeError, IndexError) as exc:
            raise JudgeUnavailable(f"{self.name}: reply has no message content") from exc
        usage = getattr(response, "usage", None)
        tokens = TokenUsage(prompt=getattr(usage, "prompt_tokens", 0) or 0,
                            completion=getattr(usage, "completion_tokens", 0) or 0)
        return JudgeReply(text=text, backend=self.name, usage=tokens, latency_ms=latency_ms)


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or getattr(exc, "headers", None) or {}
    value = headers.get("retry-after") if hasattr(headers, "get") else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


