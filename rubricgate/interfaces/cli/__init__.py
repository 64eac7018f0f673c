"""The `rubricgate` command line (typer); defaults and `RUBRICGATE_*` variables come from `Settings`."""

from __future__ import annotations

from typing import Annotated

import typer

from rubricgate.interfaces.cli import cache, judge, judges, refine, rubric
from rubricgate.interfaces.cli.common import State, handle_errors
from rubricgate.interfaces.cli.evaluate import eval_pairs
from rubricgate.interfaces.cli.score import score
from rubricgate.interfaces.cli.serve import serve
from rubricgate.interfaces.settings import Settings

app = typer.Typer(
    name="rubricgate",
    help="Rubric- and principle-driven rewards for LLM post-training.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(score)
app.command()(serve)
app.command(name="eval")(eval_pairs)
app.command()(refine.refine)
app.add_typer(cache.app, name="cache")
rubric.app.command("history")(refine.history)  # version history lives with refinement
rubric.app.command("rollback")(refine.rollback)
app.add_typer(rubric.app, name="rubric")
app.add_typer(judges.app, name="judges")
app.add_typer(judge.app, name="judge")


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False) -> None:
    with handle_errors():
        State.debug = debug or Settings.load().debug


def main() -> None:
    """Console-script entry point."""
    app()
