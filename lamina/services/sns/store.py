"""Durable topics: topic records, subscriptions and deliveries still to make (`sns.db`
under the data dir, used from the event loop only, WAL; the cluster's PostgreSQL in
cluster mode).

A delivery that could not be handed over at once (an HTTP endpoint, a retry after a
failure) is a row of `outbox` until it succeeds or runs out of attempts, so an accepted
message survives a `kill -9`: after a restart its deliveries go on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lamina.store import schema
from lamina.store.database import Database
from lamina.store.tables import NamedResources, named_resources_ddl, open_database

SCHEMA = """
CREATE TABLE IF NOT EXISTS subscriptions (
    arn TEXT PRIMARY KEY,
    topic_arn TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription_arn TEXT NOT NULL,
    message TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    due REAL NOT NULL
);
"""
CHANNEL = "lamina_sns"  # payload: the node that changed topics or subscriptions
MIGRATIONS = [
    named_resources_ddl("topics") + SCHEMA,
    "ALTER TABLE subscriptions ADD COLUMN seq INTEGER",  # the order they were made in
]


@dataclass(slots=True)
class Pending:
    """A delivery to make: the message (as published) to one subscription."""

    id: int
    subscription_arn: str
    message: dict[str, Any]
    attempts: int  # failed so far
    due: float  # wall-clock seconds


class TopicStore:
    def __init__(self, data_dir: Path, db: Database | None = None) -> None:
        self._db = open_database(data_dir, "sns.db", db)
        schema.ensure(self._db, "sns", MIGRATIONS)
        self.topics = NamedResources(self._db, "topics")

    def close(self) -> None:
        self._db.close()

    # A cluster's nodes: a change announced, the others reload -----------------------------
    def notify(self, payload: str) -> None:
        self._db.notify(CHANNEL, payload)

    def listen(self, callback: Callable[[str], None]) -> None:
        self._db.listen(CHANNEL, callback)

    def delete_topic(self, topic_id: int, topic_arn: str) -> None:
        with self._db.transaction() as tx:
            self.topics.delete(topic_id, tx)
            tx.execute("DELETE FROM subscriptions WHERE topic_arn=?", (topic_arn,))

    # Subscriptions -----------------------------------------------------------------------
    def subscriptions(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        rows = self._db.execute(
            "SELECT arn, topic_arn, record FROM subscriptions ORDER BY seq, arn"
        )
        for arn, topic_arn, record in rows.fetchall():
            yield arn, topic_arn, json.loads(record)

    def put_subscription(self, arn: str, topic_arn: str, record: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO subscriptions (arn, topic_arn, record, seq) VALUES (?, ?, ?, "
            "(SELECT COALESCE(MAX(seq), 0) + 1 FROM subscriptions)) ON CONFLICT (arn) "
            "DO UPDATE SET topic_arn=excluded.topic_arn, record=excluded.record",
            (arn, topic_arn, json.dumps(record)),
        )

    def delete_subscription(self, arn: str) -> None:
        self._db.execute("DELETE FROM subscriptions WHERE arn=?", (arn,))

    # Deliveries ----------------------------------------------------------------------------
    def add_pending(self, rows: list[tuple[str, dict[str, Any], float]]) -> list[int]:
        """(subscription arn, message, due) each; their ids, in one transaction."""
        ids: list[int] = []
        with self._db.transaction() as tx:
            for arn, message, due in rows:
                found = tx.execute(
                    "INSERT INTO outbox (subscription_arn, message, attempts, due) "
                    "VALUES (?, ?, 0, ?) RETURNING id",
                    (arn, json.dumps(message), due),
                ).fetchall()
                ids.append(int(found[0][0]))
        return ids

    def pending(self) -> list[Pending]:
        rows = self._db.execute(
            "SELECT id, subscription_arn, message, attempts, due FROM outbox ORDER BY id"
        )
        return [Pending(r[0], r[1], json.loads(r[2]), r[3], r[4]) for r in rows.fetchall()]

    def reschedule(self, pending_id: int, attempts: int, due: float) -> None:
        self._db.execute(
            "UPDATE outbox SET attempts=?, due=? WHERE id=?", (attempts, due, pending_id)
        )

    def take(self, pending: Pending, lease_until: float) -> bool:
        """Claim a due delivery (its due time moved to `lease_until`, compared and set): of
        the nodes sharing the database, one makes it; if that one dies, it comes due again
        when the lease ends."""
        found = self._db.execute(
            "UPDATE outbox SET due=? WHERE id=? AND due=?", (lease_until, pending.id, pending.due)
        )
        if found.rowcount == 1:
            pending.due = lease_until
            return True
        return False

    def done(self, pending_id: int) -> None:
        self._db.execute("DELETE FROM outbox WHERE id=?", (pending_id,))
