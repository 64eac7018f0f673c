"""The versioned rubric store on a real SQLite file, and how the gateway serves from it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from rubricgate.authoring.refinement import Edit, apply_edits
from rubricgate.cache.versions import RubricVersionStore
from rubricgate.errors import UsageError
from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.library.rubric_files import load_rubric_file, write_rubric_file
from tests.refine.support import RUBRIC

BASE = load_rubric_file(RUBRIC)
V2 = apply_edits(BASE, [Edit(op="reweight", id="detailed", weight=1.0)], {"parent": BASE.version})
V3 = apply_edits(V2, [Edit(op="reweight", id="relevant", weight=3.0)], {"parent": V2.version})


def test_history_records_baseline_refinements_rejections_and_rollbacks(cache_url: str) -> None:
    store = RubricVersionStore(cache_url)
    assert store.current(BASE.id) is None and store.served(BASE) is None
    assert store.ensure_baseline(BASE, "file") and not store.ensure_baseline(BASE, "again")
    assert store.record(V2, "refined", "padding fix", parent=BASE.version, details={"gate": {"pairs": 3}},
                        expect_current=BASE.version)
    assert store.record(V3, "rejected", "accuracy drops", parent=V2.version)
    assert store.current(BASE.id) == V2  # a rejected proposal never goes live
    assert not store.record(V3, "refined", "stale", parent=BASE.version, expect_current=BASE.version)
    events = store.history(BASE.id)
    assert [(e.event, e.version, e.current) for e in events] == [
        ("baseline", BASE.version, False), ("refined", V2.version, True), ("rejected", V3.version, False)]
    assert events[1].details == {"gate": {"pairs": 3}} and events[1].parent == BASE.version
    stored = store.get(BASE.id, V2.version[:6])
    assert stored is not None and stored.metadata["parent"] == BASE.version  # metadata survives the round trip

    rolled, previous = store.rollback(BASE.id, BASE.version, "too strict")
    assert rolled == BASE and previous == V2.version and store.current(BASE.id) == BASE
    assert store.history(BASE.id)[-1].event == "rollback" and store.history(BASE.id)[-1].current
    with pytest.raises(UsageError, match="rejected by the gate and never served"):
        store.rollback(BASE.id, V3.version)
    with pytest.raises(UsageError, match="no stored version 'ffffff'"):
        store.rollback(BASE.id, "ffffff")
    assert store.rubric_ids() == [BASE.id]
    store.close()


def test_the_store_serves_its_current_version_unless_the_file_changed(cache_url: str, tmp_path: Path) -> None:
    store = RubricVersionStore(cache_url)
    store.ensure_baseline(BASE, "file")
    store.record(V2, "refined", "fix", parent=BASE.version, expect_current=BASE.version)
    assert store.served(BASE) == V2
    edited = apply_edits(BASE, [Edit(op="clarify", id="relevant", text="The response answers the prompt.")])
    assert store.served(edited) is None  # an edited file starts a new line of history
    store.close()

    write_rubric_file(BASE, tmp_path / "thorough-answers.yaml")
    config = GatewayConfig(judge="fake:best", cache_url=cache_url, rubric_dirs=(tmp_path,), version_sync_s=0)
    gateway = Gateway.open(config)
    assert gateway.rubric("thorough-answers") == V2
    RubricVersionStore(cache_url).rollback(BASE.id, BASE.version)  # another process rolls back
    assert gateway.rubric("thorough-answers") == BASE
    RubricVersionStore(cache_url).rollback(BASE.id, V2.version)
    assert gateway.rubric("thorough-answers") == V2
    with sqlite3.connect(cache_url.removeprefix("sqlite:///")) as db:  # the history becomes unreadable
        db.execute("DROP TABLE rubric_events")
    assert gateway.rubric("thorough-answers") == V2  # scoring goes on with the version it had
    off = Gateway.open(config.model_copy(update={"rubric_versions": False}))
    assert off.versions is None and off.rubric("thorough-answers") == BASE


async def test_serve_version_swaps_in_memory_and_results_name_the_version() -> None:
    from rubricgate.models.reward import Item

    async with Gateway.open(GatewayConfig(judge="fake:best", cache_url=None, rubric_dirs=(RUBRIC.parent,))) as gateway:
        assert gateway.versions is None
        [before] = await gateway.score([Item(prompt="Q?", response="A.")], "thorough-answers")
        assert gateway.serve_version(V2) is None
        assert gateway.live_version(BASE.id) == V2 and gateway.live_version("other") is None
        [after] = await gateway.score([Item(prompt="Q?", response="A.")], "thorough-answers")
    assert before.rubric == BASE.ref and after.rubric == V2.ref
