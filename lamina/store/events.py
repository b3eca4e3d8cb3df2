"""The durable store of asynchronous events, with group commit.

An accepted event is answered 202 only once it is on disk (committed in the cluster's
PostgreSQL, in cluster mode). Writes go to one writer thread
that takes every request waiting in its queue, applies them in one transaction and commits
once (synchronous=FULL: the commit is fsynced), then resolves each caller's future. Many
concurrent callers thus share one fsync, which is where the throughput comes from.
Reads happen at start only (the queue worker keeps its schedule in memory).

In cluster mode every event has an owner, the node that accepted (or adopted) it, and
each node's heartbeat is a row of `event_owners` it renews every BEAT_S. Events whose
owner has not beaten for EXPIRY_S (a node killed, or cut off) are adopted by whichever
node claims them first (FOR UPDATE SKIP LOCKED: no two nodes adopt the same event): an
accepted event runs at least once, whatever node dies.
"""

from __future__ import annotations

import asyncio
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lamina.store import schema
from lamina.store.database import Database, Executor, SqliteDatabase

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    function TEXT NOT NULL,
    qualifier TEXT NOT NULL,
    request_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    accepted REAL NOT NULL,    -- wall-clock seconds, for the event's age
    attempts INTEGER NOT NULL, -- invocations that ran and failed
    due REAL NOT NULL,         -- wall-clock seconds of the next try
    tenant TEXT                -- tenant isolation mode: the tenant it runs for
);
"""
OWNERS = """
ALTER TABLE events ADD COLUMN owner TEXT;
CREATE INDEX IF NOT EXISTS events_by_owner ON events (owner);
CREATE TABLE IF NOT EXISTS event_owners (
    node TEXT PRIMARY KEY,
    beat REAL NOT NULL      -- wall-clock seconds of the node's last heartbeat
);
"""
MIGRATIONS = [SCHEMA, OWNERS]
BEAT_S = 2.0
EXPIRY_S = 6.0
COLUMNS = (
    "id, account, region, function, qualifier, request_id, NULL, accepted, attempts, due, tenant"
)


@dataclass(slots=True)
class StoredEvent:
    id: int
    account: str
    region: str
    function: str
    qualifier: str
    request_id: str
    payload: bytes | None  # None: still on disk only (events read at start), see payload_of
    accepted: float
    attempts: int
    due: float
    tenant: str | None = None


_STOP = object()


class EventStore:
    def __init__(self, data_dir: Path, db: Database | None = None) -> None:
        self.path = data_dir / "events.db"
        self._shared = db  # the cluster's database; None: the SQLite file `path`
        setup = db or SqliteDatabase(self.path)
        if db is None:
            columns = {row[1] for row in setup.execute("PRAGMA table_info(events)")}
            if columns and "tenant" not in columns:  # a data directory of an earlier version
                setup.execute("ALTER TABLE events ADD COLUMN tenant TEXT")
        schema.ensure(setup, "events", MIGRATIONS)
        if db is None:
            setup.close()
        self._reader: Database | None = db  # payloads, read from the loop
        # This process, as the owner of the events it accepts (cluster mode).
        self.node = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        if db is not None:
            self.beat()
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer = threading.Thread(
            target=self._write_forever, name="lamina-events", daemon=True
        )
        self._writer.start()

    # Reading ----------------------------------------------------------------------------
    def pending(self, batch: int = 5000) -> Generator[list[StoredEvent], None, None]:
        """Every stored event, at start, in batches (each may be read on another thread):
        their payloads stay on disk until they run. Cluster mode: the events no live node
        owns, adopted."""
        if self._shared is not None:
            while adopted := self.adopt(batch):
                yield adopted
            return
        db = SqliteDatabase(self.path, check_same_thread=False)
        try:
            for rows in db.stream(f"SELECT {COLUMNS} FROM events ORDER BY id", (), batch):
                yield [StoredEvent(*row) for row in rows]
        finally:
            if db is not self._shared:
                db.close()

    @property
    def shared(self) -> bool:
        return self._shared is not None

    def beat(self) -> None:
        """Cluster mode: this node is alive (its events are not adopted by others)."""
        assert self._shared is not None
        self._shared.execute(
            "INSERT INTO event_owners (node, beat) VALUES (?, ?) "
            "ON CONFLICT (node) DO UPDATE SET beat=excluded.beat",
            (self.node, time.time()),
        )

    def adopt(self, limit: int = 1000) -> list[StoredEvent]:
        """Cluster mode: take up to `limit` events whose owner stopped beating (or that
        have none); another node's claim on an event is skipped, never waited for."""
        assert self._shared is not None
        expired = time.time() - EXPIRY_S
        with self._shared.transaction() as tx:
            rows = tx.execute(
                f"SELECT {COLUMNS} FROM events WHERE owner IS NULL OR owner IN "
                "(SELECT node FROM event_owners WHERE beat < ?) OR owner NOT IN "
                "(SELECT node FROM event_owners) ORDER BY id LIMIT ?" + self._shared.skip_locked,
                (expired, limit),
            ).fetchall()
            if rows:
                tx.executemany(
                    "UPDATE events SET owner=? WHERE id=?", [(self.node, r[0]) for r in rows]
                )
        return [StoredEvent(*row) for row in rows]

    def payload_of(self, event: StoredEvent) -> bytes:
        """The event's payload, read from disk the first time it is needed."""
        if event.payload is None:
            if self._reader is None:
                self._reader = SqliteDatabase(self.path, check_same_thread=False)
            row = self._reader.execute(
                "SELECT payload FROM events WHERE id=?", (event.id,)
            ).fetchone()
            event.payload = bytes(row[0]) if row else b""
        return event.payload

    # Writing --------------------------------------------------------------------------
    async def add(self, event: StoredEvent) -> int:
        """Store a new event durably; its id."""
        row = (
            event.account,
            event.region,
            event.function,
            event.qualifier,
            event.request_id,
            event.payload,
            event.accepted,
            event.attempts,
            event.due,
            event.tenant,
            self.node if self._shared is not None else None,
        )
        result: int = await self._submit("add", row)
        return result

    async def reschedule(self, event_id: int, attempts: int, due: float) -> None:
        await self._submit("reschedule", (attempts, due, event_id))

    async def remove(self, event_id: int) -> None:
        await self._submit("remove", (event_id,))

    def _submit(self, kind: str, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._requests.put((kind, args, future, loop))
        return future

    def close(self) -> None:
        self._requests.put(_STOP)
        self._writer.join(10)
        if self._reader is not None:
            self._reader.close()

    def _write_forever(self) -> None:
        # A 202 means the event is on disk: SQLite fsyncs each commit (synchronous=FULL).
        db = self._shared or SqliteDatabase(self.path, durable=True, check_same_thread=False)
        try:
            while True:
                batch = [self._requests.get()]
                while not self._requests.empty() and len(batch) < 5000:
                    batch.append(self._requests.get())
                stop = any(item is _STOP for item in batch)
                work = [item for item in batch if item is not _STOP]
                if work:
                    self._apply(db, work)
                if stop:
                    return
        finally:
            db.close()

    @staticmethod
    def _apply(db: Database, work: list[Any]) -> None:
        results: list[Any] = []
        try:
            with db.transaction() as tx:
                for kind, args, _, _ in work:
                    results.append(_write(tx, kind, args))
        except Exception as error:
            for _, _, future, loop in work:
                loop.call_soon_threadsafe(_fail, future, error)
            return
        for (_, _, future, loop), result in zip(work, results, strict=True):
            loop.call_soon_threadsafe(_resolve, future, result)


def _write(tx: Executor, kind: str, args: tuple[Any, ...]) -> int | None:
    if kind == "add":
        row = tx.execute(
            "INSERT INTO events (account, region, function, qualifier, request_id, "
            "payload, accepted, attempts, due, tenant, owner) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            args,
        ).fetchall()
        return int(row[0][0])
    if kind == "reschedule":
        tx.execute("UPDATE events SET attempts=?, due=? WHERE id=?", args)
    else:
        tx.execute("DELETE FROM events WHERE id=?", args)
    return None


def _resolve(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future[Any], error: Exception) -> None:
    if not future.done():
        future.set_exception(error)
