"""Accounts, their access keys, their limits and their quota requests (`accounts.db`, or
the cluster's PostgreSQL).

`lamina accounts` writes here while the server may be running; the server reads through
its own connection and notices what another process committed by SQLite's
`data_version` (in PostgreSQL, a counter every write moves: see `changed()`), so keys,
limits and approvals apply without a restart.

Secrets are encrypted at rest with AES-256-GCM (the `cryptography` package) under a key
kept in its own file, `accounts.key` (mode 0600), beside the database (`accounts.db`,
mode 0600): the database alone, a backup or a copied file, holds no usable secret. The
key id is the authenticated data, so a secret cannot be moved to another key id. Every
node of a cluster needs the same `accounts.key`: the database keeps a fingerprint of it,
and a node with another key refuses to start.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import string
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from lamina.store import schema
from lamina.store.database import Database, SqliteDatabase

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS limits (
    account TEXT NOT NULL,
    region TEXT NOT NULL,  -- '' for every region without limits of its own
    concurrency INTEGER,
    unreserved_floor INTEGER,
    PRIMARY KEY (account, region)
);
CREATE TABLE IF NOT EXISTS access_keys (
    id TEXT PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    secret BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS quota_requests (
    id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    service TEXT NOT NULL,
    quota TEXT NOT NULL,
    desired REAL NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS account_changes (
    id INTEGER PRIMARY KEY,  -- one row: 1
    version INTEGER NOT NULL, -- moved by every write (PostgreSQL: what changed() watches)
    key_check TEXT            -- fingerprint of the secrets key every node must share
);
"""
MIGRATIONS = [SCHEMA]
SELECT_ACCOUNTS = (
    "SELECT a.id, a.name, l.concurrency, l.unreserved_floor, a.created FROM accounts a "
    "LEFT JOIN limits l ON l.account = a.id AND l.region = ''"
)
KEY_ALPHABET = string.ascii_uppercase + "234567"
SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"


class AccountError(ValueError):
    """A request the store refuses (an unknown account, a name taken); the message says."""


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    concurrency: int | None  # None: the server's default
    unreserved_floor: int | None
    created: float


@dataclass(frozen=True)
class QuotaRequest:
    id: str
    account: str
    region: str
    service: str
    quota: str
    desired: float
    status: str  # PENDING, APPROVED, DENIED, ...
    created: float
    updated: float


def new_access_key_id(prefix: str = "AKIA") -> str:
    return prefix + "".join(secrets.choice(KEY_ALPHABET) for _ in range(16))


def new_secret() -> str:
    return "".join(secrets.choice(SECRET_ALPHABET) for _ in range(40))


