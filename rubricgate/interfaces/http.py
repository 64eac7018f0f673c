"""The HTTP reward server: `/v1/reward`, OpenRLHF's `/get_reward`, health, metrics, rubrics.

`create_app(gateway, settings)` builds the FastAPI app around an opened gateway; the lifespan
drains in-flight batches and closes the gateway on shutdown. Bodies and batches are bounded,
every error is JSON with a message, and a Bearer key is checked when one is configured (on
everything but /healthz, the OpenAPI schema and its doc pages included). `run_server` runs it
under uvicorn with the drain timeout: on SIGTERM admitted requests are answered, unfinished items
`reward: null` with reason `shutdown` once the drain timeout passes, never a 500.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from types import FrameType
from typing import Annotated, Any, Literal

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from rubricgate.errors import ErrorCode, RubricGateError, UsageError, error_code, error_message
from rubricgate.interfaces.batcher import Batcher
from rubricgate.interfaces.body_limit import BodyLimit
from rubricgate.interfaces.gateway import Gateway
from rubricgate.interfaces.metrics import ServerMetrics
from rubricgate.interfaces.openrlhf import OpenRLHFRequest, OpenRLHFResponse, group_queries, openrlhf_response
from rubricgate.interfaces.online_refinement import Refiner, RefineSettings, version_history
from rubricgate.library.rubric_files import iter_rubric_files, load_rubric_file, parse_rubric
from rubricgate.models.judging import ChatMessage
from rubricgate.models.reward import Item, RewardResult, clean_text
from rubricgate.models.rubric import Rubric, RubricLimits

_ROUTES = {"/healthz", "/metrics", "/v1/rubrics", "/v1/reward", "/get_reward", "/v1/rubrics/{id}/versions"}
_ERROR_STATUS: dict[ErrorCode, int] = {"usage_error": 400, "judge_unavailable": 503, "cache_error": 503,
                                       "internal_error": 500}
_logger = logging.getLogger(__name__)


class ServerSettings(BaseModel):
    """What the server enforces; `serve` fills it from flags and `Settings`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: SecretStr | None = None
    """Bearer token every request except /healthz must carry; None turns auth off."""
    default_rubric: str | None = None
    """Rubric for requests that name none (and for empty OpenRLHF labels)."""
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    max_items: int = Field(default=1024, ge=1)
    """Most items (or OpenRLHF queries) in one request."""
    max_votes: int = Field(default=64, ge=1)
    """Most votes a request may ask for (RUBRICGATE_MAX_VOTES, the same cap as everywhere)."""
    unscorable_reward: Literal["batch_mean"] | float = "batch_mean"
    """What `/get_reward` returns for an unscorable sample: OpenRLHF turns every reward into a
    tensor (a null crashes it, a NaN would poison the advantages), so it gets a number: the mean
    of the request's scored samples (neutral for advantages) or a fixed value, always flagged in
    `extra_logs["unscorable"]`."""
    rubric_limits: RubricLimits = Field(default_factory=RubricLimits)
    """Bounds of a rubric sent with a request (inline, or a reward override): 413 above them."""
    batch_window_s: float = Field(default=0.005, ge=0)
    drain_timeout_s: float = Field(default=30.0, ge=0)
    """On shutdown, how long admitted requests may still run; then unfinished items get
    `reward: null` with reason `shutdown`."""
    refine: RefineSettings | None = None
    """Online refinement (`serve --refine-every N` / `--refine-on TRIGGER`); None: off."""


def _no_coercion(value: Any) -> Any:
    """JSON integers only: pydantic would read `"3"` and `true` as 3 and 1. (`3.0` is an integer
    in JSON Schema, so it stays accepted; `3.5` is refused by the int check.)"""
    if isinstance(value, bool | str | bytes):
        raise ValueError("must be a JSON integer, not a string or boolean")
    return value


JsonInt = Annotated[int, BeforeValidator(_no_coercion)]
"""An integer field that refuses strings and booleans."""


class ItemIn(BaseModel):
    """One item of `/v1/reward`."""

    model_config = ConfigDict(extra="forbid")

    id: str | JsonInt | None = None
    prompt: str | list[ChatMessage] = Field(max_length=1_000_000)
    response: str | list[ChatMessage] = Field(max_length=1_000_000)
    reference: str | None = None

    def to_item(self) -> Item:
        prompt = self.prompt if isinstance(self.prompt, str) else tuple(self.prompt)
        response = self.response if isinstance(self.response, str) else tuple(self.response)
        return Item(id=None if self.id is None else str(self.id), prompt=prompt, response=response,
                    reference=self.reference)


