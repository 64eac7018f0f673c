"""Rubric versions and their history, in the cache database (SQLAlchemy 2; SQLite in WAL mode).

Two append-only tables: `rubric_documents` holds every version's document (keyed by rubric id and
content-hash version), `rubric_events` what happened to it, with a reason and details (evidence,
gate numbers): `baseline` (the file version refinement started from), `refined` (a proposal that
passed the gate and went live), `rejected` (a proposal the gate stopped; never live) and
`rollback`. The *current* version of a rubric is the one named by its latest event other than
`rejected`.

Which version is served: a rubric file whose version the store has never seen is served as it is
(editing the file wins over refinements of an older file); a file version the store knows means
the store's current version is served. So a refinement or a rollback applies to every gateway
that reads this database, and editing the file starts a new line of history.
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar, cast

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Float, Index, Integer, String, Text, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from rubricgate.errors import CacheError, UsageError
from rubricgate.cache.store import map_database_errors, open_engine, safe_url
from rubricgate.models.rubric import Rubric

EventKind = Literal["baseline", "refined", "rejected", "rollback"]
LIVE_EVENTS: tuple[EventKind, ...] = ("baseline", "refined", "rollback")
"""Events that make their version the current one."""


class _Base(DeclarativeBase):
    pass


class RubricDocumentRow(_Base):
    """One rubric version's document (JSON, metadata included)."""

    __tablename__ = "rubric_documents"

    rubric_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[str] = mapped_column(String(32), primary_key=True)
    document: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)


class RubricEventRow(_Base):
    """Something that happened to a rubric version."""

    __tablename__ = "rubric_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rubric_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(32))
    event: Mapped[str] = mapped_column(String(16))
    parent: Mapped[str | None] = mapped_column(String(32), nullable=True)
    reason: Mapped[str] = mapped_column(Text)
    details: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_rubric_events_rubric", "rubric_id", "id"),)


class VersionEvent(BaseModel):
    """One entry of a rubric's history."""

    model_config = ConfigDict(frozen=True)

    seq: int
    """Order of the event in the database."""
    rubric_id: str
    version: str
    event: EventKind
    parent: str | None
    """The version it was derived from (refined, rejected) or replaced (rollback)."""
    reason: str
    details: dict[str, Any]
    """Evidence, gate numbers, edits, who proposed it."""
    created_at: float
    current: bool = False
    """True for the event that makes its version the current one."""


_F = TypeVar("_F", bound=Callable[..., Any])


def _database_errors(doing: str) -> Callable[[_F], _F]:
    """Database errors (a locked or broken database) surface as CacheError naming the store,
    through the judgment store's one mapping."""

    def decorate(method: _F) -> _F:
        @functools.wraps(method)
        def wrapper(self: RubricVersionStore, *args: Any, **kwargs: Any) -> Any:
            with map_database_errors(doing, self._where):
                return method(self, *args, **kwargs)

        return cast(_F, wrapper)

    return decorate


