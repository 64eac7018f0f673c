"""The HTTP reward server: `/v1/reward`, OpenRLHF's `/get_reward`, health, metrics, rubrics.

`create_app(gateway, settings)` builds the FastAPI app around an opened gateway; the lifespan
drains in-flight batches and closes the gateway on shutdown. Bodies and batches are bounded,
every error is JSON with a message, and a Bearer key is checked when one is configured.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, SecretStr
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
from rubricgate.models.reward import Item, RewardResult
from rubricgate.models.rubric import Rubric

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
    batch_window_s: float = Field(default=0.005, ge=0)
    refine: RefineSettings | None = None
    """Online refinement (`serve --refine-every N` / `--refine-on TRIGGER`); None: off."""


class ItemIn(BaseModel):
    """One item of `/v1/reward`."""

    model_config = ConfigDict(extra="forbid")

    id: str | int | None = None
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
    items: list[ItemIn] = Field(min_length=1)
    votes: int | None = Field(default=None, ge=1)
    reward: dict[str, Any] | None = None
    """Overrides fields of the rubric's `reward:` spec for this request (e.g. a length penalty)."""


class RewardResponse(BaseModel):
    results: list[RewardResult]


def create_app(gateway: Gateway, settings: ServerSettings | None = None, owns_gateway: bool = True) -> FastAPI:
    """The reward server around an opened gateway (closed on shutdown when `owns_gateway`)."""
    settings = settings or ServerSettings()
    metrics = ServerMetrics(cache_counters=lambda: gateway.counters)
    batcher = Batcher(gateway, max_items=settings.max_items, window_s=settings.batch_window_s)
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

    app = FastAPI(title="rubricgate", version="0.1.0", lifespan=lifespan,
                  description="Rubric-driven rewards for LLM post-training.")
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

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

    def rubric_for(spec: str | dict[str, Any] | None) -> Rubric:
        """A request's rubric: inline, or an id in the rubric folders (never a path), or the default."""
        if isinstance(spec, dict):
            return admitted(parse_rubric(spec, "request.rubric"))
        if spec:
            return admitted(gateway.rubric(spec, allow_paths=False))
        if not settings.default_rubric:
            raise UsageError("no rubric: name one in the request or start the server with --rubric")
        return admitted(gateway.rubric(settings.default_rubric, allow_paths=True))  # the operator's own choice

    @app.middleware("http")
    async def count_requests(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        path = request.url.path if request.url.path in _ROUTES else "other"  # bounded label values
        if path == "other" and request.url.path.startswith("/v1/rubrics/") and request.url.path.endswith("/versions"):
            path = "/v1/rubrics/{id}/versions"
        metrics.latency.labels(path).observe(time.perf_counter() - started)
        metrics.requests.labels(path, str(response.status_code)).inc()
        return response

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
        return JSONResponse({"error": code, "message": message}, status_code=_ERROR_STATUS[code])

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}"
                             for e in exc.errors()[:5])
        return JSONResponse({"error": "invalid_request", "message": problems}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": "http_error", "message": str(exc.detail)}, status_code=exc.status_code,
                            headers={"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None)

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

    @app.get("/metrics", dependencies=[Depends(require_key)])
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/rubrics", dependencies=[Depends(require_key)])
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

    @app.get("/v1/rubrics/{rubric_id}/versions", dependencies=[Depends(require_key)])
    async def rubric_versions(rubric_id: str) -> dict[str, Any]:
        """A rubric's version history with reasons (refinements, rejections, rollbacks), the
        version this server serves, and what online refinement is doing."""
        history = await version_history(gateway, rubric_id, refiner)
        if history is None:
            raise StarletteHTTPException(404, f"unknown rubric {rubric_id!r}: not in the library nor in the history")
        return history

    @app.post("/v1/reward", dependencies=[Depends(require_key)], response_model=RewardResponse)
    async def reward(body: RewardRequest) -> RewardResponse:
        """Rewards for a batch, in request order; an unscorable item has `reward: null` and a reason."""
        if len(body.items) > settings.max_items:
            raise _too_many(len(body.items), settings.max_items)
        if body.votes is not None and body.votes > settings.max_votes:
            raise UsageError(f"votes={body.votes} is over this server's limit of {settings.max_votes}")
        rubric = rubric_for(body.rubric)
        if body.reward:
            rubric = admitted(with_reward_override(rubric, body.reward))
        results = await scored(rubric, [i.to_item() for i in body.items], body.votes)
        metrics.observe(results)
        return RewardResponse(results=results)

    @app.post("/get_reward", dependencies=[Depends(require_key)], response_model=OpenRLHFResponse)
    async def get_reward(body: OpenRLHFRequest) -> OpenRLHFResponse:
        """OpenRLHF's remote reward model contract; outputs are aligned with `query`."""
        n = len(body.query)
        if n > settings.max_items:
            raise _too_many(n, settings.max_items)
        prompts = body.prompts or [""] * n
        labels = body.labels or [None] * n
        if len(prompts) != n or len(labels) != n:
            raise UsageError(f"query, prompts and labels must have the same length ({n}, {len(prompts)}, {len(labels)})")
        known = {p.stem for p in iter_rubric_files(gateway.config.rubric_dirs)}
        results: list[RewardResult | None] = [None] * n
        for group in group_queries(body.query, prompts, labels, known, rubric_for):
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