class RewardRequest(BaseModel):
    """`POST /v1/reward`: a rubric (name or inline document), items, optional vote count."""

    model_config = ConfigDict(extra="forbid")

    rubric: str | dict[str, Any] | None = None
    """A rubric id (`helpfulness`), the reference results carry (`helpfulness@<version>`: it must
    name the live version), or an inline rubric document."""
    items: list[ItemIn] = Field(min_length=1)
    votes: Annotated[int, Field(ge=1), BeforeValidator(_no_coercion)] | None = None
    """Votes per item; a JSON integer (`"3"` and `true` are refused)."""
    reward: dict[str, Any] | None = None
    """Overrides fields of the rubric's `reward:` spec for this request (e.g. a length penalty)."""

    @model_validator(mode="before")
    @classmethod
    def _clean(cls, data: Any) -> Any:
        """Lone surrogates anywhere in the body (items, inline rubric) become U+FFFD."""
        return clean_text(data)


class RewardResponse(BaseModel):
    results: list[RewardResult]


class ErrorBody(BaseModel):
    """Every error response: a stable code and a one-line message."""

    error: str
    """usage_error, judge_unavailable, cache_error, internal_error, invalid_request,
    payload_too_large or http_error."""
    message: str


_DESCRIPTIONS = {400: "Usage error (unknown rubric, stale rubric version, votes over the limit)",
                 401: "Missing or wrong API key", 404: "Not found",
                 413: "Body or batch over the server's limit", 422: "Invalid request body",
                 500: "Internal error (details in the server log)", 503: "No judge reachable, or the cache failed"}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for the error statuses a route can return (all share `ErrorBody`)."""
    return {status: {"model": ErrorBody, "description": _DESCRIPTIONS[status]} for status in (401, 500, *statuses)}


_SCORING_ERRORS = _errors(400, 413, 422, 503)


def create_app(gateway: Gateway, settings: ServerSettings | None = None, owns_gateway: bool = True) -> FastAPI:
    """The reward server around an opened gateway (closed on shutdown when `owns_gateway`)."""
    settings = settings or ServerSettings()
    metrics = ServerMetrics(cache_errors=lambda: gateway.counters.errors)
    batcher = Batcher(gateway, max_items=settings.max_items, window_s=settings.batch_window_s,
                      drain_timeout_s=settings.drain_timeout_s)
    refiner = Refiner(gateway, settings.refine) if settings.refine is not None else None

    async def scored(rubric: Rubric, items: list[Item], votes: int | None = None) -> list[RewardResult]:
        results = await batcher.score(rubric, items, votes)
        if refiner is not None:
            refiner.observe(rubric, items, results)  # bookkeeping only; a refinement runs as its own task
        return results

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if refiner is not None:
            await refiner.aclose()
        await batcher.drain()  # uvicorn has stopped accepting; finish what was admitted
        if owns_gateway:
            await gateway.aclose()

    # The schema and doc pages are our own routes, so the API key guards them like the rest.
    app = FastAPI(title="rubricgate", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None, description="Rubric-driven rewards for LLM post-training.")
    app.state.begin_drain = batcher.begin_drain
    """Called by `run_server` on SIGTERM: starts the drain clock."""
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes,
                       on_reject=lambda: metrics.errors.labels("payload_too_large").inc())

    def require_key(request: Request) -> None:
        if settings.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        expected = settings.api_key.get_secret_value()
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), expected.encode()):
            raise StarletteHTTPException(401, "missing or wrong API key: send 'Authorization: Bearer <key>'")

    # A request never picks its judge (DESIGN 11): the server's allow-list, else its own judges.
    judges_allowed = gateway.allowed_judges or gateway.own_judges

    def admitted(rubric: Rubric) -> Rubric:
        gateway.check_judges(rubric, judges_allowed)
        return rubric

    def rubric_for(spec: str | dict[str, Any] | None, override: dict[str, Any] | None = None) -> Rubric:
        """A request's rubric, with its `reward` override applied: inline, an id in the rubric
        folders (never a path), or the server's default. `id@version`, the reference results
        carry, resolves when it names the live version, else it is a usage error naming the live one."""
        if isinstance(spec, dict):
            rubric = parse_rubric(spec, "request.rubric")
            return admitted(with_reward_override(rubric, override) if override else rubric)
        if spec:
            name, at, version = spec.partition("@")
            live = gateway.rubric(name, allow_paths=False)
        elif settings.default_rubric:
            name, at, version = settings.default_rubric, "", ""
            live = gateway.rubric(name, allow_paths=True)  # the operator's own choice
        else:
            raise UsageError("no rubric: name one in the request or start the server with --rubric")
        rubric = with_reward_override(live, override) if override else live
        if at and version not in (live.version, rubric.version):
            raise UsageError(f"rubric {spec!r}: version {version!r} is not served; the live version is "
                             f"{live.ref} (send {live.id!r} for whatever version is live)")
        return admitted(rubric)

    def error_response(code: str, message: str, status: int, headers: Mapping[str, str] | None = None) -> JSONResponse:
        metrics.errors.labels(code).inc()
        return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)

    @app.middleware("http")
    async def count_requests(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        path = request.url.path if request.url.path in _ROUTES else "other"  # bounded label values
        if path == "other" and request.url.path.startswith("/v1/rubrics/") and request.url.path.endswith("/versions"):
            path = "/v1/rubrics/{id}/versions"
        status = 500  # an unexpected error passes this middleware as an exception (answered 500 outside it)
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            metrics.latency.labels(path).observe(time.perf_counter() - started)
            metrics.requests.labels(path, str(status)).inc()
            metrics.responses.labels(f"{status // 100}xx").inc()

    @app.exception_handler(RubricGateError)
    @app.exception_handler(ExceptionGroup)
    @app.exception_handler(Exception)
    async def mapped_error(_: Request, exc: Exception) -> JSONResponse:
        """Every error, a TaskGroup's ExceptionGroup included, as JSON with a stable `error` code:
        400 usage_error, 503 judge_unavailable or cache_error, 500 internal_error."""
        code = error_code(exc)
        if code == "internal_error":
            _logger.error("internal error answering a request", exc_info=exc)
            message = f"internal error ({type(exc).__name__}); the server log has the details"
        else:
            message = error_message(exc)
        return error_response(code, message, _ERROR_STATUS[code])

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}"
                             for e in exc.errors()[:5])
        return error_response("invalid_request", problems, 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})  # e.g. `Allow` on a 405
        if exc.status_code == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return error_response("http_error", str(exc.detail), exc.status_code, headers or None)

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(require_key)])
    async def openapi_schema() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(require_key)])
    async def swagger_docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="rubricgate")

    @app.get("/redoc", include_in_schema=False, dependencies=[Depends(require_key)])
    async def redoc_docs() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title="rubricgate")

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness and what the server scores with (no auth, no secrets). `judge_circuit` says
        whether the judge is being called (`closed`), skipped after repeated failures (`open`) or
        probed (`half_open`); the server stays live either way (unscorable items get null + reason,
        or the fallback judge answers)."""
        return {"status": "ok", "judge": gateway.backend.name, "rubric": settings.default_rubric,
                "votes": gateway.config.scoring.votes,
                "judge_circuit": gateway.breaker.state if gateway.breaker is not None else "disabled",
                "fallback_judge": gateway.config.fallback_judge}

    @app.get("/metrics", dependencies=[Depends(require_key)], response_class=PlainTextResponse,
             responses=_errors())
    async def prometheus() -> Response:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/rubrics", dependencies=[Depends(require_key)], responses=_errors())
    async def rubrics() -> dict[str, Any]:
        """The library: each rubric file's version and the version served for it (they differ
        after a refinement or rollback; the history is at /v1/rubrics/{id}/versions)."""
        listed = []
        for path in iter_rubric_files(gateway.config.rubric_dirs):
            try:
                rubric = load_rubric_file(path)
                served = gateway.rubric(rubric.id)
            except UsageError:
                continue
            listed.append({"id": rubric.id, "version": rubric.version, "served_version": served.version,
                           "description": served.description, "criteria": [c.id for c in served.criteria]})
        return {"default": settings.default_rubric, "rubrics": listed}

    @app.get("/v1/rubrics/{rubric_id}/versions", dependencies=[Depends(require_key)], responses=_errors(404, 422))
    async def rubric_versions(rubric_id: str) -> dict[str, Any]:
        """A rubric's version history with reasons (refinements, rejections, rollbacks), the
        version this server serves, and what online refinement is doing."""
        history = await version_history(gateway, rubric_id, refiner)
        if history is None:
            raise StarletteHTTPException(404, f"unknown rubric {rubric_id!r}: not in the library nor in the history")
        return history

    @app.post("/v1/reward", dependencies=[Depends(require_key)], response_model=RewardResponse,
              responses=_SCORING_ERRORS)
    async def reward(body: RewardRequest) -> RewardResponse:
        """Rewards for a batch, in request order; an unscorable item has `reward: null` and a reason."""
        if len(body.items) > settings.max_items:
            raise _too_many(len(body.items), settings.max_items)
        if body.votes is not None and body.votes > settings.max_votes:
            raise UsageError(f"votes={body.votes} is over this server's limit of {settings.max_votes}")
        for part, data in (("rubric", body.rubric), ("reward", body.reward)):
            if isinstance(data, dict) and (exceeded := settings.rubric_limits.exceeded(data)) is not None:
                raise StarletteHTTPException(413, f"request.{part}: {exceeded.found}; this server takes at most "
                                                  f"{exceeded.value} ({exceeded.limit}: the operator raises it with "
                                                  f"RUBRICGATE_{exceeded.limit.upper()})")
        if isinstance(body.rubric, dict) or body.reward:  # validating is CPU work: in a thread, so the loop stays free
            rubric = await asyncio.to_thread(rubric_for, body.rubric, body.reward)
        else:
            rubric = rubric_for(body.rubric)  # by name: read once, then cached
        results = await scored(rubric, [i.to_item() for i in body.items], body.votes)
        metrics.observe(results)
        return RewardResponse(results=results)

    @app.post("/get_reward", dependencies=[Depends(require_key)], response_model=OpenRLHFResponse,
              responses=_SCORING_ERRORS)
    async def get_reward(body: OpenRLHFRequest) -> OpenRLHFResponse:
        """OpenRLHF's remote reward model contract; outputs are aligned with `query`."""
        n = len(body.query)
        if n > settings.max_items:
            raise _too_many(n, settings.max_items)
        prompts = clean_text(body.prompts) or [""] * n
        labels = clean_text(body.labels) or [None] * n
        if len(prompts) != n or len(labels) != n:
            raise UsageError(f"query, prompts and labels must have the same length ({n}, {len(prompts)}, {len(labels)})")
        known = {p.stem for p in iter_rubric_files(gateway.config.rubric_dirs)}
        results: list[RewardResult | None] = [None] * n
        for group in group_queries(clean_text(body.query), prompts, labels, known, rubric_for):
            for index, result in zip(group.indices, await scored(group.rubric, group.items), strict=True):
                results[index] = result
        done = [r for r in results if r is not None]
        metrics.observe(done)
        return openrlhf_response(done, settings.unscorable_reward)

    return app


