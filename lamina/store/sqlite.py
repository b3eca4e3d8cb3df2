"""The function store: function records in the database (a SQLite file, or PostgreSQL in
cluster mode), code blobs content-addressed on disk (and, in cluster mode, in the database
too: a node fetches code it lacks from there).

Records are keyed by (account, region, name) so several accounts and regions share one
store. Reads on the invoke path come from a cache of parsed records owned here: every
write through this class drops the written key from it, and `invalidate(key)` is the hook
for writes this process did not make (another node of a cluster, told by a notification).
What `function_view` returns is shared with every other reader: it is never modified;
`get_function` returns a copy of one's own to change and write back. Per-account usage
(function count, code size) is kept as running totals, so GetAccountSettings reads no
record. Code lives under `code/<sha256-hex>.zip` with its extracted tree beside it in
`code/<sha256-hex>/`; both are written to a temporary name and renamed, so a crash never
leaves a half-written blob behind a committed record.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lamina.keys import FunctionKey
from lamina.store import schema
from lamina.store.database import Database, SqliteDatabase

SCHEMA = """
CREATE TABLE IF NOT EXISTS functions (
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    name TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (account, region, name)
);
CREATE TABLE IF NOT EXISTS code_blobs (
    digest TEXT PRIMARY KEY,
    blob BLOB NOT NULL
);
"""
# When a blob was last added (or found already there by an upload): one no function uses
# is deleted only once it is older than a grace (an upload's record may be on its way).
BLOB_ADDED = "ALTER TABLE code_blobs ADD COLUMN added REAL NOT NULL DEFAULT 0"
MIGRATIONS = [SCHEMA, BLOB_ADDED]
CHANNEL = "lamina_functions"  # told "<node> account/region/name" of each function written


CACHE_LIMIT = 8192  # parsed records kept; the oldest cached goes first


class FunctionStore:
    def __init__(self, data_dir: Path, db: Database | None = None) -> None:
        self.data_dir = data_dir
        self.code_root = data_dir / "code"
        self.code_root.mkdir(parents=True, exist_ok=True)
        self._remove_leftovers()
        # SQLite: one connection, used from the event loop only; WAL survives a kill -9.
        self._db: Database = db or SqliteDatabase(data_dir / "lamina.db")
        self.shared = self._db.dialect != "sqlite"  # other nodes write the same records
        schema.ensure(self._db, "functions", MIGRATIONS)
        self._fetching = threading.Lock()
        self.node = uuid.uuid4().hex[:12]  # this store's own notifications are not news
        self._cache: dict[FunctionKey, dict[str, Any]] = {}
        # Told of each function record another node wrote (None: any may have changed).
        self.on_remote_write: list[Callable[[FunctionKey | None], None]] = []
        # (account, region) → [function count, total code size]; loaded when first asked.
        self._usage: dict[tuple[str, str], list[int]] | None = None
        self._sizes: dict[FunctionKey, int] = {}
        # Code blobs referenced by records ($LATEST and every version): digest → count, and
        # the unzipped size of each; loaded when first needed. Told of each digest no
        # record uses any more (Functions removes its code).
        self._refs: dict[str, int] | None = None
        self._unzipped: dict[str, int] = {}
        self.on_unreferenced: list[Callable[[str], None]] = []

    def close(self) -> None:
        self._db.close()

    # Functions -------------------------------------------------------------------------
    def _read(self, key: FunctionKey) -> str | None:
        row = self._db.execute(
            "SELECT record FROM functions WHERE account=? AND region=? AND name=?",
            (key.account, key.region, key.name),
        ).fetchone()
        return row[0] if row else None

    def get_function(self, key: FunctionKey) -> dict[str, Any] | None:
        """The function's record, a copy of the caller's own (to change and write back)."""
        text = self._read(key)
        return json.loads(text) if text is not None else None

    def function_view(self, key: FunctionKey) -> dict[str, Any] | None:
        """The function's record, shared with every reader: never modify it."""
        found = self._cache.get(key)
        if found is not None:
            return found
        text = self._read(key)
        if text is None:
            return None
        record: dict[str, Any] = json.loads(text)
        cache = self._cache
        if len(cache) >= CACHE_LIMIT:
            del cache[next(iter(cache))]
        cache[key] = record
        return record

    def invalidate(self, key: FunctionKey | None = None) -> None:
        """Forget the cached record of `key` (of every function when None): it was
        written elsewhere. Usage totals are recounted when next asked."""
        if key is None:
            self._cache.clear()
        else:
            self._cache.pop(key, None)
        self._usage = None
        if self.shared:
            self._refs = None  # recounted from every node's records when next asked

    def _changed_elsewhere(self, key: FunctionKey | None) -> None:
        self.invalidate(key)
        for listener in self.on_remote_write:
            listener(key)

    def _written(self, key: FunctionKey) -> None:
        self._cache.pop(key, None)
        if self.shared:
            self._db.notify(CHANNEL, f"{self.node} {key.account}/{key.region}/{key.name}")

    def listen(self, deliver: Callable[[Callable[[], None]], None]) -> None:
        """In cluster mode, drop cached records other nodes wrote: `deliver(fn)` runs fn
        where the store is used (the event loop's call_soon_threadsafe)."""

        def told(payload: str) -> None:
            node, _, written = payload.partition(" ")
            if node == self.node:
                return
            parts = written.split("/", 2)
            key = FunctionKey(*parts) if len(parts) == 3 else None
            deliver(lambda: self._changed_elsewhere(key))

        self._db.listen(CHANNEL, told)

    def insert_function(self, key: FunctionKey, record: dict[str, Any]) -> bool:
        """Store a new function; False if one of that name exists already."""
        self._load_refs()
        try:
            self._db.execute(
                "INSERT INTO functions (account, region, name, record) VALUES (?, ?, ?, ?)",
                (key.account, key.region, key.name, json.dumps(record)),
            )
        except self._db.integrity_error:
            return False
        self._written(key)
        self._count(key, 1, _code_size(record))
        self._reference(record, 1)
        return True

    def update_function(self, key: FunctionKey, record: dict[str, Any]) -> None:
        self._load_refs()
        before = self._read(key)
        self._db.execute(
            "UPDATE functions SET record=? WHERE account=? AND region=? AND name=?",
            (json.dumps(record), key.account, key.region, key.name),
        )
        self._written(key)
        self._count(key, 0, _code_size(record))
        self._reference(record, 1)
        if before is not None:
            self._reference(json.loads(before), -1)

    def delete_function(self, key: FunctionKey) -> bool:
        self._load_refs()
        before = self._read(key)
        cursor = self._db.execute(
            "DELETE FROM functions WHERE account=? AND region=? AND name=?",
            (key.account, key.region, key.name),
        )
        self._written(key)
        if cursor.rowcount > 0:
            self._count(key, -1, 0)
            if before is not None:
                self._reference(json.loads(before), -1)
        return cursor.rowcount > 0

    # Code references -------------------------------------------------------------------
    def references(self, digest: str) -> int:
        """How many function versions use the code `digest`."""
        self._load_refs()
        assert self._refs is not None
        return self._refs.get(digest, 0)

    def unzipped_size(self, digest: str) -> int | None:
        """The unzipped size of code some function uses, as recorded when it was added."""
        self._load_refs()
        return self._unzipped.get(digest)

    def _load_refs(self) -> None:
        if self._refs is not None:
            return
        self._refs = {}
        rows = self._db.execute(
            "SELECT json_extract(record, '$.code.digest'), "
            "json_extract(record, '$.code.unzipped') FROM functions UNION ALL "
            "SELECT json_extract(v.value, '$.code.digest'), "
            "json_extract(v.value, '$.code.unzipped') "
            "FROM functions, json_each(functions.record, '$.versions') AS v"
            if self._db.dialect == "sqlite"
            else "SELECT record::jsonb #>> '{code,digest}', record::jsonb #>> '{code,unzipped}' "
            "FROM functions UNION ALL SELECT v.value #>> '{code,digest}', "
            "v.value #>> '{code,unzipped}' "
            "FROM functions, jsonb_each(record::jsonb -> 'versions') AS v"
        )
        for digest, unzipped in rows:
            if digest:
                self._refs[digest] = self._refs.get(digest, 0) + 1
                self._unzipped[digest] = int(unzipped or 0)

    def _reference(self, record: dict[str, Any], change: int) -> None:
        refs = self._refs
        if refs is None:
            return
        for code in _codes(record):
            digest = code.get("digest")
            if not digest:
                continue
            count = refs.get(digest, 0) + change
            if count > 0:
                refs[digest] = count
                if change > 0:
                    self._unzipped[digest] = int(code.get("unzipped") or 0)
                continue
            refs.pop(digest, None)
            self._unzipped.pop(digest, None)
            for listener in self.on_unreferenced:
                listener(digest)

    def usage(self, account: str, region: str) -> tuple[int, int]:
        """(functions, total code size of their $LATEST) in an account and region."""
        if self._usage is None:
            self._usage, self._sizes = {}, {}
            rows = self._db.execute(
                "SELECT account, region, name, json_extract(record, '$.config.CodeSize') "
                "FROM functions"
                if self._db.dialect == "sqlite"
                else "SELECT account, region, name, record::jsonb #>> '{config,CodeSize}' "
                "FROM functions"
            )
            for row_account, row_region, name, size in rows:
                key = FunctionKey(row_account, row_region, name)
                self._sizes[key] = int(size or 0)
                totals = self._usage.setdefault((row_account, row_region), [0, 0])
                totals[0] += 1
                totals[1] += int(size or 0)
        count, size = self._usage.get((account, region), (0, 0))
        return count, size

    def _count(self, key: FunctionKey, functions: int, size: int) -> None:
        if self._usage is None:
            return
        totals = self._usage.setdefault((key.account, key.region), [0, 0])
        before = self._sizes.pop(key, 0)
        totals[0] += functions
        totals[1] += (size if functions >= 0 else 0) - before
        if functions >= 0:
            self._sizes[key] = size

    def list_functions(
        self, account: str, region: str, after: str = "", limit: int = -1
    ) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT record FROM functions WHERE account=? AND region=? AND name>? "
            "ORDER BY name LIMIT ?",
            (account, region, after, limit if limit >= 0 else 1 << 62),
        ).fetchall()
        return [json.loads(row[0]) for row in rows]

    def all_functions(self) -> Iterator[tuple[FunctionKey, dict[str, Any]]]:
        for account, region, name, record in self._db.execute(
            "SELECT account, region, name, record FROM functions"
        ):
            yield FunctionKey(account, region, name), json.loads(record)

    def count_functions(self, account: str, region: str) -> int:
        return self.usage(account, region)[0]

    # Code ------------------------------------------------------------------------------
    def code_zip(self, digest: str) -> Path:
        return self.code_root / f"{digest}.zip"

    def code_dir(self, digest: str) -> Path:
        return self.code_root / digest

    def opt_dir(self, digest: str) -> Path:
        """A function's layers merged in order (lamina/control/layers.py builds it)."""
        return self.data_dir / "opt" / digest

    def has_code(self, digest: str) -> bool:
        return self.code_zip(digest).is_file() and self.code_dir(digest).is_dir()

    def fetch_code(self, digest: str, extract: Callable[[bytes, Path], object]) -> bool:
        """Cluster mode: bring code this node lacks from the database (`extract(blob,
        staging)` unpacks it); False if the database does not have it either."""
        if self.has_code(digest):
            return True
        if not self.shared:
            return False
        with self._fetching:
            if self.has_code(digest):
                return True
            row = self._db.execute(
                "SELECT blob FROM code_blobs WHERE digest=?", (digest,)
            ).fetchone()
            if row is None:
                return False
            staging = self.staging_dir()
            try:
                extract(bytes(row[0]), staging)
                self._adopt(digest, bytes(row[0]), staging)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return True

    def put_code(self, digest: str, blob: bytes, extracted: Path) -> None:
        """Adopt an extracted tree and its zip under their content address (in cluster
        mode the zip goes to the database first, where every other node finds it)."""
        if self.shared:
            self.put_blob(digest, blob)
        self._adopt(digest, blob, extracted)

    # Cluster mode: the blobs in the database ---------------------------------------------
    def put_blob(self, digest: str, blob: bytes) -> None:
        self._db.execute(
            "INSERT INTO code_blobs (digest, blob, added) VALUES (?, ?, ?) "
            "ON CONFLICT (digest) DO UPDATE SET added=excluded.added",
            (digest, blob, time.time()),
        )

    def keep_blob(self, digest: str) -> bool:
        """An upload found the code on this node's disk: the database's blob is kept (its
        grace starts again); False if the database has none (put it back)."""
        done = self._db.execute(
            "UPDATE code_blobs SET added=? WHERE digest=?", (time.time(), digest)
        )
        return done.rowcount > 0

    def used_anywhere(self, digest: str) -> bool:
        """Whether any function record of the cluster names `digest` (its code, a
        version's, a layer's)."""
        row = self._db.execute(
            "SELECT 1 FROM functions WHERE record LIKE ? LIMIT 1", (f"%{digest}%",)
        ).fetchone()
        return row is not None

    def drop_blob(self, digest: str, before: float) -> bool:
        """Delete the blob if it was last added before `before`; whether it is gone."""
        self._db.execute("DELETE FROM code_blobs WHERE digest=? AND added < ?", (digest, before))
        row = self._db.execute("SELECT 1 FROM code_blobs WHERE digest=?", (digest,)).fetchone()
        return row is None

    def _adopt(self, digest: str, blob: bytes, extracted: Path) -> None:
        target_dir = self.code_dir(digest)
        if target_dir.exists():
            shutil.rmtree(extracted, ignore_errors=True)
        else:
            os.replace(extracted, target_dir)
        target_zip = self.code_zip(digest)
        if not target_zip.exists():
            fd, tmp = tempfile.mkstemp(dir=self.code_root, suffix=".part")
            with os.fdopen(fd, "wb") as out:
                out.write(blob)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target_zip)

    def _remove_leftovers(self) -> None:
        """Half-extracted trees and half-written zips of requests a crash cut short."""
        for path in self.code_root.iterdir():
            if path.name.startswith((".staging-", ".trash-")):
                shutil.rmtree(path, ignore_errors=True)
            elif path.suffix == ".part":
                path.unlink(missing_ok=True)

    def remove_code(self, digest: str) -> Path | None:
        """Take the code `digest` out of use at once (its tree and zip renamed aside);
        returns the directory to delete at leisure (None if there was nothing)."""
        trash = Path(tempfile.mkdtemp(dir=self.code_root, prefix=".trash-"))
        found = False
        for path in (self.code_dir(digest), self.code_zip(digest)):
            if path.exists():
                os.replace(path, trash / path.name)
                found = True
        if not found:
            trash.rmdir()
            return None
        return trash

    def staging_dir(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.code_root, prefix=".staging-"))


def _codes(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The code of $LATEST and of every published version of a record."""
    codes = [record.get("code") or {}]
    codes += [version.get("code") or {} for version in (record.get("versions") or {}).values()]
    return codes


def _code_size(record: dict[str, Any]) -> int:
    return int(record.get("config", {}).get("CodeSize") or 0)


SqliteStore = FunctionStore  # its name when SQLite was its only database
