"""S3's durable state: buckets, object metadata, multipart uploads and their parts, and
the outbox of event notifications, in SQLite (`s3.db` under the data dir); object bytes
in files under `s3/objects/`.

An object's bytes are written to a file of their own (a new name for every write) before
the row that points at them is committed; the old file is removed after. So a `kill -9`
leaves every acknowledged object readable, and at worst a file no row points at, which
the next start removes. A notification is written to the outbox in the same transaction
as the change it reports: a change that is acknowledged is also reported, once the
server is up again.

Keys sort as S3 sorts them, by their UTF-8 bytes (SQLite's BINARY collation).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lamina.store.tables import connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    name TEXT PRIMARY KEY, account TEXT NOT NULL, region TEXT NOT NULL, record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL, key TEXT NOT NULL, record TEXT NOT NULL, PRIMARY KEY (bucket, key)
);
CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT PRIMARY KEY, bucket TEXT NOT NULL, key TEXT NOT NULL, record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS parts (
    upload_id TEXT NOT NULL, number INTEGER NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (upload_id, number)
);
CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, record TEXT NOT NULL);
"""

log = logging.getLogger("lamina.s3")

Outgoing = list[dict[str, Any]]  # notifications to write with a change


class ObjectStore:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "s3" / "objects"
        self.root.mkdir(parents=True, exist_ok=True)
        self._db = connect(data_dir / "s3.db")
        self._db.executescript(SCHEMA)
        self.on_outbox: list[Callable[[], None]] = []  # told when notifications are written

    async def start(self) -> None:
        """Before serving: the files a crash left behind go (off the loop)."""
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
        for (record,) in self._db.execute("SELECT record FROM objects"):
            kept.add(json.loads(record)["file"])
        for (record,) in self._db.execute("SELECT record FROM parts"):
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
    def buckets(self) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
        for name, account, region, record in self._db.execute(
            "SELECT name, account, region, record FROM buckets ORDER BY name"
        ).fetchall():
            yield name, account, region, json.loads(record)

    def put_bucket(self, name: str, account: str, region: str, record: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO buckets (name, account, region, record) VALUES (?, ?, ?, ?)",
            (name, account, region, json.dumps(record)),
        )

    def delete_bucket(self, name: str) -> None:
        self._db.execute("DELETE FROM buckets WHERE name=?", (name,))

    def bucket_is_empty(self, name: str) -> bool:
        row = self._db.execute("SELECT 1 FROM objects WHERE bucket=? LIMIT 1", (name,)).fetchone()
        return row is None

    # Objects ------------------------------------------------------------------------------
    def get_object(self, bucket: str, key: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT record FROM objects WHERE bucket=? AND key=?", (bucket, key)
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def put_object(
        self, bucket: str, key: str, record: dict[str, Any], outgoing: Outgoing
    ) -> dict[str, Any] | None:
        """Write the object's row (and its notifications) at once; the row it replaced."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            old = self.get_object(bucket, key)
            self._db.execute(
                "INSERT OR REPLACE INTO objects (bucket, key, record) VALUES (?, ?, ?)",
                (bucket, key, json.dumps(record)),
            )
            self._outbox(outgoing)
        return old

    def delete_object(self, bucket: str, key: str, outgoing: Outgoing) -> dict[str, Any] | None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            old = self.get_object(bucket, key)
            if old is not None:
                self._db.execute("DELETE FROM objects WHERE bucket=? AND key=?", (bucket, key))
                self._outbox(outgoing)
        return old

    def list_objects(
        self, bucket: str, prefix: str, after: str, limit: int
    ) -> list[tuple[str, dict[str, Any]]]:
        """Up to `limit` objects whose key starts with `prefix` and sorts after `after`."""
        bound = prefix if prefix > after else after
        query = "SELECT key, record FROM objects WHERE bucket=? AND key>=? "
        args: list[Any] = [bucket, bound]
        if after and bound == after:
            query = "SELECT key, record FROM objects WHERE bucket=? AND key>? "
        if prefix:
            query += "AND substr(key, 1, ?)=? "
            args += [len(prefix), prefix]
        query += "ORDER BY key LIMIT ?"
        args.append(limit)
        return [(k, json.loads(r)) for k, r in self._db.execute(query, args).fetchall()]

    # Multipart uploads --------------------------------------------------------------------
    def put_upload(self, upload_id: str, bucket: str, key: str, record: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO uploads (upload_id, bucket, key, record) VALUES (?, ?, ?, ?)",
            (upload_id, bucket, key, json.dumps(record)),
        )

    def get_upload(self, upload_id: str) -> tuple[str, str, dict[str, Any]] | None:
        row = self._db.execute(
            "SELECT bucket, key, record FROM uploads WHERE upload_id=?", (upload_id,)
        ).fetchone()
        return None if row is None else (row[0], row[1], json.loads(row[2]))

    def uploads(self, bucket: str) -> list[tuple[str, str, dict[str, Any]]]:
        rows = self._db.execute(
            "SELECT upload_id, key, record FROM uploads WHERE bucket=? ORDER BY key, upload_id",
            (bucket,),
        ).fetchall()
        return [(u, k, json.loads(r)) for u, k, r in rows]

    def put_part(self, upload_id: str, number: int, record: dict[str, Any]) -> str | None:
        """The part's row; the file of the part it replaced, if one."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            old = self._db.execute(
                "SELECT record FROM parts WHERE upload_id=? AND number=?", (upload_id, number)
            ).fetchone()
            self._db.execute(
                "INSERT OR REPLACE INTO parts (upload_id, number, record) VALUES (?, ?, ?)",
                (upload_id, number, json.dumps(record)),
            )
        return None if old is None else str(json.loads(old[0])["file"])

    def parts(self, upload_id: str) -> list[tuple[int, dict[str, Any]]]:
        rows = self._db.execute(
            "SELECT number, record FROM parts WHERE upload_id=? ORDER BY number", (upload_id,)
        ).fetchall()
        return [(n, json.loads(r)) for n, r in rows]

    def end_upload(self, upload_id: str) -> None:
        """Abort: the upload and its parts go (their files are the caller's to remove)."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM parts WHERE upload_id=?", (upload_id,))
            self._db.execute("DELETE FROM uploads WHERE upload_id=?", (upload_id,))

    def complete_upload(
        self, upload_id: str, bucket: str, key: str, record: dict[str, Any], outgoing: Outgoing
    ) -> dict[str, Any] | None:
        """The object replaces the upload in one transaction; the object it replaced."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            old = self.get_object(bucket, key)
            self._db.execute(
                "INSERT OR REPLACE INTO objects (bucket, key, record) VALUES (?, ?, ?)",
                (bucket, key, json.dumps(record)),
            )
            self._db.execute("DELETE FROM parts WHERE upload_id=?", (upload_id,))
            self._db.execute("DELETE FROM uploads WHERE upload_id=?", (upload_id,))
            self._outbox(outgoing)
        return old

    # The outbox ---------------------------------------------------------------------------
    def _outbox(self, outgoing: Outgoing) -> None:
        """Within the caller's transaction; the listeners hear of it at once (they act on
        the next turn of the loop, after the commit)."""
        if outgoing:
            self._db.executemany(
                "INSERT INTO outbox (record) VALUES (?)", [(json.dumps(o),) for o in outgoing]
            )
            for listener in self.on_outbox:
                listener()

    def pending(self, limit: int = 100) -> list[tuple[int, dict[str, Any]]]:
        rows = self._db.execute(
            "SELECT id, record FROM outbox ORDER BY id LIMIT ?", (limit,)
        ).fetchall()
        return [(i, json.loads(r)) for i, r in rows]

    def sent(self, ids: list[int]) -> None:
        self._db.executemany("DELETE FROM outbox WHERE id=?", [(i,) for i in ids])