def _private_file(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.chmod(path, 0o600)


class AccountStore:
    """The accounts database. One connection per process; every method is short."""

    def __init__(self, data_dir: Path, db: Database | None = None) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / "accounts.db"
        key_path = data_dir / "accounts.key"
        master = self._master_key(key_path)
        self._cipher = AESGCM(master)
        # A key of its own for what the server signs (code links), derived from the same.
        self.link_key = hmac.new(master, b"lamina code links", hashlib.sha256).digest()
        self._db: Database = db or SqliteDatabase(self.path, check_same_thread=False)
        if db is None:
            self._db.execute("PRAGMA foreign_keys=ON")
        schema.ensure(self._db, "accounts", MIGRATIONS)
        if db is None:
            for suffix in ("", "-wal", "-shm"):
                _private_file(Path(f"{self.path}{suffix}"))
        else:
            self._check_key(master, key_path)
        self._version = self.data_version()

    def _check_key(self, master: bytes, key_path: Path) -> None:
        """Cluster mode: every node must decrypt with the same key."""
        check = hmac.new(master, b"lamina key check", hashlib.sha256).hexdigest()
        self._db.execute(
            "INSERT INTO account_changes (id, version, key_check) VALUES (1, 0, ?) "
            "ON CONFLICT (id) DO NOTHING",
            (check,),
        )
        row = self._db.execute("SELECT key_check FROM account_changes WHERE id=1").fetchone()
        if row[0] is None:
            self._db.execute("UPDATE account_changes SET key_check=? WHERE id=1", (check,))
        elif row[0] != check:
            raise AccountError(
                f"{key_path} is not the cluster's secrets key: copy accounts.key from a "
                "node of the cluster into this node's data directory (mode 0600)"
            )

    def _moved(self) -> None:
        """A write: other processes' changed() see it (PostgreSQL; SQLite counts itself)."""
        if self._db.dialect != "sqlite":
            self._db.execute(
                "INSERT INTO account_changes (id, version) VALUES (1, 1) ON CONFLICT (id) "
                "DO UPDATE SET version=account_changes.version + 1"
            )

    @staticmethod
    def _master_key(path: Path) -> bytes:
        try:
            key = path.read_bytes()
        except FileNotFoundError:
            key = AESGCM.generate_key(bit_length=256)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, key)
            finally:
                os.close(fd)
            return key
        except OSError as exc:
            raise AccountError(f"cannot read the secrets key {path}: {exc}") from exc
        if len(key) != 32:
            raise AccountError(f"{path} is not a 256-bit key")
        return key

    def close(self) -> None:
        self._db.close()

    # Noticing changes made by another process ------------------------------------------
    def data_version(self) -> int:
        if self._db.dialect == "sqlite":
            return int(self._db.execute("PRAGMA data_version").fetchone()[0])
        row = self._db.execute("SELECT version FROM account_changes WHERE id=1").fetchone()
        return int(row[0]) if row else 0

    def changed(self) -> bool:
        """True once after another connection (the CLI) committed something."""
        version = self.data_version()
        if version == self._version:
            return False
        self._version = version
        return True

    # Accounts --------------------------------------------------------------------------
    def create(
        self, name: str, concurrency: int | None = None, floor: int | None = None
    ) -> Account:
        if not name or len(name) > 64:
            raise AccountError("an account name is 1 to 64 characters")
        for _ in range(100):
            account_id = "".join(secrets.choice(string.digits) for _ in range(12))
            if account_id != "000000000000" and self.get(account_id) is None:
                break
        try:
            self._db.execute(
                "INSERT INTO accounts (id, name, created) VALUES (?, ?, ?)",
                (account_id, name, time.time()),
            )
        except self._db.integrity_error as exc:
            raise AccountError(f"an account named {name!r} exists already") from exc
        self._moved()
        if concurrency is not None or floor is not None:
            self.set_account_limits(account_id, concurrency, floor)
        found = self.get(account_id)
        assert found is not None
        return found

    def _row(self, row: tuple[object, ...] | None) -> Account | None:
        if row is None:
            return None
        return Account(str(row[0]), str(row[1]), row[2], row[3], float(row[4]))  # type: ignore[arg-type]

    def get(self, account_id: str) -> Account | None:
        return self._row(
            self._db.execute(SELECT_ACCOUNTS + " WHERE a.id = ?", (account_id,)).fetchone()
        )

    def find(self, name_or_id: str) -> Account:
        row = self._db.execute(
            SELECT_ACCOUNTS + " WHERE a.id = ? OR a.name = ?", (name_or_id, name_or_id)
        ).fetchone()
        found = self._row(row)
        if found is None:
            raise AccountError(f"no account named {name_or_id!r}")
        return found

    def all(self) -> list[Account]:
        rows = self._db.execute(SELECT_ACCOUNTS + " ORDER BY a.name").fetchall()
        return [a for a in (self._row(r) for r in rows) if a is not None]

    def delete(self, name_or_id: str) -> Account:
        account = self.find(name_or_id)
        self._db.execute("DELETE FROM accounts WHERE id = ?", (account.id,))
        self._db.execute("DELETE FROM limits WHERE account = ?", (account.id,))
        self._moved()
        return account

    def set_account_limits(
        self, account_id: str, concurrency: int | None, floor: int | None, region: str = ""
    ) -> None:
        """Limits of any account id (one made with `create`, or one named by a 12-digit
        key id with auth off), in one region or ("") in every region that has none of its
        own, as Lambda's quotas are regional; None keeps what is set."""
        self._db.execute(
            "INSERT INTO limits (account, region, concurrency, unreserved_floor) "
            "VALUES (?, ?, ?, ?) ON CONFLICT(account, region) DO UPDATE SET "
            "concurrency = COALESCE(excluded.concurrency, limits.concurrency), "
            "unreserved_floor = COALESCE(excluded.unreserved_floor, limits.unreserved_floor)",
            (account_id, region, concurrency, floor),
        )
        self._moved()

    def all_limits(self) -> dict[tuple[str, str], tuple[int | None, int | None]]:
        """(account, region) → (concurrency, floor); region '' for every other region."""
        rows = self._db.execute(
            "SELECT account, region, concurrency, unreserved_floor FROM limits"
        ).fetchall()
        return {(str(r[0]), str(r[1])): (r[2], r[3]) for r in rows}

    # Access keys -----------------------------------------------------------------------
    def create_key(self, name_or_id: str) -> tuple[str, str]:
        """A new access key of the account: (access key id, secret), the secret shown once."""
        account = self.find(name_or_id)
        key_id, secret = new_access_key_id(), new_secret()
        nonce = secrets.token_bytes(12)
        sealed = nonce + self._cipher.encrypt(nonce, secret.encode(), key_id.encode())
        self._db.execute(
            "INSERT INTO access_keys (id, account, secret, created) VALUES (?, ?, ?, ?)",
            (key_id, account.id, sealed, time.time()),
        )
        self._moved()
        return key_id, secret

    def delete_key(self, key_id: str) -> None:
        if self._db.execute("DELETE FROM access_keys WHERE id = ?", (key_id,)).rowcount == 0:
            raise AccountError(f"no access key {key_id!r}")
        self._moved()

    def keys(self, name_or_id: str) -> list[str]:
        account = self.find(name_or_id)
        rows = self._db.execute(
            "SELECT id FROM access_keys WHERE account = ? ORDER BY created", (account.id,)
        ).fetchall()
        return [str(r[0]) for r in rows]

    def secret(self, key_id: str) -> tuple[str, str] | None:
        """(account id, secret) of an access key, or None."""
        row = self._db.execute(
            "SELECT account, secret FROM access_keys WHERE id = ?", (key_id,)
        ).fetchone()
        if row is None:
            return None
        sealed = bytes(row[1])
        secret = self._cipher.decrypt(sealed[:12], sealed[12:], key_id.encode()).decode()
        return str(row[0]), secret

    # Quota requests --------------------------------------------------------------------
    def add_request(
        self, account: str, region: str, service: str, quota: str, desired: float, status: str
    ) -> QuotaRequest:
        request_id = secrets.token_hex(16)
        now = time.time()
        self._db.execute(
            "INSERT INTO quota_requests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (request_id, account, region, service, quota, desired, status, now, now),
        )
        self._moved()
        found = self.request(request_id)
        assert found is not None
        return found

    def request(self, request_id: str) -> QuotaRequest | None:
        row = self._db.execute(
            "SELECT * FROM quota_requests WHERE id = ?", (request_id,)
        ).fetchone()
        return QuotaRequest(*row) if row else None

    def requests(
        self, account: str | None = None, status: str | None = None, region: str | None = None
    ) -> list[QuotaRequest]:
        rows = self._db.execute(
            "SELECT * FROM quota_requests WHERE (CAST(? AS TEXT) IS NULL OR account = ?) "
            "AND (CAST(? AS TEXT) IS NULL OR status = ?) "
            "AND (CAST(? AS TEXT) IS NULL OR region = ?) ORDER BY created",
            (account, account, status, status, region, region),
        ).fetchall()
        return [QuotaRequest(*row) for row in rows]

    def set_request_status(self, request_id: str, status: str) -> QuotaRequest:
        if (
            self._db.execute(
                "UPDATE quota_requests SET status = ?, updated = ? WHERE id = ?",
                (status, time.time(), request_id),
            ).rowcount
            == 0
        ):
            raise AccountError(f"no quota request {request_id!r}")
        self._moved()
        found = self.request(request_id)
        assert found is not None
        return found
