"""A real, local, scripted OpenAI-compatible chat-completions server.

It stands in for hosted providers and vLLM servers in tests and benchmarks: a
small FastAPI app served by uvicorn in a background thread, bound only to
127.0.0.1 on a free port picked by the OS.

    with ScriptedJudgeServer() as server:
        resp = httpx.post(f"{server.base_url}/chat/completions", json={...})
        assert server.calls[0].model == "judge-model"

What each request gets is decided by a *script*: a callable taking a
:class:`ChatCall` and returning a :class:`Reply` (or a ``str``, taken as
``Reply.text``). Without a script the server answers like a well-behaved
structured-output model: schema-valid JSON when the request carries a JSON
schema (``response_format`` json_schema / json_object, vLLM ``guided_json`` or
``structured_outputs.json``), a fixed short text otherwise.

``fault_rate`` mixes seeded faults in (timeouts, 429 with Retry-After, 500,
503, malformed JSON bodies, truncated reply text, connection resets);
``latency_s``/``jitter_s`` delay every request. Everything random is drawn from
``random.Random(f"{seed}:{index}")``, so a run is repeatable per request index
regardless of thread scheduling.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import hashlib
import inspect
import json
import math
import random
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_TEXT",
    "FAULT_KINDS",
    "ChatCall",
    "Reply",
    "ScriptedJudgeServer",
    "extract_schema",
    "generate_from_schema",
    "sequence",
]

HOST = "127.0.0.1"
DEFAULT_MODEL = "judge-model"
DEFAULT_TEXT = "This is a scripted judge reply."
#: Faults that ``fault_rate`` draws from (uniformly, unless ``fault_kinds`` narrows them).
FAULT_KINDS: tuple[str, ...] = (
    "timeout",  # sleeps ``fault_delay_s`` (longer than any sane client timeout), then answers
    "rate_limit",  # 429 with Retry-After / retry-after-ms
    "server_error",  # 500
    "unavailable",  # 503
    "malformed",  # 200 with a JSON body cut in half (invalid JSON)
    "truncated",  # 200, valid envelope, message content cut short, finish_reason "length"
    "reset",  # connection closed with a TCP RST, no response at all
)


# --------------------------------------------------------------------------- data


@dataclass
class ChatCall:
    """One request received on ``/v1/chat/completions``."""

    index: int  # 0-based request count since start (or the last ``reset()``)
    model: str
    messages: list[dict[str, Any]]
    body: dict[str, Any]  # the full JSON body
    headers: dict[str, str]  # lower-case names
    received_at: float = 0.0  # time.monotonic() at arrival
    fault: str | None = None  # the injected fault kind, when ``fault_rate`` picked one

    @property
    def prompt_text(self) -> str:
        """All message text joined with newlines (handy in scripts)."""
        return "\n".join(_message_text(m) for m in self.messages)

    @property
    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return _message_text(message)
        return ""


@dataclass(frozen=True)
class Reply:
    """What the server does with one request. Build it with the class methods.

    ``kind`` is one of ``text``, ``default``, ``error``, ``reset``, ``malformed``,
    ``truncated``, ``cut_off``. ``delay_s`` is slept before answering (on top of
    the server's latency/jitter) for every kind.
    """

    kind: str
    content: str | None = None
    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    finish_reason: str = "stop"
    logprobs: list[dict[str, Any]] | None = None
    keep: float = 0.5
    usage: Mapping[str, int] | None = None

    # -- constructors -------------------------------------------------------------
    @classmethod
    def text(
        cls,
        content: str,
        *,
        finish_reason: str = "stop",
        delay_s: float = 0.0,
        logprobs: list[dict[str, Any]] | None = None,
        usage: Mapping[str, int] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """A normal chat.completion whose message content is ``content``.

        ``logprobs`` overrides the generated ``choices[0].logprobs.content`` list
        (it is only sent when the request asks for logprobs).
        """
        return cls(
            "text",
            content=content,
            finish_reason=finish_reason,
            delay_s=delay_s,
            logprobs=logprobs,
            usage=usage,
            headers=dict(headers or {}),
        )

    @classmethod
    def json(cls, value: Any, **kwargs: Any) -> Reply:
        """A normal answer whose content is ``json.dumps(value)``."""
        return cls.text(json.dumps(value), **kwargs)

    @classmethod
    def default(cls, *, delay_s: float = 0.0) -> Reply:
        """Whatever the default script would answer (schema-valid JSON or DEFAULT_TEXT)."""
        return cls("default", delay_s=delay_s)

    @classmethod
    def error(
        cls,
        status: int,
        message: str | None = None,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        retry_after: float | None = None,
        delay_s: float = 0.0,
    ) -> Reply:
        """An HTTP error. ``body``: None -> OpenAI error envelope; dict/list -> JSON;
        str -> sent raw as text/plain. ``retry_after`` sets ``Retry-After`` (seconds)
        and ``retry-after-ms``."""
        hdrs = dict(headers or {})
        if retry_after is not None:
            hdrs.setdefault("retry-after", _fmt_seconds(retry_after))
            hdrs.setdefault("retry-after-ms", str(round(retry_after * 1000)))
        if body is None:
            body = _error_envelope(status, message)
        return cls("error", status=status, body=body, headers=hdrs, delay_s=delay_s)

    @classmethod
    def slow(cls, seconds: float, then: Reply | str | None = None) -> Reply:
        """Wait ``seconds`` before doing ``then`` (default: the default answer)."""
        base = _coerce_reply(then) if then is not None else cls.default()
        return dataclasses.replace(base, delay_s=base.delay_s + seconds)

    @classmethod
    def reset(cls, *, delay_s: float = 0.0) -> Reply:
        """Close the connection with a TCP RST, without sending any response."""
        return cls("reset", delay_s=delay_s)

    @classmethod
    def malformed(cls, body: str | None = None, *, delay_s: float = 0.0) -> Reply:
        """HTTP 200, ``application/json``, complete HTTP message but an invalid JSON body.

        Default body: the first half of the real chat.completion JSON."""
        return cls("malformed", body=body, delay_s=delay_s)

    @classmethod
    def truncated(
        cls, content: str | None = None, *, keep: float = 0.5, delay_s: float = 0.0
    ) -> Reply:
        """A valid chat.completion whose message text is cut to ``keep`` of its length,
        with ``finish_reason="length"``. ``content=None`` truncates the default answer."""
        return cls("truncated", content=content, keep=keep, finish_reason="length", delay_s=delay_s)

    @classmethod
    def cut_off(cls, *, keep: float = 0.5, delay_s: float = 0.0) -> Reply:
        """HTTP 200 whose body stops after ``keep`` of its declared Content-Length; the
        connection is then closed (the client sees an incomplete message body)."""
        return cls("cut_off", keep=keep, delay_s=delay_s)

    def delayed(self, seconds: float) -> Reply:
        """The same reply, ``seconds`` later."""
        return dataclasses.replace(self, delay_s=self.delay_s + seconds)


Script = Callable[[ChatCall], "Reply | str | Awaitable[Reply | str]"]


def sequence(*replies: Reply | str, then: Reply | str | None = None) -> Script:
    """A script answering with ``replies`` in order, then ``then`` (default: the last
    reply again) for every later request. Thread-safe."""
    if not replies:
        raise ValueError("sequence() needs at least one reply")
    items = [_coerce_reply(r) for r in replies]
    tail = _coerce_reply(then) if then is not None else items[-1]
    lock = threading.Lock()
    position = 0

    def script(call: ChatCall) -> Reply:
        nonlocal position
        with lock:
            i = position
            position += 1
        return items[i] if i < len(items) else tail

    return script


def _coerce_reply(value: Any) -> Reply:
    if isinstance(value, Reply):
        return value
    if isinstance(value, str):
        return Reply.text(value)
    raise TypeError(f"a script must return a Reply or a str, not {type(value).__name__}")


# ------------------------------------------------------------- schema generation


def extract_schema(body: Mapping[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    """Find the JSON schema a request asks the answer to follow.

    Returns ``(schema_or_None, wants_json)``. Understands OpenAI ``response_format``
    (``json_schema`` and ``json_object`` with a schema under ``schema`` or
    ``json_schema.schema``) and the vLLM extensions ``guided_json`` and
    ``structured_outputs.json``.
    """
    wants_json = False
    candidates: list[Any] = []
    rf = body.get("response_format")
    if isinstance(rf, Mapping):
        kind = rf.get("type")
        if kind in ("json_schema", "json_object"):
            wants_json = True
        js = rf.get("json_schema")
        if isinstance(js, Mapping):
            candidates.append(js.get("schema"))
            if "schema" not in js and ("properties" in js or "type" in js):
                candidates.append(js)
        candidates.append(rf.get("schema"))
    guided = body.get("guided_json")
    if guided is not None:
        wants_json = True
        candidates.append(guided)
    so = body.get("structured_outputs")
    if isinstance(so, Mapping) and so.get("json") is not None:
        wants_json = True
        candidates.append(so.get("json"))
    for candidate in candidates:
        if isinstance(candidate, str):
            try:
                candidate = json.loads(candidate)
            except ValueError:
                continue
        if isinstance(candidate, Mapping):
            return dict(candidate), True
    return None, wants_json


_WORDS = ("good", "clear", "concise", "accurate", "helpful", "relevant", "complete", "safe")


def generate_from_schema(schema: Any, *, rng: random.Random | None = None) -> Any:
    """A deterministic value valid against ``schema`` (a JSON-schema subset).

    Supported: ``type`` (incl. lists), ``enum``, ``const``, ``object`` with
    ``properties``/``required`` (every property is filled in), ``string`` (with
    ``minLength``/``maxLength`` and common ``format``), ``integer``/``number``
    (``minimum``/``maximum``/exclusive bounds/``multipleOf``), ``boolean``,
    ``null``, ``array`` (``items``/``prefixItems``/``minItems``/``maxItems``),
    ``anyOf``/``oneOf``/``allOf`` and local ``$ref`` (``#/$defs/...``).
    ``rng=None`` picks the first enum value / lowest number; with an ``rng``
    choices are seeded.
    """
    return _gen(schema, root=schema, rng=rng, depth=0)


def _resolve_ref(ref: str, root: Any) -> Any:
    if not ref.startswith("#"):
        raise ValueError(f"only local $ref is supported, got {ref!r}")
    node = root
    for part in ref.lstrip("#").split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _merge_all_of(schema: Mapping[str, Any], root: Any) -> dict[str, Any]:
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    for sub in schema["allOf"]:
        if isinstance(sub, Mapping) and "$ref" in sub:
            sub = _resolve_ref(sub["$ref"], root)
        if not isinstance(sub, Mapping):
            continue
        if "allOf" in sub:
            sub = _merge_all_of(sub, root)
        for key, value in sub.items():
            if key == "properties":
                merged.setdefault("properties", {}).update(value)
            elif key == "required":
                merged["required"] = list(dict.fromkeys([*merged.get("required", []), *value]))
            else:
                merged.setdefault(key, value)
    return merged


def _pick(options: Sequence[Any], rng: random.Random | None) -> Any:
    return options[0] if rng is None else rng.choice(list(options))


def _gen(schema: Any, *, root: Any, rng: random.Random | None, depth: int) -> Any:
    if schema is True or schema is None:
        return "ok"
    if schema is False:
        raise ValueError("no value validates against the schema `false`")
    if not isinstance(schema, Mapping):
        raise TypeError(f"not a schema: {schema!r}")
    if depth > 32:
        raise ValueError("schema nesting too deep (recursive $ref without a base case?)")
    if "$ref" in schema:
        target = _resolve_ref(schema["$ref"], root)
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        if rest and isinstance(target, Mapping):
            target = {**target, **rest}
        return _gen(target, root=root, rng=rng, depth=depth + 1)
    if "allOf" in schema:
        return _gen(_merge_all_of(schema, root), root=root, rng=rng, depth=depth + 1)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return _pick(schema["enum"], rng)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            branches = list(schema[key])
            non_null = [
                b for b in branches if not (isinstance(b, Mapping) and b.get("type") == "null")
            ]
            branch = _pick(non_null or branches, rng)
            rest = {k: v for k, v in schema.items() if k != key}
            if rest and isinstance(branch, Mapping):
                branch = {**rest, **branch}
            return _gen(branch, root=root, rng=rng, depth=depth + 1)

    kind = schema.get("type")
    if isinstance(kind, list):
        non_null = [k for k in kind if k != "null"]
        kind = non_null[0] if non_null else "null"
    if kind is None:
        if "properties" in schema or "required" in schema:
            kind = "object"
        elif "items" in schema or "prefixItems" in schema:
            kind = "array"
        elif any(
            k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
        ):
            kind = "number"
        else:
            kind = "string"

    if kind == "object":
        props: Mapping[str, Any] = schema.get("properties") or {}
        required = list(schema.get("required") or [])
        names = list(props) if depth < 12 else [n for n in props if n in required]
        out: dict[str, Any] = {}
        for name in names:
            out[name] = _gen(props[name], root=root, rng=rng, depth=depth + 1)
        extra = schema.get("additionalProperties")
        for name in required:
            if name not in out:
                sub = extra if isinstance(extra, Mapping) else True
                out[name] = _gen(sub, root=root, rng=rng, depth=depth + 1)
        return out
    if kind == "array":
        return _gen_array(schema, root=root, rng=rng, depth=depth)
    if kind == "string":
        return _gen_string(schema, rng)
    if kind == "integer":
        return _gen_integer(schema, rng)
    if kind == "number":
        return _gen_number(schema, rng)
    if kind == "boolean":
        return True if rng is None else rng.random() < 0.5
    if kind == "null":
        return None
    raise ValueError(f"unsupported schema type {kind!r}")


def _gen_array(
    schema: Mapping[str, Any], *, root: Any, rng: random.Random | None, depth: int
) -> list[Any]:
    prefix = list(schema.get("prefixItems") or [])
    items = schema.get("items", True)
    if isinstance(items, list):  # draft-4..2019 tuple form
        prefix, items = items, schema.get("additionalItems", True)
    lo = int(schema.get("minItems", 0))
    hi = schema.get("maxItems")
    count = max(lo, 1, len(prefix) if hi is None else min(len(prefix), int(hi)))
    if hi is not None:
        count = min(count, int(hi))
    out: list[Any] = []
    for i in range(count):
        sub = prefix[i] if i < len(prefix) else items
        value = _gen(sub, root=root, rng=rng, depth=depth + 1)
        if schema.get("uniqueItems") and value in out:
            value = _unique_variant(value, out, i)
        out.append(value)
    return out


def _unique_variant(value: Any, seen: list[Any], i: int) -> Any:
    if isinstance(value, str):
        return f"{value}{i}"
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + i
    return value


def _gen_string(schema: Mapping[str, Any], rng: random.Random | None) -> str:
    fmt = schema.get("format")
    by_format = {
        "date-time": "2024-01-01T00:00:00Z",
        "date": "2024-01-01",
        "time": "00:00:00Z",
        "email": "judge@example.com",
        "uri": "https://example.com/",
        "url": "https://example.com/",
        "uuid": "00000000-0000-4000-8000-000000000000",
        "ipv4": "127.0.0.1",
        "hostname": "localhost",
    }
    if fmt in by_format:
        return by_format[fmt]
    text = "ok" if rng is None else f"{rng.choice(_WORDS)} {rng.choice(_WORDS)}"
    lo = int(schema.get("minLength", 0))
    hi = schema.get("maxLength")
    if len(text) < lo:
        text = text + "x" * (lo - len(text))
    if hi is not None:
        text = text[: int(hi)]
    return text


def _bounds(schema: Mapping[str, Any]) -> tuple[float | None, bool, float | None, bool]:
    lo, lo_excl = schema.get("minimum"), False
    hi, hi_excl = schema.get("maximum"), False
    ex_lo, ex_hi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if isinstance(ex_lo, bool):  # draft-4 boolean form
        lo_excl = ex_lo
    elif ex_lo is not None and (lo is None or ex_lo >= lo):
        lo, lo_excl = ex_lo, True
    if isinstance(ex_hi, bool):
        hi_excl = ex_hi
    elif ex_hi is not None and (hi is None or ex_hi <= hi):
        hi, hi_excl = ex_hi, True
    return lo, lo_excl, hi, hi_excl


def _gen_integer(schema: Mapping[str, Any], rng: random.Random | None) -> int:
    lo, lo_excl, hi, hi_excl = _bounds(schema)
    ilo = None if lo is None else (math.floor(lo) + 1 if lo_excl else math.ceil(lo))
    ihi = None if hi is None else (math.ceil(hi) - 1 if hi_excl else math.floor(hi))
    if ilo is None and ihi is None:
        ilo, ihi = 0, 10
    elif ilo is None:
        ilo = ihi - 10  # type: ignore[operator]
    elif ihi is None:
        ihi = ilo + 10
    assert ilo is not None and ihi is not None
    if ilo > ihi:
        raise ValueError(f"empty integer range in {dict(schema)!r}")
    step = schema.get("multipleOf")
    if step:
        first, last = math.ceil(ilo / step), math.floor(ihi / step)
        if first > last:
            raise ValueError(f"no multiple of {step} in range in {dict(schema)!r}")
        k = first if rng is None else rng.randint(first, last)
        return int(k * step)
    return ilo if rng is None else rng.randint(ilo, ihi)


def _gen_number(schema: Mapping[str, Any], rng: random.Random | None) -> float:
    lo, lo_excl, hi, hi_excl = _bounds(schema)
    if lo is None and hi is None:
        lo, hi = 0.0, 1.0
    elif lo is None:
        lo = float(hi) - 1.0  # type: ignore[arg-type]
    elif hi is None:
        hi = float(lo) + 1.0
    lo, hi = float(lo), float(hi)  # type: ignore[arg-type]
    step = schema.get("multipleOf")
    if step:
        first = math.floor(lo / step) + 1 if lo_excl else math.ceil(lo / step)
        last = math.ceil(hi / step) - 1 if hi_excl else math.floor(hi / step)
        if first > last:
            raise ValueError(f"no multiple of {step} in range in {dict(schema)!r}")
        k = first if rng is None else rng.randint(first, last)
        return k * step if isinstance(step, int) else round(k * step, 10)
    if rng is None:
        value = lo if not lo_excl else (lo + hi) / 2
    else:
        value = round(rng.uniform(lo, hi), 3)
        if (lo_excl and value <= lo) or (hi_excl and value >= hi) or not lo <= value <= hi:
            value = (lo + hi) / 2
    return float(value)


# ---------------------------------------------------------------- reply building


def _fmt_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


_ERROR_KINDS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Bad request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("permission_error", None, "Permission denied."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    408: ("timeout", None, "Request timed out."),
    409: ("invalid_request_error", None, "Conflict."),
    413: ("invalid_request_error", None, "Request too large."),
    422: ("invalid_request_error", None, "Unprocessable request."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request."),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", "service_unavailable", "The server is overloaded or not ready yet."),
    504: ("server_error", None, "Gateway timeout."),
}


def _error_envelope(status: int, message: str | None) -> dict[str, Any]:
    kind, code, default_message = _ERROR_KINDS.get(
        status,
        ("server_error" if status >= 500 else "invalid_request_error", None, f"HTTP {status}."),
    )
    return {
        "error": {"message": message or default_message, "type": kind, "param": None, "code": code}
    }


def _message_text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return " ".join(parts)
    return ""


def _word_count(text: str) -> int:
    return len(text.split())


_TOKEN_RE = re.compile(r"\s*\S+")
_FILLERS = ("the", "a", "and", "is", "of", "to", "it", "in", "that", "this")


def _fake_logprobs(content: str, top_k: int, rng: random.Random) -> list[dict[str, Any]]:
    """One entry per whitespace token (leading whitespace kept, so the tokens concatenate
    back to the content), chosen token most likely, ``top_k`` alternatives."""
    entries = []
    for token in _TOKEN_RE.findall(content) or [content]:
        p_top = rng.uniform(0.6, 0.99)
        lp = math.log(p_top)
        alternatives = [{"token": token, "logprob": lp, "bytes": list(token.encode())}]
        stripped = token.lstrip()
        lead = token[: len(token) - len(stripped)]
        remaining = 1.0 - p_top
        digit = next((j for j, ch in enumerate(token) if ch.isdigit()), None)
        fillers = [w for w in _FILLERS if w != stripped]
        for i in range(max(0, top_k - 1)):
            if digit is not None and i < 9:  # score-like token: the other digits
                alt = token[:digit] + str((int(token[digit]) + i + 1) % 10) + token[digit + 1 :]
            else:
                alt = lead + fillers[i % len(fillers)] + ("" if i < len(fillers) else str(i))
            remaining /= 2
            alternatives.append(
                {
                    "token": alt,
                    "logprob": math.log(max(remaining, 1e-12)),
                    "bytes": list(alt.encode()),
                }
            )
        entries.append(
            {
                "token": token,
                "logprob": lp,
                "bytes": list(token.encode()),
                "top_logprobs": alternatives[:top_k],
            }
        )
    return entries


# ------------------------------------------------------------------------- server


class _TransportRegistry:
    """Maps client (host, port) -> transport, so a handler can reset its own connection."""

    def __init__(self) -> None:
        self._by_client: dict[tuple[str, int], asyncio.Transport] = {}

    def add(self, client: Any, transport: asyncio.Transport) -> None:
        if client:
            self._by_client[tuple(client)] = transport  # type: ignore[index]

    def discard(self, client: Any, transport: asyncio.Transport) -> None:
        if client and self._by_client.get(tuple(client)) is transport:
            del self._by_client[tuple(client)]

    def get(self, client: Any) -> asyncio.Transport | None:
        return self._by_client.get(tuple(client)) if client else None


def _protocol_class(registry: _TransportRegistry) -> type[H11Protocol]:
    class _TrackedH11Protocol(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().connection_made(transport)
            registry.add(self.client, transport)

        def connection_lost(self, exc: Exception | None) -> None:
            registry.discard(self.client, self.transport)
            super().connection_lost(exc)

    return _TrackedH11Protocol


def _abort_with_rst(transport: asyncio.Transport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # linger 0 turns close() into a RST, not a FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _ResetResponse(Response):
    def __init__(
        self, registry: _TransportRegistry, prefix: bytes = b"", declared: int = 0
    ) -> None:
        super().__init__()
        self._registry = registry
        self._prefix = prefix
        self._declared = declared

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        transport = self._registry.get(scope.get("client"))
        if self._prefix:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(self._declared).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": self._prefix, "more_body": True})
        if transport is None:  # should not happen; fall back to an abrupt close
            raise ConnectionAbortedError("scripted connection reset")
        if self._prefix:
            transport.close()  # FIN after a partial body: "incomplete message body"
        else:
            _abort_with_rst(transport)
        # let connection_lost run so uvicorn marks the cycle disconnected (no 500, no log)
        for _ in range(50):
            if self._registry.get(scope.get("client")) is not transport:
                break
            await asyncio.sleep(0.001)


class ScriptedJudgeServer:
    """A scripted OpenAI-compatible server on 127.0.0.1 (context manager).

    Args:
        script: ``(ChatCall) -> Reply | str`` (may be async). None: the default
            behaviour (schema-valid JSON or ``default_text``).
        latency_s: delay added to every request.
        jitter_s: extra uniform random delay in ``[0, jitter_s]`` (seeded).
        fault_rate: probability that a chat request gets an injected fault instead of
            the script's reply (seeded per request index).
        seed: seeds faults, jitter, default answers and logprobs.
        fault_kinds: restrict the injected faults (subset of ``FAULT_KINDS``).
        fault_delay_s: how long a ``timeout`` fault sleeps before answering.
        retry_after_s: Retry-After value of injected 429s.
        model_name: the model listed by ``GET /v1/models``.
        api_key: when set, chat requests must carry ``Authorization: Bearer <api_key>``
            (else 401).
        default_text: the plain-text answer when no schema is requested.
        keep_calls: keep only the newest N calls in ``calls`` (None: all). Long load runs set
            it so the record cannot grow without bound; ``call_count`` and ``fault_counts``
            still count every call.
    """

    def __init__(
        self,
        script: Script | None = None,
        *,
        latency_s: float = 0.0,
        jitter_s: float = 0.0,
        fault_rate: float = 0.0,
        seed: int = 0,
        fault_kinds: Iterable[str] | None = None,
        fault_delay_s: float = 5.0,
        retry_after_s: float = 0.05,
        model_name: str = DEFAULT_MODEL,
        api_key: str | None = None,
        default_text: str = DEFAULT_TEXT,
        keep_calls: int | None = None,
    ) -> None:
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError("fault_rate must be within [0, 1]")
        kinds = tuple(fault_kinds) if fault_kinds is not None else FAULT_KINDS
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown or not kinds:
            raise ValueError(
                f"fault_kinds must be a non-empty subset of {FAULT_KINDS}, got {kinds}"
            )
        self._script = script
        self.latency_s = latency_s
        self.jitter_s = jitter_s
        self.fault_rate = fault_rate
        self.seed = seed
        self.fault_kinds = kinds
        self.fault_delay_s = fault_delay_s
        self.retry_after_s = retry_after_s
        self.model_name = model_name
        self.api_key = api_key
        self.default_text = default_text

        self.errors: list[BaseException] = []  # exceptions raised by scripts
        self._calls: collections.deque[ChatCall] = collections.deque(maxlen=keep_calls)
        self._count = 0
        self.fault_counts: collections.Counter[str] = collections.Counter()
        """Injected faults by kind, over every call (also those no longer in ``calls``)."""
        self._lock = threading.Lock()
        self._registry = _TransportRegistry()
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._sock: socket.socket | None = None
        self._startup_error: BaseException | None = None
        self.port: int = 0
        self.app = self._build_app()

    # -- public ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no ``/v1``)."""
        if not self.port:
            raise RuntimeError("server not started")
        return f"http://{HOST}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` — what OpenAI clients and litellm take as api_base."""
        return f"{self.url}/v1"

    @property
    def calls(self) -> list[ChatCall]:
        """A snapshot of the chat requests received (the newest ``keep_calls``), in arrival order."""
        with self._lock:
            return list(self._calls)

    @property
    def call_count(self) -> int:
        """Chat requests received since the last reset, recorded or not."""
        with self._lock:
            return self._count

    def set_script(self, script: Script | None) -> None:
        self._script = script

    def reset(self) -> None:
        """Forget recorded calls and restart the request index at 0."""
        with self._lock:
            self._calls.clear()
            self._count = 0
            self.fault_counts.clear()
        self.errors.clear()

    def start(self, timeout_s: float = 10.0) -> ScriptedJudgeServer:
        if self._thread is not None:
            raise RuntimeError("server already started")
        # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose
        # proto says TCP, and without it Nagle + delayed ACK add ~40 ms to every response.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, 0))
        sock.listen(128)
        sock.setblocking(False)
        self._sock = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            host=HOST,
            port=self.port,
            http=_protocol_class(self._registry),
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=2,
            timeout_keep_alive=5,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._run, name=f"scripted-judge-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if self._startup_error is not None or not self._thread.is_alive():
                self._thread.join(timeout=1)
                self._thread = None
                sock.close()
                raise RuntimeError("scripted judge server failed to start") from self._startup_error
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("scripted judge server did not start in time")
            time.sleep(0.005)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        thread, server, loop = self._thread, self._server, self._loop
        if thread is None or server is None:
            return
        if loop is not None and self._stop_event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop may close under our feet
                loop.call_soon_threadsafe(self._stop_event.set)  # wake sleeping replies
        server.should_exit = True
        thread.join(timeout=timeout_s)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=timeout_s)
        if self._sock is not None:
            self._sock.close()
        self._thread = None

    def __enter__(self) -> ScriptedJudgeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"port={self.port}" if self._thread else "stopped"
        return (
            f"<ScriptedJudgeServer {state} calls={len(self._calls)} fault_rate={self.fault_rate}>"
        )

    # -- thread ------------------------------------------------------------------------
    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop_event = asyncio.Event()
            assert self._server is not None and self._sock is not None
            await self._server.serve(sockets=[self._sock])

        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced by start(); a thread must not raise
            self._startup_error = exc

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        assert self._stop_event is not None
        with contextlib.suppress(TimeoutError):  # the normal case; stop() cuts it short
            await asyncio.wait_for(self._stop_event.wait(), timeout=seconds)

    # -- app ---------------------------------------------------------------------------
    def _build_app(self) -> FastAPI:
        app = FastAPI(title="scripted-openai", docs_url=None, redoc_url=None, openapi_url=None)

        @app.get("/health")
        async def health() -> dict[str, str]:
            return {"status": "ok"}

        async def models() -> dict[str, Any]:
            return {
                "object": "list",
                "data": [
                    {"id": self.model_name, "object": "model", "created": 0, "owned_by": "scripted"}
                ],
            }

        app.add_api_route("/v1/models", models, methods=["GET"])
        app.add_api_route("/models", models, methods=["GET"])
        app.add_api_route("/v1/chat/completions", self._chat, methods=["POST"])
        app.add_api_route("/chat/completions", self._chat, methods=["POST"])
        return app

    async def _chat(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in request.headers.items()}
        ok_body = isinstance(body, dict)
        data: dict[str, Any] = body if ok_body else {}  # type: ignore[assignment]
        messages = data.get("messages")
        with self._lock:
            call = ChatCall(
                index=self._count,
                model=str(data.get("model") or ""),
                messages=list(messages) if isinstance(messages, list) else [],
                body=data,
                headers=headers,
                received_at=time.monotonic(),
            )
            self._count += 1
            self._calls.append(call)

        if not ok_body:
            return self._error_response(Reply.error(400, "Request body is not a JSON object."))
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return self._error_response(Reply.error(401))
        if not isinstance(messages, list) or not messages:
            return self._error_response(Reply.error(400, "'messages' must be a non-empty list."))

        # Always the same three draws, so the fault sequence of a seed does not depend on
        # whether jitter is on, nor on thread scheduling (the RNG is keyed on the index).
        rng = random.Random(f"{self.seed}:{call.index}")
        fault_draw, fault_kind = rng.random(), rng.choice(self.fault_kinds)
        delay = self.latency_s + rng.random() * self.jitter_s
        if fault_draw < self.fault_rate:
            call.fault = fault_kind
            with self._lock:
                self.fault_counts[fault_kind] += 1
            reply = self._fault_reply(fault_kind)
        else:
            try:
                reply = await self._run_script(call)
            except Exception as exc:  # a broken script is a test bug: report it loudly
                self.errors.append(exc)
                return self._error_response(
                    Reply.error(500, f"script raised {type(exc).__name__}: {exc}")
                )
        await self._sleep(delay + reply.delay_s)
        return self._render(reply, call, rng)

    async def _run_script(self, call: ChatCall) -> Reply:
        script = self._script
        if script is None:
            return Reply.default()
        result = script(call)
        if inspect.isawaitable(result):
            result = await result
        return _coerce_reply(result)

    def _fault_reply(self, kind: str) -> Reply:
        if kind == "timeout":
            return Reply.slow(self.fault_delay_s)
        if kind == "rate_limit":
            return Reply.error(429, retry_after=self.retry_after_s)
        if kind == "server_error":
            return Reply.error(500)
        if kind == "unavailable":
            return Reply.error(503)
        if kind == "malformed":
            return Reply.malformed()
        if kind == "truncated":
            return Reply.truncated()
        if kind == "reset":
            return Reply.reset()
        raise AssertionError(kind)

    # -- rendering ---------------------------------------------------------------------
    def default_content(self, call: ChatCall) -> str:
        """What the default script answers for ``call`` (deterministic per seed+request)."""
        schema, wants_json = extract_schema(call.body)
        if schema is not None:
            digest = hashlib.sha256(
                json.dumps([call.messages, schema], sort_keys=True, default=str).encode()
            ).hexdigest()[:16]
            value = generate_from_schema(schema, rng=random.Random(f"{self.seed}:{digest}"))
            return json.dumps(value)
        if wants_json:
            return json.dumps({"result": self.default_text})
        return self.default_text

    def _error_response(self, reply: Reply) -> Response:
        headers = dict(reply.headers)
        if isinstance(reply.body, str):
            return Response(
                reply.body, status_code=reply.status, headers=headers, media_type="text/plain"
            )
        return JSONResponse(reply.body, status_code=reply.status, headers=headers)

    def _completion(
        self, call: ChatCall, content: str, reply: Reply, rng: random.Random
    ) -> dict[str, Any]:
        n = call.body.get("n")
        n = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
        want_logprobs = bool(call.body.get("logprobs"))
        top_k = call.body.get("top_logprobs") or 0
        logprobs = None
        if want_logprobs:
            logprobs = {
                "content": reply.logprobs
                if reply.logprobs is not None
                else _fake_logprobs(
                    content, int(top_k), random.Random(f"{self.seed}:lp:{call.index}")
                ),
                "refusal": None,
            }
        prompt_tokens = sum(
            _word_count(_message_text(m)) for m in call.messages if isinstance(m, Mapping)
        )
        completion_tokens = max(1, _word_count(content)) * n
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        if reply.usage is not None:
            usage.update(reply.usage)
        return {
            "id": f"chatcmpl-scripted-{call.index:06d}-{rng.getrandbits(32):08x}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": call.model or self.model_name,
            "system_fingerprint": "fp_scripted",
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": logprobs,
                    "finish_reason": reply.finish_reason,
                }
                for i in range(n)
            ],
            "usage": usage,
        }

    def _render(self, reply: Reply, call: ChatCall, rng: random.Random) -> Response:
        kind = reply.kind
        if kind == "error":
            return self._error_response(reply)
        if kind == "reset":
            return _ResetResponse(self._registry)
        if kind in ("default", "truncated", "malformed", "cut_off") and reply.content is None:
            content = self.default_content(call)
        else:
            content = reply.content or ""
        if kind == "truncated":
            content = content[: max(1, int(len(content) * reply.keep))] if content else content
        if kind == "malformed" and reply.body is not None:
            return Response(str(reply.body), media_type="application/json")
        completion = self._completion(call, content, reply, rng)
        if kind == "malformed":
            text = json.dumps(completion)
            return Response(text[: max(1, len(text) // 2)], media_type="application/json")
        if kind == "cut_off":
            data = json.dumps(completion).encode()
            keep = max(1, min(len(data) - 1, int(len(data) * reply.keep)))
            return _ResetResponse(self._registry, prefix=data[:keep], declared=len(data))
        if call.body.get("stream"):
            return self._stream(completion, call, reply)
        return JSONResponse(completion, headers=dict(reply.headers))

    def _stream(self, completion: dict[str, Any], call: ChatCall, reply: Reply) -> Response:
        include_usage = bool((call.body.get("stream_options") or {}).get("include_usage"))
        content = completion["choices"][0]["message"]["content"]
        base = {k: completion[k] for k in ("id", "created", "model", "system_fingerprint")}
        base["object"] = "chat.completion.chunk"

        def chunk(delta: dict[str, Any], finish: str | None) -> str:
            payload = {
                **base,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            return f"data: {json.dumps(payload)}\n\n"

        async def events() -> Any:
            yield chunk({"role": "assistant", "content": ""}, None)
            for piece in _TOKEN_RE.findall(content):
                yield chunk({"content": piece}, None)
            yield chunk({}, completion["choices"][0]["finish_reason"])
            if include_usage:
                usage_chunk = {**base, "choices": [], "usage": completion["usage"]}
                yield f"data: {json.dumps(usage_chunk)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(
            events(), media_type="text/event-stream", headers=dict(reply.headers)
        )
