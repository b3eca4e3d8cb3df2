"""Durable queues: queue records, messages and FIFO deduplication ids.

Its own database file (`queues.db` under the data dir; the cluster's PostgreSQL in cluster
mode), used from the event loop only, WAL journal: an accepted message survives a
`kill -9` of the server.
The queues (queues.py) keep the working state in memory and write every change through;
this module only stores and loads rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lamina.store import schema
from lamina.store.database import Database
from lamina.store.tables import NamedResources, named_resources_ddl, open_database

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    queue_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    message TEXT NOT NULL,
    visible REAL NOT NULL,
    receives INTEGER NOT NULL,
    first_receive REAL,
    receipt TEXT,
    PRIMARY KEY (queue_id, seq)
);
CREATE TABLE IF NOT EXISTS dedup (
    queue_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    message_id TEXT NOT NULL,
    sequence TEXT,
    expires REAL NOT NULL,
    PRIMARY KEY (queue_id, key)
);
"""
# Receives read a queue's messages in the order they become visible, a window at a time.
BY_VISIBLE = "CREATE INDEX IF NOT EXISTS messages_by_visible ON messages (queue_id, visible, seq);"
MIGRATIONS = [named_resources_ddl("queues") + SCHEMA, BY_VISIBLE]


@dataclass
class StoredMessage:
    seq: int
    message: dict[str, Any]  # the immutable part: id, body, attributes, sent, group, ...
    visible: float
    receives: int
    first_receive: float | None
    receipt: str | None


class QueueStore:
    def __init__(self, data_dir: Path, db: Database | None = None) -> None:
        self._db = open_database(data_dir, "queues.db", db)
        schema.ensure(self._db, "sqs", MIGRATIONS)
        self.queues = NamedResources(self._db, "queues")

    def close(self) -> None:
        self._db.close()

    # Cluster mode ------------------------------------------------------------------------
    @property
    def shared(self) -> bool:
        return self._db.dialect != "sqlite"

    def notify(self, channel: str, payload: str) -> None:
        self._db.notify(channel, payload)

    def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        self._db.listen(channel, callback)

    def claim(
        self,
        queue_id: int,
        rows: Iterable[tuple[int, int, float, int, float | None, str | None]],
    ) -> set[int]:
        """(seq, receives before, visible, receives, first_receive, receipt): each receive
        written only if the message's receive count is still the one before; the seqs
        written."""
        won = set()
        with self._db.transaction() as tx:
            for seq, before, visible, receives, first, receipt in rows:
                done = tx.execute(
                    "UPDATE messages SET visible=?, receives=?, first_receive=?, receipt=? "
                    "WHERE queue_id=? AND seq=? AND receives=?",
                    (visible, receives, first, receipt, queue_id, seq, before),
                )
                if done.rowcount:
                    won.add(seq)
        return won

    # Queues -------------------------------------------------------------------------------
    def delete_queue(self, queue_id: int) -> None:
        with self._db.transaction() as tx:
            self.queues.delete(queue_id, tx)
            tx.execute("DELETE FROM messages WHERE queue_id=?", (queue_id,))
            tx.execute("DELETE FROM dedup WHERE queue_id=?", (queue_id,))

    # Messages --------------------------------------------------------------------------
    def messages(self, queue_id: int) -> Iterator[StoredMessage]:
        for row in self._db.execute(
            "SELECT seq, message, visible, receives, first_receive, receipt FROM messages "
            "WHERE queue_id=? ORDER BY seq",
            (queue_id,),
        ):
            yield StoredMessage(row[0], json.loads(row[1]), row[2], row[3], row[4], row[5])

    def insert_messages(self, queue_id: int, messages: Iterable[StoredMessage]) -> None:
        rows = [
            (
                queue_id,
                m.seq,
                json.dumps(m.message),
                m.visible,
                m.receives,
                m.first_receive,
                m.receipt,
            )
            for m in messages
        ]
        with self._db.transaction() as tx:
            tx.executemany(
                "INSERT INTO messages (queue_id, seq, message, visible, receives, first_receive, "
                "receipt) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def update_states(
        self, queue_id: int, states: Iterable[tuple[int, float, int, float | None, str | None]]
    ) -> None:
        """(seq, visible, receives, first_receive, receipt) for messages that changed."""
        rows = [(v, r, f, h, queue_id, s) for s, v, r, f, h in states]
        with self._db.transaction() as tx:
            tx.executemany(
                "UPDATE messages SET visible=?, receives=?, first_receive=?, receipt=? "
                "WHERE queue_id=? AND seq=?",
                rows,
            )

    def delete_messages(self, queue_id: int, seqs: Iterable[int]) -> None:
        rows = [(queue_id, seq) for seq in seqs]
        with self._db.transaction() as tx:
            tx.executemany("DELETE FROM messages WHERE queue_id=? AND seq=?", rows)

    def move_message(self, from_queue: int, seq: int, to_queue: int, moved: StoredMessage) -> None:
        """Redrive: one transaction, so a crash leaves the message in exactly one queue."""
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM messages WHERE queue_id=? AND seq=?", (from_queue, seq))
            tx.execute(
                "INSERT INTO messages (queue_id, seq, message, visible, receives, first_receive, "
                "receipt) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    to_queue,
                    moved.seq,
                    json.dumps(moved.message),
                    moved.visible,
                    moved.receives,
                    moved.first_receive,
                    moved.receipt,
                ),
            )

    def purge(self, queue_id: int) -> None:
        self._db.execute("DELETE FROM messages WHERE queue_id=?", (queue_id,))

    # Deduplication ---------------------------------------------------------------------
    def dedup_entries(
        self, queue_id: int, now: float
    ) -> Iterator[tuple[str, str, str | None, float]]:
        self._db.execute("DELETE FROM dedup WHERE queue_id=? AND expires<=?", (queue_id, now))
        for row in self._db.execute(
            "SELECT key, message_id, sequence, expires FROM dedup WHERE queue_id=?", (queue_id,)
        ):
            yield row[0], row[1], row[2], row[3]

    def put_dedup(
        self, queue_id: int, key: str, message_id: str, sequence: str | None, expires: float
    ) -> None:
        self._db.execute(
            "INSERT INTO dedup (queue_id, key, message_id, sequence, expires) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (queue_id, key) DO UPDATE SET "
            "message_id=excluded.message_id, sequence=excluded.sequence, "
            "expires=excluded.expires",
            (queue_id, key, message_id, sequence, expires),
        )

    def drop_dedup(self, queue_id: int, before: float) -> None:
        self._db.execute("DELETE FROM dedup WHERE queue_id=? AND expires<=?", (queue_id, before))
