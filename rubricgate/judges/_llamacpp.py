"""The embedded judge: a GGUF model run in-process on the CPU by llama.cpp.

The model fills the verdict form slot by slot: we write the JSON skeleton ourselves and read
the next-token logits over the allowed labels at each score slot. Every reply is therefore
schema-valid by construction, carries the judge's label probabilities (expected scores), and
costs one prompt pass plus a few tokens per criterion. Votes sample a label from those
probabilities with a seed from `sample_index`.

The shared prefix (instructions + rubric) is always evaluated as its own chunk and kept in the
KV cache, so items graded against one rubric reuse it and results do not depend on history.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import llama_cpp
from llama_cpp import Llama

from rubricgate.errors import JudgeRejected, UsageError
from rubricgate.models.config import BackendConfig, JudgeCapabilities
from rubricgate.models.judging import JudgeReply, JudgeRequest, TokenUsage

_ANSWER_CUE = "\n\nJSON verdict:\n"
_GGML_LOG_ERROR = 4
logger = logging.getLogger(__name__)


@llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
def _log_errors_only(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    """llama.cpp prints load chatter to stderr even when not verbose; keep only its errors."""
    if level == _GGML_LOG_ERROR:
        logger.error("llama.cpp: %s", text.decode("utf-8", errors="replace").rstrip())


llama_cpp.llama_log_set(_log_errors_only, ctypes.c_void_p(0))


class LlamaCppBackend:
    """One GGUF model in this process; calls run one at a time on a worker thread."""

    prefers_rationale = False

    def __init__(self, model_path: Path, config: BackendConfig, name: str) -> None:
        if not model_path.is_file():
            raise UsageError(f"GGUF model file {model_path} does not exist")
        self._path = model_path
        self._config = config
        self._name = name
        self._llm: Llama | None = None
        self._lock = asyncio.Lock()
        self._prefix: list[int] = []
        self._tail: list[int] = []
        self._label_tokens: dict[tuple[str, ...], list[list[int]]] = {}

    @property
    def name(self) -> str:
        return self._name

    @property
    def capabilities(self) -> JudgeCapabilities:
        # One context answers one call at a time; a few queued keep it busy. A small base model
        # fills forms with label probabilities but writes no usable free text.
        return JudgeCapabilities(concurrency=8, label_probs=True, free_text=False, context_tokens=self._config.n_ctx)

    async def complete(self, request: JudgeRequest) -> JudgeReply:
        async with self._lock:  # one context, one caller; never block the event loop
            return await asyncio.to_thread(self._complete_blocking, request)

    async def aclose(self) -> None:
        async with self._lock:
            if self._llm is not None:
                self._llm.close()
                self._llm = None

    def _model(self) -> Llama:
        if self._llm is None:
            self._llm = Llama(model_path=str(self._path), n_ctx=self._config.n_ctx, n_batch=512,
                              n_threads=self._config.n_threads or min(4, os.cpu_count() or 1),
                              logits_all=False, verbose=False)
        return self._llm

    def _complete_blocking(self, request: JudgeRequest) -> JudgeReply:
        started = time.perf_counter()
        llm = self._model()
        system, rest = _completion_prompt(request)
        prefix = llm.tokenize(system.encode(), add_bos=True, special=False)
        tail = llm.tokenize(rest.encode(), add_bos=False, special=False)
        if len(prefix) + len(tail) + 16 * len(request.form.fields) + 8 > self._config.n_ctx:
            raise JudgeRejected(f"{self.name}: prompt has {len(prefix) + len(tail)} tokens, more than the "
                                f"context of {self._config.n_ctx}; shorten the item or raise the context "
                                "(RUBRICGATE_JUDGE_CONTEXT, or BackendConfig.n_ctx)")
        self._load_prompt(llm, prefix, tail)
        rng = random.Random(request.seed)
        pieces: list[str] = []
        probs_by_field: dict[str, dict[str, float]] = {}
        generated = 0
        for position, field in enumerate(request.form.fields):
            opener = ("{" if position == 0 else "}, ") + json.dumps(field.id) + ': {"score": "'
            pieces.append(opener)
            opener_tokens = llm.tokenize(opener.encode(), add_bos=False, special=False)
            llm.eval(opener_tokens)
            label_tokens = self._labels(llm, field.labels)
            logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),))
            probs = _softmax([float(logits[tokens[0]]) for tokens in label_tokens])
            probs_by_field[field.id] = dict(zip(field.labels, probs, strict=True))
            choice = _sample(probs, request.sampling.temperature, rng)
            llm.eval(label_tokens[choice])
            pieces.append(field.labels[choice] + '"')
            generated += len(opener_tokens) + len(label_tokens[choice])
        text = "".join(pieces) + "}}"
        usage = TokenUsage(prompt=len(prefix) + len(tail), completion=generated + 2)
        return JudgeReply(text=text, backend=self.name, label_probs=probs_by_field, usage=usage,
                          latency_ms=(time.perf_counter() - started) * 1000)

    def _load_prompt(self, llm: Llama, prefix: list[int], tail: list[int]) -> None:
        """Reuse the KV cache of the shared prefix (rubric) and, for the next vote on the same
        item, of the whole prompt. Each part is always evaluated as its own chunk, so reused
        and fresh states are identical and results do not depend on call order."""
        loaded = len(self._prefix) + len(self._tail)
        if self._prefix == prefix and llm.n_tokens >= len(prefix):
            if self._tail == tail and llm.n_tokens >= loaded:
                llm.n_tokens = loaded  # eval() drops the previous vote's tokens from the KV cache
                return
            llm.n_tokens = len(prefix)
        else:
            llm.reset()  # type: ignore[no-untyped-call]
            llm.eval(prefix)
            self._prefix = prefix
        llm.eval(tail)
        self._tail = tail

    def _labels(self, llm: Llama, labels: tuple[str, ...]) -> list[list[int]]:
        """Token ids of each label; first tokens must differ to read one distribution."""
        if labels not in self._label_tokens:
            tokens = [llm.tokenize(label.encode(), add_bos=False, special=False) for label in labels]
            if len({t[0] for t in tokens}) != len(tokens):
                raise UsageError(f"labels {labels} share a first token in {self.name}; use single digits")
            self._label_tokens[labels] = tokens
        return self._label_tokens[labels]


def _completion_prompt(request: JudgeRequest) -> tuple[str, str]:
    """(shared prefix, per-item rest) as plain completion text: the base model has no chat template."""
    system = "\n\n".join(m.content for m in request.messages if m.role == "system")
    rest = "\n\n".join(m.content for m in request.messages if m.role != "system")
    return system + "\n\n", rest + _ANSWER_CUE


def _softmax(values: list[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def _sample(probs: list[float], temperature: float, rng: random.Random) -> int:
    if temperature <= 0:
        return max(range(len(probs)), key=probs.__getitem__)
    weights = [p ** (1.0 / temperature) for p in probs]
    return rng.choices(range(len(probs)), weights=weights)[0]
