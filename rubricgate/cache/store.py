"""Judgments in a SQL database through SQLAlchemy 2 (SQLite in WAL mode by default).

Each finished judgment is committed on its own as it arrives, so a crash or a failed batch
loses nothing already computed. Blocking database calls run on worker threads. Every database
error (a lock held past the busy timeout, a full disk, a read-only file, a server gone) leaves
this module as `CacheError`, mapped in one place: `map_database_errors`.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Float, Index, Integer, MetaData, String, Text, create_engine, delete, event, func, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from rubricgate.errors import CacheError, UsageError
from rubricgate.models.judging import JudgeReply

_LOOKUP_CHUNK = 500
DEFAULT_BUSY_TIMEOUT_S = 30.0
"""How long SQLite waits for another writer's lock; a cache URL's `?timeout=SECONDS` overrides it."""


@contextmanager
def map_database_errors(doing: str, where: str) -> Iterator[None]:
    """Turn SQLAlchemy, sqlite3 and OS errors into `CacheError` ("cannot DOING WHERE: why").

    `where` names the database without its password (see `safe_url`). Callers above the store
    only ever see CacheError, so they can degrade (judge the vote uncached) instead of crashing.
    """
    try:
        yield
    except (SQLAlchemyError, sqlite3.Error, OSError) as exc:
        why = getattr(exc, "orig", None) or exc  # the driver's message, without SQLAlchemy's SQL dump
        raise CacheError(f"cannot {doing} {where}: {type(why).__name__}: {why}") from exc


def safe_url(url: str) -> str:
    """The URL as it may appear in messages and logs: the password masked."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "<unparseable cache URL>"
    return parsed.render_as_string(hide_password=True) if parsed.password else url


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
        self._where = f"cache {safe_url(url)}"
        self._engine = open_engine(url, _Base.metadata)
        self._write_lock = threading.Lock()  # one writer per process; SQLite serialises anyway
        self._writer: ThreadPoolExecutor | None = None
        self._writer_pid = 0
        self._write_failed_at = float("-inf")

    async def get_many(self, keys: Sequence[str]) -> dict[str, JudgeReply]:
        """Replies for the keys present, in batched lookups. Raises CacheError."""
        return await asyncio.to_thread(self._get_many, list(keys))

    async def put(self, meta: StoredJudgment, reply: JudgeReply) -> None:
        """Commit one reply now; an existing key is left as it is. Raises CacheError."""
        # Writes queue on their own thread: were they on the shared default executor, threads
        # blocked on the write lock would hold every worker and stall reads (batch lookups).
        queued_at = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(self._writer_thread(), self._put, meta, reply, queued_at)

    def stats(self) -> dict[str, Any]:
        """Row counts in total, per rubric and per judge, and the database size."""
        with map_database_errors("read", self._where), self._connect() as conn:
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
        with map_database_errors("read", self._where), self._connect() as conn:
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
        with map_database_errors("write to", self._where), self._write_lock, self._engine.begin() as conn:
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
        with map_database_errors("read", self._where), self._connect() as conn:
            for start in range(0, len(keys), _LOOKUP_CHUNK):
                chunk = keys[start:start + _LOOKUP_CHUNK]
                rows = conn.execute(select(JudgmentRow.key, JudgmentRow.reply).where(JudgmentRow.key.in_(chunk)))
                for key, reply in rows:
                    found[key] = JudgeReply.model_validate_json(reply).model_copy(update={"cached": True})
        return found

    def _put(self, meta: StoredJudgment, reply: JudgeReply, queued_at: float) -> None:
        if queued_at < self._write_failed_at:
            # Queued behind a write that failed (e.g. waited out a lock): fail now rather than each
            # waiting the busy timeout again in turn.
            raise CacheError(f"cannot write to {self._where}: skipped, the write before it failed")
        row = {"key": meta.key, "judge": meta.judge, "rubric": meta.rubric, "template": meta.template,
               "sample_index": meta.sample_index,
               "reply": reply.model_dump_json(exclude={"cached", "cache_unavailable"}), "created_at": time.time()}
        try:
            with map_database_errors("write to", self._where):
                try:
                    with self._write_lock, self._engine.begin() as conn:
                        conn.execute(_insert_ignoring_duplicates(self._engine, row))
                except IntegrityError:
                    return  # another writer stored the same vote first: same key, same content
        except CacheError:
            self._write_failed_at = time.monotonic()
            raise

    def _connect(self) -> Any:
        return self._engine.connect()


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
    """An engine for a cache URL with its tables created; SQLite gets WAL and a busy timeout
    (`?timeout=SECONDS` in the URL, default 30). Every table in the cache database (judgments,
    rubric versions) is opened through here. Raises UsageError for a bad URL, CacheError when the
    database cannot be opened."""
    try:
        engine = create_engine(url)
    except (ArgumentError, ImportError, ValueError) as exc:
        raise UsageError(f"bad cache URL {safe_url(url)!r}: {exc}; use e.g. sqlite:///path/cache.db") from exc
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if database and database != ":memory:" and not database.startswith("file:"):
            try:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(f"cannot create the cache folder for {database}: {exc.strerror}") from exc
        timeout_ms = _busy_timeout_ms(engine)
        event.listen(engine, "connect", lambda connection, _: _sqlite_pragmas(connection, timeout_ms))
    for attempt in range(3):
        try:
            with map_database_errors("open", f"{what} {safe_url(url)}"):
                metadata.create_all(engine)
            break
        except CacheError:
            # Processes opening a new database together race between "does it exist?" and CREATE:
            # the loser sees "already exists"; the next pass finds the objects and creates nothing.
            if attempt == 2:
                engine.dispose()
                raise
    return engine


def _busy_timeout_ms(engine: Engine) -> int:
    value = engine.url.query.get("timeout", str(DEFAULT_BUSY_TIMEOUT_S))
    try:
        seconds = float(value if isinstance(value, str) else value[-1])
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 3600:
        raise UsageError(f"cache URL timeout={value!r}: want seconds between 0 and 3600")
    return round(seconds * 1000)


def _sqlite_pragmas(dbapi_connection: Any, busy_timeout_ms: int) -> None:
    """WAL lets readers and one writer work at once; busy_timeout waits out other writers."""
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms:d}")  # first: switching to WAL needs a lock others may hold
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
