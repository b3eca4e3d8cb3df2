"""The embedded store: function records in SQLite, code blobs content-addressed on disk.

Records are keyed by (account, region, name) so several accounts and regions share one
store. Code lives under `code/<sha256-hex>.zip` with its extracted tree beside it in
`code/<sha256-hex>/`; both are written to a temporary name and renamed, so a crash never
leaves a half-written blob behind a committed record.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lamina.keys import FunctionKey

SCHEMA = """
CREATE TABLE IF NOT EXISTS functions (
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    name TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (account, region, name)
);
"""


class SqliteStore:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.code_root = data_dir / "code"
        self.code_root.mkdir(parents=True, exist_ok=True)
        self._remove_leftovers()
        # One connection, used from the event loop only; WAL survives a kill -9 intact.
        self._db = sqlite3.connect(data_dir / "lamina.db", isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    # Functions -------------------------------------------------------------------------
    def get_function(self, key: FunctionKey) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT record FROM functions WHERE account=? AND region=? AND name=?",
            (key.account, key.region, key.name),
        ).fetchone()
        return json.loads(row[0]) if row else None

    def insert_function(self, key: FunctionKey, record: dict[str, Any]) -> bool:
        """Store a new function; False if one of that name exists already."""
        try:
            self._db.execute(
                "INSERT INTO functions (account, region, name, record) VALUES (?, ?, ?, ?)",
                (key.account, key.region, key.name, json.dumps(record)),
            )
        except sqlite3.IntegrityError:
            return False
        return True

    def update_function(self, key: FunctionKey, record: dict[str, Any]) -> None:
        self._db.execute(
            "UPDATE functions SET record=? WHERE account=? AND region=? AND name=?",
            (json.dumps(record), key.account, key.region, key.name),
        )

    def delete_function(self, key: FunctionKey) -> bool:
        cursor = self._db.execute(
            "DELETE FROM functions WHERE account=? AND region=? AND name=?",
            (key.account, key.region, key.name),
        )
        return cursor.rowcount > 0

    def list_functions(
        self, account: str, region: str, after: str = "", limit: int = -1
    ) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT record FROM functions WHERE account=? AND region=? AND name>? "
            "ORDER BY name LIMIT ?",
            (account, region, after, limit),
        ).fetchall()
        return [json.loads(row[0]) for row in rows]

    def all_functions(self) -> Iterator[tuple[FunctionKey, dict[str, Any]]]:
        for account, region, name, record in self._db.execute(
            "SELECT account, region, name, record FROM functions"
        ):
            yield FunctionKey(account, region, name), json.loads(record)

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

    def put_code(self, digest: str, blob: bytes, extracted: Path) -> None:
        """Adopt an extracted tree and its zip under their content address."""
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
            if path.name.startswith(".staging-"):
                shutil.rmtree(path, ignore_errors=True)
            elif path.suffix == ".part":
                path.unlink(missing_ok=True)

    def staging_dir(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.code_root, prefix=".staging-"))
