"""Judgments in a SQL database through SQLAlchemy 2 (SQLite in WAL mode by default).

Each finished judgment is committed on its own as it arrives, so a crash or a failed batch
loses nothing already computed. Blocking database calls run on worker threads.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Float, Index, Integer, MetaData, String, Text, create_engine, delete, event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from rubricgate.errors import CacheError, UsageError
from rubricgate.models.judging import JudgeReply

_LOOKUP_CHUNK = 500


class _Base(DeclarativeBase):
    pass


class JudgmentRow(_Base):
    """One vote's judge reply."""

    __tablename__ = "judgments"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    judge: Mapped[str] = mapped_column(String(200))
    rubric: Mapped[str] = mapped_column(String(100))
    template: Mapped[str] = mapped_column(String(100))
    sample_index: Mapped[int] = mapped_column(Integer)
    reply: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_judgments_rubric", "rubric"), Index("ix_judgments_judge", "judge"))


@dataclass(frozen=True)
class StoredJudgment:
    """What `put` records beside the reply, for stats, export and selective clearing."""

    key: str
    judge: str
    rubric: str
    template: str
    sample_index: int


class JudgmentStore:
    """Async get/put of judge replies keyed by `cache_key`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = open_engine(url, _Base.metadata)
        self._write_lock = threading.Lock()  # one writer per process; SQLite serialises anyway
        self._writer: ThreadPoolExecutor | None = None
        self._writer_pid = 0

    async def get_many(self, keys: Sequence[str]) -> dict[str, JudgeReply]:
        """Replies for the keys present, in batched lookups."""
        return await asyncio.to_thread(self._get_many, list(keys))

    async def put(self, meta: StoredJudgment, reply: JudgeReply) -> None:
        """Commit one reply now; an existing key is left as it is."""
        # Writes queue on their own thread: were they on the shared default executor, threads
        # blocked on the write lock would hold every worker and stall reads (batch lookups).
        await asyncio.get_running_loop().run_in_executor(self._writer_thread(), self._put, meta, reply)

    def stats(self) -> dict[str, Any]:
        """Row counts in total, per rubric and per judge, and the database size."""
        with self._connect() as conn:
            total = conn.execute(select(func.count()).select_from(JudgmentRow)).scalar_one()
            by_rubric = conn.execute(select(JudgmentRow.rubric, func.count()).group_by(JudgmentRow.rubric)).all()
            by_judge = conn.execute(select(JudgmentRow.judge, func.count()).group_by(JudgmentRow.judge)).all()
        size = None
        database = self._engine.url.database
        if self._engine.url.get_backend_name() == "sqlite" and database and Path(database).exists():
            size = Path(database).stat().st_size
        return {"url": self._engine.url.render_as_string(hide_password=True), "judgments": total,
                "by_rubric": dict(by_rubric), "by_judge": dict(by_judge), "bytes": size}

    def export(self) -> Iterator[dict[str, Any]]:
        """Every row as a plain dict, oldest first."""
        with self._connect() as conn:
            for row in conn.execute(select(JudgmentRow).order_by(JudgmentRow.created_at)).mappings():
                yield {k: row[k] for k in ("key", "judge", "rubric", "template", "sample_index", "reply",
                                          "created_at")}

    def clear(self, rubric: str | None = None, judge: str | None = None) -> int:
        """Delete rows (all, or those of one rubric id/ref and/or judge); returns how many."""
        statement = delete(JudgmentRow)
        if rubric:
            statement = statement.where((JudgmentRow.rubric == rubric) | JudgmentRow.rubric.startswith(f"{rubric}@"))
        if judge:
            statement = statement.where(JudgmentRow.judge == judge)
        with self._write_lock, self._engine.begin() as conn:
            return int(conn.execute(statement).rowcount or 0)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=True)  # every queued put commits before the engine goes
            self._writer = None
        self._engine.dispose()

    def _writer_thread(self) -> ThreadPoolExecutor:
        if self._writer is None or self._writer_pid != os.getpid():  # a forked child starts its own
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rubricgate-cache-writer")
            self._writer_pid = os.getpid()
        return self._writer

    def _get_many(self, keys: list[str]) -> dict[str, JudgeReply]:
        found: dict[str, JudgeReply] = {}
        with self._connect() as conn:
            for start in range(0, len(keys), _LOOKUP_CHUNK):
                chunk = keys[start:start + _LOOKUP_CHUNK]
                rows = conn.execute(select(JudgmentRow.key, JudgmentRow.reply).where(JudgmentRow.key.in_(chunk)))
                for key, reply in rows:
                    found[key] = JudgeReply.model_validate_json(reply).model_copy(update={"cached": True})
        return found

    def _put(self, meta: StoredJudgment, reply: JudgeReply) -> None:
        row = {"key": meta.key, "judge": meta.judge, "rubric": meta.rubric, "template": meta.template,
               "sample_index": meta.sample_index, "reply": reply.model_dump_json(exclude={"cached"}),
               "created_at": time.time()}
        try:
            with self._write_lock, self._engine.begin() as conn:
                conn.execute(_insert_ignoring_duplicates(self._engine, row))
        except IntegrityError:
            return  # another writer stored the same vote first: same key, same content
        except SQLAlchemyError as exc:
            raise CacheError(f"cannot write to cache {self.url}: {exc.__class__.__name__}: {exc.orig if hasattr(exc, 'orig') else exc}") from exc

    def _connect(self) -> Any:
        try:
            return self._engine.connect()
        except OperationalError as exc:
            raise CacheError(f"cannot open cache {self.url}: {exc.orig}") from exc


def _insert_ignoring_duplicates(engine: Engine, row: dict[str, Any]) -> Any:
    dialect = engine.dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(JudgmentRow).values(row).on_conflict_do_nothing()
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(JudgmentRow).values(row).on_conflict_do_nothing()
    from sqlalchemy import insert

    return insert(JudgmentRow).values(row)


def open_engine(url: str, metadata: MetaData, what: str = "cache") -> Engine:
    """An engine for a cache URL with its tables created; SQLite gets WAL and a busy timeout.
    Every table in the cache database (judgments, rubric versions) is opened through here."""
    try:
        engine = create_engine(url)
    except (ArgumentError, ImportError) as exc:
        raise UsageError(f"bad cache URL {url!r}: {exc}; use e.g. sqlite:///path/cache.db") from exc
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if database and database != ":memory:":
            try:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(f"cannot create the cache folder for {database}: {exc.strerror}") from exc
        event.listen(engine, "connect", _sqlite_pragmas)
    for attempt in range(3):
        try:
            metadata.create_all(engine)
            break
        except SQLAlchemyError as exc:
            # Processes opening a new database together race between "does it exist?" and CREATE:
            # the loser sees "already exists"; the next pass finds the objects and creates nothing.
            if attempt == 2:
                raise CacheError(f"cannot open {what} {url}: {getattr(exc, 'orig', exc)}") from exc
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    """WAL lets readers and one writer work at once; busy_timeout waits out other writers."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")  # first: switching to WAL needs a lock other processes may hold
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
