"""One background event loop per process that owns every in-process gateway.

Trainers call reward functions from their own threads and loops (TRL awaits async functions
on its loop, older TRL and verl call sync functions). Gateways hold loop-bound state (locks,
semaphores, HTTP pools), so they live on one daemon loop thread and every caller hands its
coroutine to that loop: sync callers block on the result, async callers await a wrapped future.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

from rubricgate.errors import UsageError
from rubricgate.interfaces.gateway import Gateway, GatewayConfig

T = TypeVar("T")


class Closable(Protocol):
    async def aclose(self) -> None: ...


class LoopThread:
    """One event loop on a daemon thread, shared by every sync and async caller."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="rubricgate-loop", daemon=True).start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Schedule `coro` on the loop thread from any thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` to completion from synchronous code; refuses inside a running loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self.submit(coro).result()
        coro.close()
        raise UsageError("sync API called inside an event loop; await the async API instead")

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` from any other event loop."""
        return await asyncio.wrap_future(self.submit(coro))


_lock = threading.Lock()
_loop: LoopThread | None = None
_gateways: dict[str, Gateway] = {}
_closables: list[Closable] = []


def _forget_after_fork() -> None:
    """A forked child inherits the loop object but not its thread: start afresh there."""
    global _lock, _loop
    _lock = threading.Lock()
    _loop = None
    _gateways.clear()
    _closables.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


def close_at_exit(resource: Closable) -> None:
    """Close `resource` on the loop thread when the process exits (for objects cached per process)."""
    _closables.append(resource)


def _close_everything() -> None:
    """At exit, close the shared gateways and registered clients so their pools shut down cleanly
    (open judge connections and cache engines would otherwise be torn down mid-interpreter-exit)."""
    if _loop is None:
        return

    async def close() -> None:
        for resource in [*_gateways.values(), *_closables]:
            with contextlib.suppress(Exception):
                await resource.aclose()
        _gateways.clear()
        _closables.clear()

    with contextlib.suppress(Exception):
        _loop.submit(close()).result(timeout=10)


atexit.register(_close_everything)


def loop_thread() -> LoopThread:
    """The process's shared loop thread, started on first use."""
    global _loop
    with _lock:
        if _loop is None:
            _loop = LoopThread()
        return _loop


def with_gateway(config: GatewayConfig, use: Callable[[Gateway], Awaitable[T]]) -> Coroutine[Any, Any, T]:
    """A coroutine (to run on the loop thread) that applies `use` to the shared gateway for `config`."""

    async def run() -> T:
        secret = config.backend.api_key.get_secret_value() if config.backend.api_key else ""
        # model_dump_json masks secrets, so two keys would share a gateway without the digest
        key = config.model_dump_json() + hashlib.sha256(secret.encode()).hexdigest()
        gateway = _gateways.get(key)
        if gateway is None:
            gateway = _gateways[key] = Gateway.open(config)
        return await use(gateway)

    return run()
