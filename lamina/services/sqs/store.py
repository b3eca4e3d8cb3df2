"""Durable queues: queue records, messages and FIFO deduplication ids.

Its own database file (`queues.db` under the data dir; the cluster's PostgreSQL in cluster
mode), used from the event loop only, WAL journal: an accepted message survives a
`kill -9` of the server.
The queues (queues.py) keep in memory only a window of each queue's messages (window.py)
and write every change through; this module stores rows, reads windows of them in the
order they become visible, counts them, and checks FIFO deduplication ids in the same
transaction as the message's insert (the nodes of a cluster share the 5-minute window).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lamina.store import schema
from lamina.store.database import Database, Executor
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


COLUMNS = "seq, message, visible, receives, first_receive, receipt"
INSERT = (
    "INSERT INTO messages (queue_id, seq, message, visible, receives, first_receive, receipt) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (queue_id, seq) DO NOTHING"
)


class SeqTaken(Exception):
    """Another node stored a message of the queue under this number at the same moment
    (numbers are microseconds of the sending node's clock): nothing was written."""


def _insert(tx: Executor, queue_id: int, message: StoredMessage) -> None:
    if not tx.execute(INSERT, _row(queue_id, message)).rowcount:
        raise SeqTaken(message.seq)  # rolls the transaction back


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
    def messages(self, queue_id: int, upto: int | None = None) -> Iterator[StoredMessage]:
        """The queue's messages in the order they were sent (those up to seq `upto`)."""
        if upto is None:
            rows = self._db.execute(
                f"SELECT {COLUMNS} FROM messages WHERE queue_id=? ORDER BY seq", (queue_id,)
            )
        else:
            rows = self._db.execute(
                f"SELECT {COLUMNS} FROM messages WHERE queue_id=? AND seq<=? ORDER BY seq",
                (queue_id, upto),
            )
        for row in rows:
            yield _stored(row)

    def sent_after(self, queue_id: int, seq: int, limit: int) -> list[StoredMessage]:
        """Up to `limit` messages sent after the message `seq`, in the order they were sent."""
        rows = self._db.execute(
            f"SELECT {COLUMNS} FROM messages WHERE queue_id=? AND seq>? ORDER BY seq LIMIT ?",
            (queue_id, seq, limit),
        )
        return [_stored(row) for row in rows.fetchall()]

    def last_seq(self, queue_id: int) -> int:
        row = self._db.execute(
            "SELECT max(seq) FROM messages WHERE queue_id=?", (queue_id,)
        ).fetchone()
        return int(row[0] or 0)

    def window(
        self, queue_id: int, after: tuple[float, int] | None, limit: int
    ) -> list[StoredMessage]:
        """Up to `limit` messages in the order they become visible (then sent), those
        after the key (visible, seq) `after` only."""
        if after is None:
            rows = self._db.execute(
                f"SELECT {COLUMNS} FROM messages WHERE queue_id=? ORDER BY visible, seq LIMIT ?",
                (queue_id, limit),
            )
        else:
            visible, seq = after
            rows = self._db.execute(
                f"SELECT {COLUMNS} FROM messages WHERE queue_id=? AND visible>=? "
                "AND (visible>? OR seq>?) ORDER BY visible, seq LIMIT ?",
                (queue_id, visible, visible, seq, limit),
            )
        return [_stored(row) for row in rows.fetchall()]

    def message(self, queue_id: int, seq: int) -> StoredMessage | None:
        row = self._db.execute(
            f"SELECT {COLUMNS} FROM messages WHERE queue_id=? AND seq=?", (queue_id, seq)
        ).fetchone()
        return None if row is None else _stored(row)

    def states(
        self, queue_id: int, seqs: list[int]
    ) -> dict[int, tuple[float, int, float | None, str | None]]:
        """(visible, receives, first_receive, receipt) of those of `seqs` still stored."""
        found = {}
        for start in range(0, len(seqs), 500):
            part = seqs[start : start + 500]
            marks = ",".join("?" * len(part))
            for row in self._db.execute(
                "SELECT seq, visible, receives, first_receive, receipt FROM messages "
                f"WHERE queue_id=? AND seq IN ({marks})",
                (queue_id, *part),
            ):
                found[row[0]] = (row[1], row[2], row[3], row[4])
        return found

    def counts(self, queue_id: int, now: float) -> tuple[int, int, int]:
        """(visible, in flight, delayed) now: the first from the index alone."""
        visible = self._db.execute(
            "SELECT count(*) FROM messages WHERE queue_id=? AND visible<=?", (queue_id, now)
        ).fetchone()[0]
        hidden = delayed = 0
        for received, count in self._db.execute(
            "SELECT receives>0, count(*) FROM messages WHERE queue_id=? AND visible>? "
            "GROUP BY receives>0",
            (queue_id, now),
        ):
            if received:
                hidden = count
            else:
                delayed = count
        return int(visible), int(hidden), int(delayed)

    def insert_messages(self, queue_id: int, messages: Iterable[StoredMessage]) -> None:
        """Messages numbered by one writer (a backlog written whole)."""
        rows = [_row(queue_id, m) for m in messages]
        with self._db.transaction() as tx:
            tx.executemany(INSERT, rows)

    def insert_message(self, queue_id: int, message: StoredMessage) -> None:
        """Raises SeqTaken when the message's number is another's."""
        with self._db.transaction() as tx:
            _insert(tx, queue_id, message)

    def insert_unique(
        self, queue_id: int, message: StoredMessage, key: str, expires: float, now: float
    ) -> tuple[str, str | None] | None:
        """A FIFO message, unless its deduplication `key` was taken by another message
        that has not expired: then (that message's id, its sequence number) and nothing
        is written. One transaction, so two nodes sending at once cannot both win."""
        part = message.message
        with self._db.transaction() as tx:
            taken = tx.execute(
                "INSERT INTO dedup (queue_id, key, message_id, sequence, expires) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (queue_id, key) DO UPDATE SET "
                "message_id=excluded.message_id, sequence=excluded.sequence, "
                "expires=excluded.expires WHERE dedup.expires<=?",
                (queue_id, key, part["id"], part["sequence"], expires, now),
            )
            if not taken.rowcount:
                row = tx.execute(
                    "SELECT message_id, sequence FROM dedup WHERE queue_id=? AND key=?",
                    (queue_id, key),
                ).fetchone()
                return str(row[0]), row[1]
            _insert(tx, queue_id, message)
        return None

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
        """Redrive: one transaction, so a crash leaves the message in exactly one queue.
        Raises SeqTaken when `moved`'s number is another's in `to_queue`."""
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM messages WHERE queue_id=? AND seq=?", (from_queue, seq))
            _insert(tx, to_queue, moved)

    def purge(self, queue_id: int) -> None:
        self._db.execute("DELETE FROM messages WHERE queue_id=?", (queue_id,))

    # Deduplication ---------------------------------------------------------------------
    def drop_dedup(self, queue_id: int, before: float) -> None:
        self._db.execute("DELETE FROM dedup WHERE queue_id=? AND expires<=?", (queue_id, before))


def _stored(row: Any) -> StoredMessage:
    return StoredMessage(row[0], json.loads(row[1]), row[2], row[3], row[4], row[5])


def _row(queue_id: int, m: StoredMessage) -> tuple[Any, ...]:
    return (
        queue_id,
        m.seq,
        json.dumps(m.message),
        m.visible,
        m.receives,
        m.first_receive,
        m.receipt,
    )
