"""`rubricgate rubric list|show|validate|new|contrast|diff`: manage and author the rubric library."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
import yaml
from rich.table import Table

from rubricgate.errors import RubricGateError
from rubricgate.interfaces.cli import authoring
from rubricgate.interfaces.cli.common import err_console, handle_errors, out_console, rubric_dirs_from
from rubricgate.library.rubric_files import iter_rubric_files, load_rubric_file, resolve_rubric

app = typer.Typer(help="List, show, validate, author (new, contrast) and compare (diff) rubrics.", no_args_is_help=True)
DirOption = Annotated[Optional[list[Path]], typer.Option(help="Extra folder of rubric files (repeatable).")]


@app.command("list")
def list_(rubric_dir: DirOption = None) -> None:
    """Rubrics in your folders and the shipped library, with versions."""
    with handle_errors():
        table = Table(title="rubrics")
        for column in ("id", "version", "criteria", "checks", "description"):
            table.add_column(column)
        for path in iter_rubric_files(rubric_dirs_from(rubric_dir)):
            try:
                rubric = load_rubric_file(path)
            except RubricGateError as exc:
                table.add_row(path.stem, "[red]invalid[/]", "", "", str(exc)[:80])
                continue
            checks = sum(1 for c in rubric.criteria if c.check is not None)
            table.add_row(rubric.id, rubric.version, str(len(rubric.criteria)), str(checks),
                          rubric.description)
        out_console.print(table)


@app.command()
def show(name: Annotated[str, typer.Argument(help="Rubric id or file path.")], rubric_dir: DirOption = None) -> None:
    """Print a rubric as YAML with its version."""
    with handle_errors():
        rubric = resolve_rubric(name, rubric_dirs_from(rubric_dir))
        out_console.print(f"# {rubric.ref}", highlight=False)
        data = rubric.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        out_console.print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), highlight=False, markup=False)


@app.command()
def validate(paths: Annotated[list[Path], typer.Argument(help="Rubric files to check.")]) -> None:
    """Check rubric files; exit 2 on the first invalid one, naming the field and what is expected."""
    with handle_errors():
        for path in paths:
            rubric = load_rubric_file(path)
            err_console.print(f"[green]ok[/] {path}: {rubric.ref} ({len(rubric.criteria)} criteria)", highlight=False)


# Authoring commands live in their own module; they belong to this sub-app.
app.command("new")(authoring.new)
app.command("contrast")(authoring.contrast)
app.command("diff")(authoring.diff)
