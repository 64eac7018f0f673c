"""`rubricgate judges check SPEC`: can this judge produce a verdict, how fast, how good is it."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import typer

from rubricgate.interfaces.cli.common import (
    JudgeKeyOption, JudgeUrlOption, err_console, handle_errors, out_console,
)
from rubricgate.interfaces.gateway import Gateway
from rubricgate.interfaces.settings import NO_CACHE, Settings
from rubricgate.models.reward import Item

app = typer.Typer(help="Check judge backends.", no_args_is_help=True)

EMBEDDED_NOTE = ("The embedded judge (llamacpp:default) is Gemma 3 270M base on the CPU: a smoke-test judge. "
                 "It makes the whole path run offline with zero setup, but its scores carry little "
                 "information; train with a vLLM-served or remote judge.")


@app.command()
def check(spec: Annotated[str, typer.Argument(help="Judge spec kind:model.")],
          judge_base_url: JudgeUrlOption = None,
          judge_api_key_env: JudgeKeyOption = None) -> None:
    """Send two probe items (a good and a bad answer) through the judge, uncached."""
    with handle_errors():
        settings = Settings.load()
        config = settings.gateway_config(judge=spec, judge_base_url=judge_base_url,
                                         judge_api_key=settings.secret(judge_api_key_env), votes=1, cache=NO_CACHE)
        good = Item(id="good", prompt="What is the capital of France?", response="The capital of France is Paris.")
        bad = Item(id="bad", prompt="What is the capital of France?", response="I enjoy long walks on the beach.")

        async def probe() -> list[tuple[str, float | None, str | None, float]]:
            async with Gateway.open(config) as gateway:
                rows = []
                for item in (good, bad):
                    started = time.perf_counter()
                    [result] = await gateway.score([item], "factual-qa")
                    rows.append((item.id or "", result.reward, result.reason, time.perf_counter() - started))
                return rows

        rows = asyncio.run(probe())
        for name, reward, reason, seconds in rows:
            shown = f"{reward:.3f}" if reward is not None else f"null ({reason})"
            out_console.print(f"{name:>5} answer: reward {shown} in {seconds:.2f} s", highlight=False)
        if any(reward is None for _, reward, _, _ in rows):
            err_console.print(f"[red]{spec} could not score the probes[/]")
            raise typer.Exit(1)
        good_reward, bad_reward = rows[0][1], rows[1][1]
        verdict = "ranks them correctly" if (good_reward or 0) > (bad_reward or 0) else "does NOT rank them correctly"
        out_console.print(f"{spec} answers with valid verdicts and {verdict}.")
        if spec.startswith("llamacpp:default"):
            err_console.print(EMBEDDED_NOTE)
