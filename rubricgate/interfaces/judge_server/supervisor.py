"""Supervise one vLLM server process group: start, wait for health, restart on crash, stop.

The server runs in its own process group (vLLM starts an engine core and workers under it), so
stopping it signals the whole group and a crash leaves no orphans holding memory or the port.
The supervisor waits for `GET /health`, restarts the server with exponential backoff when it
dies, and stops it cleanly on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from typing import IO

from rich.console import Console

from rubricgate.errors import JudgeUnavailable, UsageError
from rubricgate.interfaces.judge_server import health
from rubricgate.interfaces.judge_server.command import redacted, server_module, vllm_command
from rubricgate.interfaces.judge_server.config import JudgeServerConfig, default_log_file, has_flag
from rubricgate.interfaces.judge_server.endpoint import base_url, health_url, is_loopback


def _wait_group_gone(pgid: int, timeout_s: float = 10.0) -> bool:
    """Wait until no process of the group is left (SIGKILLed members take a moment to be reaped)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


class JudgeServer:
    """One supervised vLLM server process group.

    `supervise(stop)` is the whole life cycle (start, wait for health, restart on crash, stop);
    `start`, `wait_healthy` and `stop` are the steps, for tests and embedding.

    Args:
        config: What to run.
        console: Where to show progress (a spinner while loading) and events; None is silent.
        env: Environment of the server (default: this process's).
    """

    def __init__(self, config: JudgeServerConfig, console: Console | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.config = config
        self.console = console
        self.env = env
        self.log_file = config.log_file or default_log_file(config.port)
        self.command = vllm_command(config)
        self.restarts_used = 0
        """Restarts after crashes so far."""
        self.starts = 0
        """Servers started so far (the first plus restarts)."""
        self.last_start_s: float | None = None
        """Seconds the last start took from spawn to a healthy /health."""
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_offset = 0

    @property
    def pid(self) -> int | None:
        """The server's pid (also its process group id) while one runs."""
        return self._process.pid if self._process is not None else None

    @property
    def health_url(self) -> str:
        return health_url(self.config)

    def check(self) -> None:
        """Refuse setups that cannot work or are unsafe, before spawning anything."""
        server_module()
        if not is_loopback(self.config.host) and not has_flag(self.config.extra_args, "--api-key") \
                and not os.environ.get("VLLM_API_KEY"):
            raise UsageError(f"refusing to bind {self.config.host} without an API key: pass `-- --api-key KEY` "
                             "(or set VLLM_API_KEY) and give the judge the key, or bind 127.0.0.1")
        with socket.socket(socket.AF_INET6 if ":" in self.config.host else socket.AF_INET) as probe:
            try:
                probe.bind((self.config.host, self.config.port))
            except OSError as exc:
                raise UsageError(f"cannot bind {self.config.host}:{self.config.port} ({exc.strerror}); "
                                 "pick another --port or stop what uses it") from None

    def start(self) -> int:
        """Spawn the server in a new process group; returns its pid."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        if self._log is None:
            self._log = self.log_file.open("ab")
        self._log.write(f"\n==== rubricgate: {' '.join(redacted(self.command))}\n".encode())
        self._log.flush()
        self._log_offset = self._log.tell()
        self._process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=self._log,
                                         stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        self.starts += 1
        self._say(f"started vLLM server pid {self._process.pid} for {self.config.model}; log: {self.log_file}")
        return self._process.pid

    def healthy(self) -> bool:
        """True when `GET /health` answers 200 now."""
        return health.is_healthy(self.health_url)

    def wait_healthy(self, stop: threading.Event | None = None, timeout_s: float | None = None) -> bool:
        """Poll /health until it answers; False if `stop` was set first.

        Raises JudgeUnavailable when the server exits first or stays unhealthy past the timeout.
        """
        process = self._require_process()
        timeout = timeout_s if timeout_s is not None else self.config.health_timeout_s
        started = time.monotonic()
        status = self.console.status(self._waiting(0.0)) if self.console else None
        if status is not None:
            status.start()
        try:
            while True:
                if stop is not None and stop.is_set():
                    return False
                if self.healthy():
                    self.last_start_s = time.monotonic() - started
                    return True
                code = process.poll()
                if code is not None:
                    raise JudgeUnavailable(f"vLLM server exited with code {code} before it was healthy: "
                                           f"{self.first_error()} (log: {self.log_file})")
                elapsed = time.monotonic() - started
                if elapsed > timeout:
                    raise JudgeUnavailable(f"vLLM server not healthy after {timeout:g} s (raise --health-timeout?); "
                                           f"last lines of {self.log_file}:\n{self.log_tail()}")
                if status is not None:
                    status.update(self._waiting(elapsed))
                (stop or threading.Event()).wait(0.5)
        finally:
            if status is not None:
                status.stop()

    def stop(self) -> int | None:
        """SIGTERM the process group, SIGKILL it after the grace period; returns the exit code."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            self._signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(self.config.stop_grace_s)
            except subprocess.TimeoutExpired:
                self._signal_group(process.pid, signal.SIGKILL)
                process.wait()
        self._signal_group(process.pid, signal.SIGKILL)  # stragglers (engine core, workers)
        _wait_group_gone(process.pid)
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        return process.returncode

    def supervise(self, stop: threading.Event,
                  on_ready: Callable[[JudgeServer], None] | None = None) -> None:
        """Run until `stop` is set: start, wait for health, restart on crash with backoff.

        Raises JudgeUnavailable once the server has crashed more than `restarts` times.
        """
        delay = self.config.backoff_initial_s
        try:
            while not stop.is_set():
                self.start()
                healthy_since: float | None = None
                try:
                    if not self.wait_healthy(stop):
                        break
                    healthy_since = time.monotonic()
                    self._say(f"vLLM server healthy in {self.last_start_s or 0:.1f} s at {base_url(self.config)}")
                    if on_ready is not None:
                        on_ready(self)
                    code = self._wait_exit(stop)
                    if code is None:
                        break
                    reason = f"vLLM server exited with code {code}"
                except JudgeUnavailable as exc:
                    reason = str(exc)
                if stop.is_set():
                    break
                self._kill_stragglers()
                if self.restarts_used >= self.config.restarts:
                    raise JudgeUnavailable(f"{reason}; gave up after {self.restarts_used} restarts "
                                           f"(raise --restarts or see {self.log_file})")
                if healthy_since is not None and time.monotonic() - healthy_since > self.config.stable_after_s:
                    delay = self.config.backoff_initial_s
                self.restarts_used += 1
                self._say(f"{reason}; restart {self.restarts_used}/{self.config.restarts} in {delay:g} s")
                if stop.wait(delay):
                    break
                delay = min(max(delay * 2, 0.1), self.config.backoff_max_s)
        finally:
            self.stop()

    def first_error(self) -> str:
        """The first `...Error: message` vLLM logged since the last start: usually the root cause."""
        return health.first_error(self.log_file, self._log_offset)

    def log_tail(self, lines: int = 15) -> str:
        return health.log_tail(self.log_file, lines)

    def _wait_exit(self, stop: threading.Event) -> int | None:
        """The server's exit code when it dies, or None once `stop` is set."""
        process = self._require_process()
        while not stop.wait(0.5):
            code = process.poll()
            if code is not None:
                return code
        return None

    def _kill_stragglers(self) -> None:
        """After a crash, children of the dead server (engine core, workers) may live on."""
        if self._process is not None:
            self._signal_group(self._process.pid, signal.SIGKILL)
            self._process.wait()
            _wait_group_gone(self._process.pid)
            self._process = None

    def _require_process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise UsageError("the judge server is not started")
        return self._process

    def _signal_group(self, pgid: int, sig: signal.Signals) -> None:
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass  # the whole group is already gone

    def _waiting(self, elapsed: float) -> str:
        return f"loading {self.config.model} in vLLM ({elapsed:.0f} s; waiting for {self.health_url})"

    def _say(self, message: str) -> None:
        if self.console is not None:
            self.console.print(message, highlight=False, soft_wrap=True)