class RubricVersionStore:
    """Versions, history and the current version of each rubric."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._where = f"version store {safe_url(url)}"
        self._engine = open_engine(url, _Base.metadata, "version store")
        self._write_lock = threading.Lock()

    # -- reads ---------------------------------------------------------------------------
    @_database_errors("read")
    def current(self, rubric_id: str) -> Rubric | None:
        """The current version of a rubric, or None when it has no history."""
        with self._connect() as conn:
            version = self._current_version(conn, rubric_id)
            return self._load(conn, rubric_id, version) if version is not None else None

    @_database_errors("read")
    def get(self, rubric_id: str, version: str) -> Rubric | None:
        """A stored version; `version` may be a unique prefix (at least 4 characters)."""
        with self._connect() as conn:
            full = self._expand(conn, rubric_id, version)
            return self._load(conn, rubric_id, full) if full is not None else None

    @_database_errors("read")
    def served(self, loaded: Rubric) -> Rubric | None:
        """What to serve for a rubric loaded from its file: the store's current version when the
        store knows the file's version, None when the store has no say (no history, or a file
        version it has never seen)."""
        with self._connect() as conn:
            if not self._was_live(conn, loaded):
                return None
            version = self._current_version(conn, loaded.id)
            if version is None or version == loaded.version:
                return loaded
            return self._load(conn, loaded.id, version)

    @_database_errors("read")
    def history(self, rubric_id: str) -> list[VersionEvent]:
        """Every event of a rubric, oldest first; the one that set the current version is marked."""
        with self._connect() as conn:
            rows = conn.execute(select(RubricEventRow.__table__).where(RubricEventRow.rubric_id == rubric_id)
                                .order_by(RubricEventRow.id)).mappings().all()
        events = [_event(row) for row in rows]
        live = [e for e in events if e.event in LIVE_EVENTS]
        if live:
            last = live[-1].seq
            events = [e.model_copy(update={"current": e.seq == last}) for e in events]
        return events

    @_database_errors("read")
    def rubric_ids(self) -> list[str]:
        """Rubrics with any history, sorted."""
        with self._connect() as conn:
            return sorted(conn.execute(select(RubricEventRow.rubric_id).distinct()).scalars().all())

    # -- writes --------------------------------------------------------------------------
    @_database_errors("write to")
    def ensure_baseline(self, loaded: Rubric, reason: str) -> bool:
        """Record `loaded` as a baseline (current) unless its version was live before; True when it
        recorded one."""
        with self._write_lock, self._begin() as conn:
            if self._was_live(conn, loaded):
                return False
            self._save(conn, loaded)
            self._append(conn, loaded, "baseline", None, reason, {})
            return True

    @_database_errors("write to")
    def record(self, rubric: Rubric, event: EventKind, reason: str, *, parent: str | None = None,
               details: dict[str, Any] | None = None, expect_current: str | None = None) -> bool:
        """Store the version and append an event.

        For events that make a version current, `expect_current` (when given) must still be the
        current version, else nothing is written and False is returned: a refinement built on a
        version that was rolled back meanwhile does not go live.
        """
        with self._write_lock, self._begin() as conn:
            if expect_current is not None and event in LIVE_EVENTS:
                current = self._current_version(conn, rubric.id)
                if current is not None and current != expect_current:
                    return False
            self._save(conn, rubric)
            self._append(conn, rubric, event, parent, reason, details or {})
            return True

    @_database_errors("write to")
    def rollback(self, rubric_id: str, version: str, reason: str = "") -> tuple[Rubric, str | None]:
        """Make a stored version current again; returns it and the version it replaced.

        Raises UsageError for an unknown version, one the gate rejected (it never went live), or
        an ambiguous prefix.
        """
        with self._write_lock, self._begin() as conn:
            full = self._expand(conn, rubric_id, version)
            if full is None:
                known = ", ".join(e.version for e in self.history(rubric_id) if e.event in LIVE_EVENTS) or "none"
                raise UsageError(f"rubric {rubric_id!r} has no stored version {version!r}; live versions: {known}")
            kinds = set(conn.execute(select(RubricEventRow.event).where(
                RubricEventRow.rubric_id == rubric_id, RubricEventRow.version == full)).scalars().all())
            if not kinds & set(LIVE_EVENTS):
                raise UsageError(f"version {full} of {rubric_id!r} was rejected by the gate and never served; "
                                 "roll back to a version that was live (see `rubricgate rubric history`)")
            previous = self._current_version(conn, rubric_id)
            rubric = self._load(conn, rubric_id, full)
            self._append(conn, rubric, "rollback", previous, reason or f"rolled back from {previous} to {full}", {})
            return rubric, previous

    async def arecord(self, rubric: Rubric, event: EventKind, reason: str, *, parent: str | None = None,
                      details: dict[str, Any] | None = None, expect_current: str | None = None) -> bool:
        """`record` on a worker thread."""
        return await asyncio.to_thread(self.record, rubric, event, reason, parent=parent, details=details,
                                       expect_current=expect_current)

    async def aensure_baseline(self, loaded: Rubric, reason: str) -> bool:
        """`ensure_baseline` on a worker thread."""
        return await asyncio.to_thread(self.ensure_baseline, loaded, reason)

    def close(self) -> None:
        self._engine.dispose()

    # -- internals -----------------------------------------------------------------------
    def _current_version(self, conn: Connection, rubric_id: str) -> str | None:
        row = conn.execute(select(RubricEventRow.version).where(
            RubricEventRow.rubric_id == rubric_id, RubricEventRow.event.in_(LIVE_EVENTS))
            .order_by(RubricEventRow.id.desc()).limit(1)).first()
        return row[0] if row is not None else None

    def _was_live(self, conn: Connection, rubric: Rubric) -> bool:
        return conn.execute(select(RubricEventRow.id).where(
            RubricEventRow.rubric_id == rubric.id, RubricEventRow.version == rubric.version,
            RubricEventRow.event.in_(LIVE_EVENTS)).limit(1)).first() is not None

    def _expand(self, conn: Connection, rubric_id: str, version: str) -> str | None:
        version = version.strip().removeprefix(f"{rubric_id}@")
        if len(version) < 4:
            return None
        matches = conn.execute(select(RubricDocumentRow.version).where(
            RubricDocumentRow.rubric_id == rubric_id, RubricDocumentRow.version.startswith(version))).scalars().all()
        if len(matches) > 1:
            raise UsageError(f"version prefix {version!r} of {rubric_id!r} is ambiguous: {', '.join(matches)}")
        return matches[0] if matches else None

    def _load(self, conn: Connection, rubric_id: str, version: str) -> Rubric:
        row = conn.execute(select(RubricDocumentRow.document).where(
            RubricDocumentRow.rubric_id == rubric_id, RubricDocumentRow.version == version)).first()
        if row is None:
            raise CacheError(f"{self._where}: event for {rubric_id}@{version} but no document")
        rubric = Rubric.model_validate(json.loads(row[0]))
        if rubric.version != version:  # a document edited by hand, or a changed hashing rule
            raise CacheError(f"{self._where}: document {rubric_id}@{version} hashes to {rubric.version}")
        return rubric

    def _save(self, conn: Connection, rubric: Rubric) -> None:
        exists = conn.execute(select(RubricDocumentRow.version).where(
            RubricDocumentRow.rubric_id == rubric.id, RubricDocumentRow.version == rubric.version)).first()
        if exists is None:
            document = json.dumps(rubric.model_dump(mode="json", by_alias=True, exclude_defaults=True),
                                  ensure_ascii=False, sort_keys=True)
            conn.execute(insert(RubricDocumentRow).values(rubric_id=rubric.id, version=rubric.version,
                                                          document=document, created_at=time.time()))

    def _append(self, conn: Connection, rubric: Rubric, event: EventKind, parent: str | None, reason: str,
                details: dict[str, Any]) -> None:
        conn.execute(insert(RubricEventRow).values(
            rubric_id=rubric.id, version=rubric.version, event=event, parent=parent, reason=reason,
            details=json.dumps(details, ensure_ascii=False, sort_keys=True, default=str), created_at=time.time()))

    def _connect(self) -> Any:
        return self._engine.connect()

    def _begin(self) -> Any:
        return self._engine.begin()


def _event(row: Mapping[str, Any]) -> VersionEvent:
    return VersionEvent(seq=row["id"], rubric_id=row["rubric_id"], version=row["version"],
                        event=cast(EventKind, row["event"]), parent=row["parent"], reason=row["reason"],
                        details=json.loads(row["details"] or "{}"), created_at=row["created_at"])



def live_versions(events: Sequence[VersionEvent]) -> list[str]:
    """Versions that were ever current, in order of first going live."""
    return list(dict.fromkeys(e.version for e in events if e.event in LIVE_EVENTS))
