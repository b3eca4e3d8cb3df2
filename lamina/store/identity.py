"""Who may sign requests: accounts' access keys and the temporary credentials of
execution roles, looked up by access key id.

`Sessions` issues and keeps temporary credentials (in memory: they die with the
environments they were given to). `Identities` answers a lookup from a cache in front of
the accounts database, refreshed when another process (`lamina accounts`) committed a
change; a check costs one `PRAGMA data_version` at most every `RECHECK_S` seconds.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from lamina.store.accounts import AccountStore, new_access_key_id, new_secret
from lamina.store.database import StoreUnavailable

RECHECK_S = 0.25  # how stale the cache of the accounts database may be
MISSING = object()


@dataclass(frozen=True, slots=True)
class Credential:
    """What verifying a signature needs to know about an access key."""

    access_key: str
    secret: str
    account: str
    principal: str  # the caller's ARN, as AWS names it in AccessDenied messages
    token: str | None = None  # session token of temporary credentials
    expires: float | None = None  # wall-clock seconds; None: never


def root_principal(account: str) -> str:
    return f"arn:aws:iam::{account}:root"


class Sessions:
    """Temporary credentials of execution roles, as STS would hand them out."""

    def __init__(self, lifetime: float, wall: Callable[[], float] = time.time) -> None:
        self.lifetime = lifetime
        self._wall = wall
        self._by_key: dict[str, Credential] = {}

    def issue(self, account: str, role_arn: str, session_name: str) -> Credential:
        self._prune()
        role = role_arn.rsplit("/", 1)[-1] if "/" in role_arn else "lamina-execution-role"
        token = base64.b64encode(secrets.token_bytes(96)).decode()
        credential = Credential(
            access_key=new_access_key_id("ASIA"),
            secret=new_secret(),
            account=account,
            principal=f"arn:aws:sts::{account}:assumed-role/{role}/{session_name}",
            token=token,
            expires=self._wall() + self.lifetime,
        )
        self._by_key[credential.access_key] = credential
        return credential

    def get(self, access_key: str) -> Credential | None:
        return self._by_key.get(access_key)

    def _prune(self) -> None:
        """Forget credentials an hour past their expiry (until then they are refused as
        expired, not as unknown)."""
        if len(self._by_key) < 256:
            return
        limit = self._wall() - 3600
        for key in [k for k, c in self._by_key.items() if (c.expires or limit) < limit]:
            del self._by_key[key]


class Identities:
    """Access key id → Credential, for the server's auth check."""

    def __init__(self, accounts: AccountStore, sessions: Sessions) -> None:
        self.accounts = accounts
        self.sessions = sessions
        self._cache: dict[str, Credential | None] = {}
        self._checked = 0.0
        self.on_change: list[Callable[[], None]] = []  # told when the database changed

    def refresh(self, now_anyway: bool = False) -> None:
        """Drop the cache if the accounts database changed since the last look (looked at
        most every RECHECK_S, unless `now_anyway`)."""
        now = time.monotonic()
        if now - self._checked < RECHECK_S and not now_anyway:
            return
        self._checked = now
        try:
            changed = self.accounts.changed()
        except StoreUnavailable:
            return  # the cluster's database is away: what is known stays known meanwhile
        if changed:
            self._cache.clear()
            for listener in self.on_change:
                listener()

    def lookup(self, access_key: str) -> Credential | None:
        if access_key.startswith("ASIA"):
            return self.sessions.get(access_key)
        self.refresh()
        found = self._cache.get(access_key, MISSING)
        if found is not MISSING:
            return found  # type: ignore[return-value]
        # A key not seen yet may belong to an account just made: its limits apply from its
        # first request on.
        self.refresh(now_anyway=True)
        stored = self.accounts.secret(access_key)
        credential = (
            Credential(access_key, stored[1], stored[0], root_principal(stored[0]))
            if stored
            else None
        )
        if len(self._cache) > 10_000:
            self._cache.clear()  # unknown keys tried in bulk cannot grow it for good
        self._cache[access_key] = credential
        return credential
