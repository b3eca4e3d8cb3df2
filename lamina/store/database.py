"""One database layer under every store: SQLite (the embedded default, one file per store
under the data directory) or PostgreSQL (cluster mode, one database shared by every node).

Each store module writes its SQL once, in the dialect both engines share:
- `?` placeholders (translated to psycopg's `%s` for PostgreSQL);
- upserts as `INSERT ... ON CONFLICT (...) DO UPDATE SET x=excluded.x` or `DO NOTHING`;
- new ids as `INSERT ... RETURNING id` (`Database.insert_id`);
- tables declared with SQLite's type names (INTEGER, REAL, TEXT, BLOB, and
  `INTEGER PRIMARY KEY AUTOINCREMENT`), which `ddl()` maps to BIGINT, DOUBLE PRECISION,
  BYTEA and BIGSERIAL for PostgreSQL;
- a multi-statement change inside `with db.transaction() as tx:` (tx has execute and
  executemany); claims that several nodes race for add `db.skip_locked` to their SELECT.

The PostgreSQL side is synchronous on purpose: every store is called from the event loop
in short statements, and the invoke path reads records from caches the stores keep (a
notification from another node drops a cached record: `Database.listen`). A loopback round
trip is a fraction of a millisecond; making every store and caller async would cost more
than it saves. Statements run on connections of a pool (psycopg_pool), autocommit outside
transactions; a PostgreSQL that cannot be reached raises `StoreUnavailable`, which the API
answers as a retryable AWS error: nothing is acknowledged that was not made durable.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

Params = Sequence[Any]


class StoreUnavailable(RuntimeError):
    """The shared database cannot be reached (or failed mid-statement): nothing was stored.
    The API answers it as a 503 ServiceUnavailableException, which AWS SDKs retry."""


class Rows(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Executor(Protocol):
    def execute(self, sql: str, params: Params = ()) -> Rows: ...

    def executemany(self, sql: str, rows: Iterable[Params]) -> None: ...


class Database(Executor, Protocol):
    dialect: str  # "sqlite" or "postgresql"
    skip_locked: str  # " FOR UPDATE SKIP LOCKED" on PostgreSQL, "" on SQLite
    integrity_error: type[Exception]

    def transaction(self) -> contextlib.AbstractContextManager[Executor]: ...

    def insert_id(self, sql: str, params: Params = ()) -> int: ...

    def script(self, ddl: str) -> None: ...

    def stream(self, sql: str, params: Params = (), batch: int = 1000) -> Iterator[list[Any]]: ...

    def notify(self, channel: str, payload: str) -> None: ...

    def listen(self, channel: str, callback: Callable[[str], None]) -> None: ...

    def close(self) -> None: ...


# SQLite ----------------------------------------------------------------------------------
class SqliteDatabase:
    """One SQLite file; one connection, autocommit, WAL (every committed row survives a
    `kill -9` of the server), synchronous=NORMAL unless `durable` (FULL: fsync each commit)."""

    dialect = "sqlite"
    skip_locked = ""
    integrity_error: type[Exception] = sqlite3.IntegrityError

    def __init__(
        self,
        path: Path,
        *,
        durable: bool = False,
        check_same_thread: bool = True,
        connection: sqlite3.Connection | None = None,
    ) -> None:
        self.path = path
        if connection is not None:  # one opened already (tables.connect's)
            self.raw = connection
        else:
            self.raw = sqlite3.connect(
                path, isolation_level=None, check_same_thread=check_same_thread
            )
            self.raw.execute("PRAGMA journal_mode=WAL")
            self.raw.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self.raw.execute("PRAGMA busy_timeout=5000")
        self.execute = self.raw.execute  # type: ignore[assignment]
        self.executemany = self.raw.executemany  # type: ignore[assignment]

    def execute(self, sql: str, params: Params = ()) -> Rows:  # replaced per instance
        return self.raw.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Params]) -> None:  # replaced per instance
        self.raw.executemany(sql, rows)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Executor]:
        db = self.raw
        db.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def insert_id(self, sql: str, params: Params = ()) -> int:
        return int(self.raw.execute(sql + " RETURNING id", params).fetchall()[0][0])

    def script(self, ddl: str) -> None:
        self.raw.executescript(ddl)

    def stream(self, sql: str, params: Params = (), batch: int = 1000) -> Iterator[list[Any]]:
        cursor = self.raw.execute(sql, params)
        while rows := cursor.fetchmany(batch):
            yield rows

    def notify(self, channel: str, payload: str) -> None:
        """Nobody else reads this file while the server runs: nothing to tell."""

    def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        """Nobody else writes this file: nothing will be told."""

    def close(self) -> None:
        self.raw.close()


# PostgreSQL ------------------------------------------------------------------------------
_PLACEHOLDER = re.compile(r"'[^']*'|\?|%")


def _to_psycopg(sql: str) -> str:
    """`?` → `%s`, a literal `%` → `%%` (quoted strings kept as they are)."""

    def swap(match: re.Match[str]) -> str:
        text = match.group(0)
        if text == "?":
            return "%s"
        if text == "%":
            return "%%"
        return text.replace("%", "%%")

    return _PLACEHOLDER.sub(swap, sql)


_TYPES = [
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"), "BIGSERIAL PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
    (re.compile(r"\)\s*WITHOUT ROWID"), ")"),
]


def ddl(text: str, dialect: str) -> str:
    """Table definitions written for SQLite, in `dialect`."""
    if dialect == "sqlite":
        return text
    for pattern, replacement in _TYPES:
        text = pattern.sub(replacement, text)
    return text


class _Result:
    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Any]:
        return self._rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)


class _Connection:
    """Statements on one borrowed connection (a transaction's)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Params = ()) -> Rows:
        return _run(self._conn, sql, params)

    def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        with self._conn.cursor() as cursor:
            cursor.executemany(_sql(sql), list(rows))


_SQL_CACHE: dict[str, str] = {}


def _sql(sql: str) -> str:
    found = _SQL_CACHE.get(sql)
    if found is None:
        found = _SQL_CACHE[sql] = _to_psycopg(sql)
    return found


def _run(conn: Any, sql: str, params: Params) -> _Result:
    with conn.cursor() as cursor:
        cursor.execute(_sql(sql), tuple(params) if params else None)
        rows = cursor.fetchall() if cursor.description is not None else []
        return _Result(rows, cursor.rowcount)


def _unavailable(error: Exception) -> StoreUnavailable:
    return StoreUnavailable(f"the database cannot be reached: {error}".strip())


class PostgresDatabase:
    """A pool of connections to one PostgreSQL database, shared by the stores of a node."""

    dialect = "postgresql"
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, *, min_size: int = 2, max_size: int = 10) -> None:
        import psycopg
        import psycopg_pool

        self._psycopg = psycopg
        self.url = url
        self.integrity_error: type[Exception] = psycopg.errors.IntegrityError
        self._operational = (
            psycopg.OperationalError,
            psycopg.InterfaceError,
            psycopg_pool.PoolTimeout,
        )
        self.pool = psycopg_pool.ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            kwargs={"autocommit": True, "connect_timeout": 3},
            timeout=2.0,  # a request waits this long for a connection, then is refused
            # The pool retries a lost connection with a backoff that doubles (1, 2, 4, 8 s
            # ...) for as long as this lasts: with its default of 5 minutes a node whose
            # database was away for 40 s stored again only 20 s after the database was
            # back. Given up after 2 s instead, the next request that has to wait starts
            # a new attempt at once, so a node reconnects within a second of its return.
            reconnect_timeout=2.0,
            open=False,
            name="lamina",
        )
        try:
            self.pool.open(wait=True, timeout=10.0)
        except self._operational as error:
            self.pool.close()
            raise _unavailable(error) from error
        self._listeners: dict[str, list[Callable[[str], None]]] = {}
        self._listen_thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._purging = threading.Lock()

    @contextlib.contextmanager
    def _borrow(self) -> Iterator[Any]:
        try:
            with self.pool.connection() as conn:
                yield conn
        except self._operational as error:
            self._purge()
            raise _unavailable(error) from error

    def _purge(self) -> None:
        """A connection failed: the pool's idle ones may be dead too (PostgreSQL restarted);
        they are checked, and replaced, off the caller's thread."""
        if self._purging.acquire(blocking=False):

            def check() -> None:
                try:
                    self.pool.check()
                except Exception:  # the next request finds out again
                    pass
                finally:
                    self._purging.release()

            threading.Thread(target=check, name="lamina-pool-check", daemon=True).start()

    def execute(self, sql: str, params: Params = ()) -> Rows:
        with self._borrow() as conn:
            return _run(conn, sql, params)

    def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        with self._borrow() as conn, conn.cursor() as cursor:
            cursor.executemany(_sql(sql), list(rows))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Executor]:
        with self._borrow() as conn, conn.transaction():
            yield _Connection(conn)

    def insert_id(self, sql: str, params: Params = ()) -> int:
        return int(self.execute(sql + " RETURNING id", params).fetchone()[0])

    def script(self, text: str) -> None:
        with self._borrow() as conn, conn.transaction():
            text = re.sub(r"--[^\n]*", "", text)  # a comment may hold a `;`
            for statement in filter(None, (s.strip() for s in text.split(";"))):
                conn.execute(ddl(statement, self.dialect))

    def stream(self, sql: str, params: Params = (), batch: int = 1000) -> Iterator[list[Any]]:
        with self._borrow() as conn, conn.transaction(), conn.cursor(name="lamina_stream") as cur:
            cur.execute(_sql(sql), tuple(params) if params else None)
            while rows := cur.fetchmany(batch):
                yield rows

    # Notifications between nodes -------------------------------------------------------
    def notify(self, channel: str, payload: str) -> None:
        self.execute("SELECT pg_notify(?, ?)", (channel, payload))

    def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        """Call `callback(payload)` (on the listening thread) for each NOTIFY on `channel`,
        and with "" after the listening connection was lost and made again (whatever was
        said meanwhile was missed: forget everything)."""
        self._listeners.setdefault(channel, []).append(callback)
        if self._listen_thread is None:
            self._listen_thread = threading.Thread(
                target=self._listen_forever, name="lamina-listen", daemon=True
            )
            self._listen_thread.start()

    def _listen_forever(self) -> None:
        psycopg = self._psycopg
        current = True  # False once a connection was lost: notifications were missed
        while not self._closing.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                    heard: set[str] = set()
                    while not self._closing.is_set():
                        for channel in set(self._listeners) - heard:  # new ones too
                            conn.execute(f'LISTEN "{channel}"')
                            heard.add(channel)
                        if not current:  # listening again: forget what may have changed
                            self._tell_all("")
                            current = True
                        for note in conn.notifies(timeout=0.2, stop_after=1000):
                            for callback in self._listeners.get(note.channel, []):
                                callback(note.payload)
            except psycopg.Error:
                current = False
                self._closing.wait(0.5)

    def _tell_all(self, payload: str) -> None:
        for callbacks in self._listeners.values():
            for callback in callbacks:
                callback(payload)

    def close(self) -> None:
        """Every store of a node shares this database: closing one store closes nothing
        (the node calls `shutdown` last)."""

    def shutdown(self) -> None:
        self._closing.set()
        if self._listen_thread is not None:
            self._listen_thread.join(2)
        self.pool.close(timeout=1.0)


def open_shared(url: str) -> PostgresDatabase | None:
    """The cluster's database named by `url` (postgresql://...), or None for SQLite."""
    if not url:
        return None
    if not url.startswith(("postgresql://", "postgres://")):
        raise ValueError(f"--database takes a postgresql:// URL, not {url!r}")
    return PostgresDatabase(url)
