"""Versioned schemas: each store names its component and lists its migrations, in order;
`schema_version` records how far each component of a database has come.

A store opening its database calls `ensure`: a component the database lacks is created
(every migration, in one transaction); one at an older version is brought up to date on
SQLite (a node's own files) and refused on PostgreSQL, where `lamina db upgrade` does it
once for every node (`upgrade`); one at a newer version than this Lamina knows is refused
(a node older than its database). On PostgreSQL the work is serialized across nodes by
an advisory lock, so nodes starting together create a component once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from lamina.store.database import Database, ddl

VERSIONS = """
CREATE TABLE IF NOT EXISTS schema_version (
    component TEXT PRIMARY KEY,
    version INTEGER NOT NULL
)
"""
LOCK_ID = 0x6C616D696E61  # the advisory lock of schema changes ("lamina")


class SchemaError(RuntimeError):
    """The database's schema does not match this Lamina (the message says what to do)."""


def _statements(text: str) -> list[str]:
    """The statements of a migration (its `--` comments left out: they may hold a `;`)."""
    text = re.sub(r"--[^\n]*", "", text)
    return [s.strip() for s in text.split(";") if s.strip()]


def version(db: Database, component: str) -> int:
    db.execute(ddl(VERSIONS, db.dialect))
    row = db.execute(
        "SELECT version FROM schema_version WHERE component=?", (component,)
    ).fetchone()
    return int(row[0]) if row else 0


def ensure(
    db: Database, component: str, migrations: Sequence[str], upgrade_now: bool | None = None
) -> int:
    """Bring `component` to len(migrations) (see the module's doc); its version."""
    target = len(migrations)
    current = version(db, component)
    if current == target:
        return current
    if current > target:
        raise SchemaError(
            f"the database's {component} schema is version {current}, newer than this "
            f"Lamina's ({target}): upgrade Lamina"
        )
    allowed = upgrade_now if upgrade_now is not None else (db.dialect == "sqlite" or current == 0)
    if not allowed:
        raise SchemaError(
            f"the database's {component} schema is version {current}, this Lamina needs "
            f"{target}: run `lamina db upgrade --database URL`"
        )
    with db.transaction() as tx:
        if db.dialect == "postgresql":
            tx.execute("SELECT pg_advisory_xact_lock(?)", (LOCK_ID,))
        row = tx.execute(
            "SELECT version FROM schema_version WHERE component=?", (component,)
        ).fetchone()
        current = int(row[0]) if row else 0
        for migration in migrations[current:]:
            for statement in _statements(migration):
                tx.execute(ddl(statement, db.dialect))
        tx.execute(
            "INSERT INTO schema_version (component, version) VALUES (?, ?) "
            "ON CONFLICT (component) DO UPDATE SET version=excluded.version",
            (component, target),
        )
    return target
