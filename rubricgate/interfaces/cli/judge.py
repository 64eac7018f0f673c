"""`rubricgate judge serve MODEL`: a supervised local vLLM server for a judge model."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated, Optional

import typer

from rubricgate.interfaces.cli.common import err_console, handle_errors, out_console
from rubricgate.interfaces.judge_server import DEFAULT_PORT, JudgeServer, JudgeServerConfig, judge_specs

app = typer.Typer(help="Host judge models locally.", no_args_is_help=True)


@app.command()
def serve(
    model: Annotated[str, typer.Argument(help="Hugging Face id or local folder of the judge model.")],
    vllm_args: Annotated[Optional[list[str]], typer.Argument(
        help="Extra vLLM server arguments after `--`, e.g. `-- --dtype half --api-key KEY`.",
        show_default=False)] = None,
    port: Annotated[int, typer.Option(min=1, max=65535)] = DEFAULT_PORT,
    host: Annotated[str, typer.Option(help="Bind address; anything but loopback needs `-- --api-key KEY`.")] = "127.0.0.1",
    gpu_memory_utilization: Annotated[Optional[float], typer.Option(
        min=0.01, max=1.0, help="Share of GPU memory vLLM may use (default: vLLM's).")] = None,
    max_model_len: Annotated[Optional[int], typer.Option(
        min=256, help="Context length (default 8192, or the model's limit if lower).")] = None,
    restarts: Annotated[int, typer.Option(min=0, help="Restarts after crashes before giving up.")] = 5,
    health_timeout: Annotated[float, typer.Option(min=1.0, help="Seconds one start may take to become healthy.")] = 900.0,
    log_file: Annotated[Optional[Path], typer.Option(help="vLLM's output (default: the user log dir).")] = None,
) -> None:
    """Start vLLM's OpenAI-compatible server for MODEL, keep it up, and print the --judge spec for it.

    Judge-friendly defaults: prefix caching, xgrammar JSON outputs without free whitespace, a context sized for rubric prompts. Restarts on crash with exponential backoff; Ctrl-C stops the whole server process group.
    """
    with handle_errors():
        config = JudgeServerConfig(
            model=model, host=host, port=port, gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len, restarts=restarts, extra_args=tuple(vllm_args or ()),
            health_timeout_s=health_timeout, log_file=log_file)
        server = JudgeServer(config, console=err_console)
        server.check()
        stop = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            stop.set()

        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            server.supervise(stop, on_ready=_announce)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        err_console.print("judge server stopped", highlight=False)


def _announce(server: JudgeServer) -> None:
    if server.starts > 1:
        return
    specs = judge_specs(server.config)
    url = specs["base_url"]
    out_console.print(f"judge server ready: {url}", highlight=False)
    out_console.print(f"  fast path: --judge {specs['openai']} --judge-base-url {url}", highlight=False, soft_wrap=True)
    out_console.print(f"  litellm:   --judge {specs['litellm']} --judge-base-url {url}", highlight=False, soft_wrap=True)
    out_console.print("  (add +logprobs to the openai spec for expected scores; Ctrl-C stops the server)", highlight=False)
