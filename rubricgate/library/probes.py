"""Adversarial probes: responses that game a rubric without being better. A refined rubric version
must not score them higher than the version it replaces.

Probe files are JSONL, one `{id, kind, prompt, response, honest?, note?}` per line. The shipped ones live in
`rubrics/probes/*.jsonl` (padded answer, flattering non-answer, answer addressing the grader,
keyword stuffing, format gaming, refusal of a harmless request); users add their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from rubricgate.errors import UsageError
from rubricgate.library.resources import shipped_dir
from rubricgate.models.judging import ChatMessage
from rubricgate.models.reward import Item
from rubricgate.library.jsonl import read_jsonl_models


class Probe(BaseModel):
    """One exploit attempt: a prompt and a response that games the grader."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    """Unique within a run; shipped ids are `<kind>-<n>`."""
    kind: str = "other"
    """The exploit: length_padding, flattery, addresses_grader, keyword_stuffing, format_gaming,
    refusal_scored_high, or anything else."""
    prompt: str | tuple[ChatMessage, ...]
    response: str
    honest: str | None = None
    """A good answer to the same prompt. When given, the gate compares the probe with it (the
    exploit's margin over an honest answer) rather than looking at the probe's reward alone: a
    version that lifts every reward evenly does not reward the exploit more (GRPO-style training
    only sees rewards relative to the other responses to the same prompt)."""
    note: str | None = None
    """Why this response should not be rewarded."""

    def item(self) -> Item:
        """The probe as an item to score (id `probe:<id>`)."""
        return Item(id=f"probe:{self.id}", prompt=self.prompt, response=self.response)

    def honest_item(self) -> Item | None:
        """The honest counterpart as an item to score (id `probe:<id>/honest`), if there is one."""
        if self.honest is None:
            return None
        return Item(id=f"probe:{self.id}/honest", prompt=self.prompt, response=self.honest)


def read_probes(path: Path) -> list[Probe]:
    """Parse one probe file; a bad line names its line number and what is wrong."""
    return read_jsonl_models(path, Probe, "probe file", "prompt and response", "probes",
                             default_id=lambda number: f"{path.stem}-{number}")



def shipped_probe_files() -> list[Path]:
    """The shipped probe files, sorted."""
    folder = shipped_dir("rubrics") / "probes"
    return sorted(folder.glob("*.jsonl")) if folder.is_dir() else []


def load_probes(paths: Sequence[Path] = (), shipped: bool = True) -> list[Probe]:
    """Shipped probes (unless `shipped` is False) then the given files; ids must be unique."""
    probes: list[Probe] = []
    for path in [*(shipped_probe_files() if shipped else []), *paths]:
        probes += read_probes(path)
    seen: set[str] = set()
    for probe in probes:
        if probe.id in seen:
            raise UsageError(f"probe id {probe.id!r} appears twice; give every probe a unique id")
        seen.add(probe.id)
    return probes
