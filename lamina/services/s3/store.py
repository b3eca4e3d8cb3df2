"""S3's durable state: buckets, object metadata, multipart uploads and their parts, and
the outbox of event notifications, in `s3.db` under the data dir (the cluster's
PostgreSQL in cluster mode); object bytes in files under `s3/objects/` (a directory the
nodes of a cluster must share).

An object's bytes are written to a file of their own (a new name for every write) before
the row that points at them is committed; the old file is removed after. So a `kill -9`
leaves every acknowledged object readable, and at worst a file no row points at, which
the next start removes. A notification is written to the outbox in the same transaction
as the change it reports: a change that is acknowledged is also reported, once the
server is up again.

Keys sort as S3 sorts them, by their UTF-8 bytes (SQLite's BINARY collation, PostgreSQL's
"C"). The notifier claims outbox rows for a while before it delivers them and removes
them after: a node that dies mid-delivery leaves its claims to expire, and another node
(or the same one, restarted) delivers them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lamina.store import schema
from lamina.store.database import Database, Executor
from lamina.store.tables import open_database

SCHEMA = """
CREATE TABLE IF NOT EXISTS s3_buckets (
    name TEXT PRIMARY KEY, account TEXT NOT NULL, region TEXT NOT NULL, record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS s3_objects (
    bucket TEXT NOT NULL, key TEXT NOT NULL, record TEXT NOT NULL, PRIMARY KEY (bucket, key)
);
CREATE TABLE IF NOT EXISTS s3_uploads (
    upload_id TEXT PRIMARY KEY, bucket TEXT NOT NULL, key TEXT NOT NULL, record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS s3_parts (
    upload_id TEXT NOT NULL, number INTEGER NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (upload_id, number)
);
CREATE TABLE IF NOT EXISTS s3_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, record TEXT NOT NULL, claimed REAL NOT NULL
);
"""
MIGRATIONS = [SCHEMA]
CLAIM_S = 60.0  # how long a claimed notification waits before another delivers it

log = logging.getLogger("lamina.s3")

Outgoing = list[dict[str, Any]]  # notifications to write with a change


class ObjectStore:
    def __init__(
        self, data_dir: Path, db: Database | None = None, objects: Path | None = None
    ) -> None:
        self.root = objects or data_dir / "s3" / "objects"
        self.root.mkdir(parents=True, exist_ok=True)
        self._db = open_database(data_dir, "s3.db", db)
        schema.ensure(self._db, "s3", MIGRATIONS)
        self.shared = self._db.dialect != "sqlite"  # other nodes write it too
        # keys compare by their bytes on both engines
        self._c = ' COLLATE "C"' if self._db.dialect == "postgresql" else ""
        self.on_outbox: list[Callable[[], None]] = []  # told when notifications are written

    async def start(self) -> None:
        """Before serving: the files a crash left behind go (off the loop); on a node's own
        database, the notifications it had claimed are free again."""
        if not self.shared:
            self._db.execute("UPDATE s3_outbox SET claimed=0 WHERE claimed>0")
            removed = await asyncio.to_thread(self._sweep, self._kept())
            if removed:
                log.info("removed %d object files no object or part points at", removed)

    def close(self) -> None:
        self._db.close()

    # Files --------------------------------------------------------------------------------
    def new_file(self) -> Path:
        """A fresh path for an object's (or a part's) bytes."""
        name = uuid.uuid4().hex
        folder = self.root / name[:2]
        folder.mkdir(exist_ok=True)
        return folder / name

    def write_file(self, data: bytes | memoryview) -> str:
        """Blocking (run it in a thread): the bytes in a new file; its name."""
        path = self.new_file()
        partial = path.with_suffix(".part")
        with open(partial, "wb") as out:
            out.write(data)
        os.replace(partial, path)
        return path.name

    def join_files(self, names: list[str]) -> str:
        """Blocking: a new file of the named files one after another (multipart)."""
        path = self.new_file()
        partial = path.with_suffix(".part")
        with open(partial, "wb") as out:
            for name in names:
                with open(self.path(name), "rb") as piece:
                    shutil.copyfileobj(piece, out, 1 << 20)
        os.replace(partial, path)
        return path.name

    def copy_file(self, name: str) -> str:
        """Blocking: a copy of a file under a new name (CopyObject)."""
        path = self.new_file()
        partial = path.with_suffix(".part")
        shutil.copyfile(self.path(name), partial)
        os.replace(partial, path)
        return path.name

    def read_file(self, name: str, start: int = 0, length: int | None = None) -> bytes:
        """Blocking: `length` bytes (all, if None) from `start`."""
        with open(self.path(name), "rb") as source:
            source.seek(start)
            return source.read() if length is None else source.read(length)

    def path(self, name: str) -> Path:
        return self.root / name[:2] / name

    def remove_files(self, names: list[str]) -> None:
        for name in names:
            self.path(name).unlink(missing_ok=True)

    def _kept(self) -> set[str]:
        kept: set[str] = set()
        for (record,) in self._db.execute("SELECT record FROM s3_objects"):
            kept.add(json.loads(record)["file"])
        for (record,) in self._db.execute("SELECT record FROM s3_parts"):
            kept.add(json.loads(record)["file"])
        return kept

    def _sweep(self, kept: set[str]) -> int:
        """Blocking: remove the files not in `kept` (a crash left them); how many."""
        removed = 0
        for folder in self.root.iterdir():
            for path in folder.iterdir():
                if path.name.split(".")[0] not in kept or path.suffix == ".part":
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed

    # Buckets ------------------------------------------------------------------------------
    def bucket(self, name: str) -> tuple[str, str, dict[str, Any]] | None:
        """(account, region, record) of the bucket `name`."""
        row = self._db.execute(
            "SELECT account, region, record FROM s3_buckets WHERE name=?", (name,)
        ).fetchone()
        return None if row is None else (row[0], row[1], json.loads(row[2]))

    def buckets_of(self, account: str) -> list[tuple[str, str, dict[str, Any]]]:
        rows = self._db.execute(
            f"SELECT name, region, record FROM s3_buckets WHERE account=? ORDER BY name{self._c}",
            (account,),
        ).fetchall()
        return [(name, region, json.loads(record)) for name, region, record in rows]

    def insert_bucket(self, name: str, account: str, region: str, record: dict[str, Any]) -> bool:
        """False when the name is taken (by anyone)."""
        rows = self._db.execute(
            "INSERT INTO s3_buckets (name, account, region, record) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (name) DO NOTHING",
            (name, account, region, json.dumps(record)),
        )
        return rows.rowcount == 1

    def update_bucket(self, name: str, record: dict[str, Any]) -> None:
        self._db.execute("UPDATE s3_buckets SET record=? WHERE name=?", (json.dumps(record), name))

    def delete_bucket(self, name: str) -> bool:
        """False when the bucket holds objects (it stays)."""
        with self._db.transaction() as tx:
            if tx.execute("SELECT 1 FROM s3_objects WHERE bucket=? LIMIT 1", (name,)).fetchone():
                return False
            tx.execute("DELETE FROM s3_buckets WHERE name=?", (name,))
        return True

    # Objects ------------------------------------------------------------------------------
    def get_object(
        self, bucket: str, key: str, tx: Executor | None = None
    ) -> dict[str, Any] | None:
        row = (
            (tx or self._db)
            .execute("SELECT record FROM s3_objects WHERE bucket=? AND key=?", (bucket, key))
            .fetchone()
        )
        return None if row is None else dict(json.loads(row[0]))

    def _put(self, tx: Executor, bucket: str, key: str, record: dict[str, Any]) -> None:
        tx.execute(
            "INSERT INTO s3_objects (bucket, key, record) VALUES (?, ?, ?) "
            "ON CONFLICT (bucket, key) DO UPDATE SET record=excluded.record",
            (bucket, key, json.dumps(record)),
        )

    def put_object(
        self, bucket: str, key: str, record: dict[str, Any], outgoing: Outgoing
    ) -> dict[str, Any] | None:
        """Write the object's row (and its notifications) at once; the row it replaced."""
        with self._db.transaction() as tx:
            old = self.get_object(bucket, key, tx)
            self._put(tx, bucket, key, record)
            self._outbox(tx, outgoing)
        self._told(outgoing)
        return old

    def delete_object(self, bucket: str, key: str, outgoing: Outgoing) -> dict[str, Any] | None:
        with self._db.transaction() as tx:
            old = self.get_object(bucket, key, tx)
            if old is not None:
                tx.execute("DELETE FROM s3_objects WHERE bucket=? AND key=?", (bucket, key))
                self._outbox(tx, outgoing)
        if old is not None:
            self._told(outgoing)
        return old

    def list_objects(
        self, bucket: str, prefix: str, after: str, limit: int
    ) -> list[tuple[str, dict[str, Any]]]:
        """Up to `limit` objects whose key starts with `prefix` and sorts after `after`."""
        c = self._c
        if after and after >= prefix:
            query = f"SELECT key, record FROM s3_objects WHERE bucket=? AND key{c}>?{c} "
            args: list[Any] = [bucket, after]
        else:
            query = f"SELECT key, record FROM s3_objects WHERE bucket=? AND key{c}>=?{c} "
            args = [bucket, prefix]
        if prefix:
            query += "AND substr(key, 1, ?)=? "
            args += [len(prefix), prefix]
        query += f"ORDER BY key{c} LIMIT ?"
        args.append(max(0, limit))
        return [(k, json.loads(r)) for k, r in self._db.execute(query, args).fetchall()]

    # Multipart uploads --------------------------------------------------------------------
    def put_upload(self, upload_id: str, bucket: str, key: str, record: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO s3_uploads (upload_id, bucket, key, record) VALUES (?, ?, ?, ?)",
            (upload_id, bucket, key, json.dumps(record)),
        )

    def get_upload(self, upload_id: str) -> tuple[str, str, dict[str, Any]] | None:
        row = self._db.execute(
            "SELECT bucket, key, record FROM s3_uploads WHERE upload_id=?", (upload_id,)
        ).fetchone()
        return None if row is None else (row[0], row[1], json.loads(row[2]))

    def uploads(self, bucket: str) -> list[tuple[str, str, dict[str, Any]]]:
        rows = self._db.execute(
            f"SELECT upload_id, key, record FROM s3_uploads WHERE bucket=? "
            f"ORDER BY key{self._c}, upload_id",
            (bucket,),
        ).fetchall()
        return [(u, k, json.loads(r)) for u, k, r in rows]

    def put_part(self, upload_id: str, number: int, record: dict[str, Any]) -> str | None:
        """The part's row; the file of the part it replaced, if one."""
        with self._db.transaction() as tx:
            old = tx.execute(
                "SELECT record FROM s3_parts WHERE upload_id=? AND number=?", (upload_id, number)
            ).fetchone()
            tx.execute(
                "INSERT INTO s3_parts (upload_id, number, record) VALUES (?, ?, ?) "
                "ON CONFLICT (upload_id, number) DO UPDATE SET record=excluded.record",
                (upload_id, number, json.dumps(record)),
            )
        return None if old is None else str(json.loads(old[0])["file"])

    def parts(self, upload_id: str) -> list[tuple[int, dict[str, Any]]]:
        rows = self._db.execute(
            "SELECT number, record FROM s3_parts WHERE upload_id=? ORDER BY number", (upload_id,)
        ).fetchall()
        return [(n, json.loads(r)) for n, r in rows]

    def end_upload(self, upload_id: str) -> None:
        """Abort: the upload and its parts go (their files are the caller's to remove)."""
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM s3_parts WHERE upload_id=?", (upload_id,))
            tx.execute("DELETE FROM s3_uploads WHERE upload_id=?", (upload_id,))

    def complete_upload(
        self, upload_id: str, bucket: str, key: str, record: dict[str, Any], outgoing: Outgoing
    ) -> dict[str, Any] | None:
        """The object replaces the upload in one transaction; the object it replaced."""
        with self._db.transaction() as tx:
            old = self.get_object(bucket, key, tx)
            self._put(tx, bucket, key, record)
            tx.execute("DELETE FROM s3_parts WHERE upload_id=?", (upload_id,))
            tx.execute("DELETE FROM s3_uploads WHERE upload_id=?", (upload_id,))
            self._outbox(tx, outgoing)
        self._told(outgoing)
        return old

    # The outbox ---------------------------------------------------------------------------
    def _outbox(self, tx: Executor, outgoing: Outgoing) -> None:
        if outgoing:
            tx.executemany(
                "INSERT INTO s3_outbox (record, claimed) VALUES (?, 0)",
                [(json.dumps(o),) for o in outgoing],
            )

    def _told(self, outgoing: Outgoing) -> None:
        if outgoing:
            for listener in self.on_outbox:
                listener()

    def claim(self, now: float, limit: int = 100) -> list[tuple[int, dict[str, Any]]]:
        """Up to `limit` notifications nobody is delivering, oldest first, claimed for
        CLAIM_S seconds."""
        with self._db.transaction() as tx:
            rows = tx.execute(
                "SELECT id, record FROM s3_outbox WHERE claimed<? ORDER BY id LIMIT ?"
                + self._db.skip_locked,
                (now, limit),
            ).fetchall()
            if rows:
                tx.executemany(
                    "UPDATE s3_outbox SET claimed=? WHERE id=?",
                    [(now + CLAIM_S, row[0]) for row in rows],
                )
        return [(i, json.loads(r)) for i, r in rows]

    def sent(self, ids: list[int]) -> None:
        self._db.executemany("DELETE FROM s3_outbox WHERE id=?", [(i,) for i in ids])