def with_reward_override(rubric: Rubric, override: dict[str, Any]) -> Rubric:
    """The rubric with `override` merged into its reward spec (validated like a rubric file)."""
    data = rubric.model_dump(mode="json", by_alias=True)
    data["reward"] = {**(data.get("reward") or {}), **override}
    return parse_rubric(data, "request.reward")


def _too_many(count: int, limit: int) -> StarletteHTTPException:
    return StarletteHTTPException(413, f"{count} items in one request; this server takes at most {limit}: split the batch")


class _DrainingServer(uvicorn.Server):
    """uvicorn, telling the app when a shutdown signal arrives, so the drain clock starts then
    (uvicorn's own graceful timeout only starts after it has stopped accepting)."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_exit)


def run_server(app: FastAPI, host: str, port: int, drain_timeout_s: float) -> None:
    """Serve `app` (from `create_app`) until SIGINT/SIGTERM, then drain for up to `drain_timeout_s`.

    uvicorn's graceful timeout is set past the drain timeout, so uvicorn never cancels a request
    (a 500): the app answers every admitted request by then, unfinished items with `shutdown`.
    """
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", server_header=False,
                            timeout_graceful_shutdown=math.ceil(drain_timeout_s + _ANSWER_MARGIN_S))
    _DrainingServer(config, on_exit=app.state.begin_drain).run()


_ANSWER_MARGIN_S = 5.0
"""Time past the drain timeout for the `shutdown` answers to be written before uvicorn cancels."""
