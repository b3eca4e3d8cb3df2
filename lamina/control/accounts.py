"""Per-account limits: from the accounts database into the counting service.

The database (lamina/store/accounts.py) is written by `lamina accounts` and by approved
quota increases; this keeps the counting service's per-account limits equal to it, at
start and whenever the database changed (`sync`, called by the identity cache when it
notices a commit of another process, and after a change made here).

Lambda's quotas are regional: a row for (account, region) holds that region's limit and
floor; the row for (account, "") holds what every other region of the account has (what
`lamina accounts create|set-limits` write). A region's row falls back to the account's
row, and that to the server's defaults, for what it leaves unset.
"""

from __future__ import annotations

import logging

from lamina.engine.concurrency import Counters, Limits
from lamina.store.accounts import AccountStore

log = logging.getLogger("lamina.accounts")

Rows = dict[tuple[str, str], tuple[int | None, int | None]]


def effective(rows: Rows, counters: Counters) -> dict[tuple[str, str], Limits]:
    """(account, region) → the limits the counting service applies there."""
    found = {}
    for (account, region), (concurrency, floor) in rows.items():
        if region:
            base = rows.get((account, ""), (None, None))
            concurrency = concurrency if concurrency is not None else base[0]
            floor = floor if floor is not None else base[1]
        found[(account, region)] = counters.derive(concurrency, floor)
    return found


class AccountLimits:
    def __init__(self, store: AccountStore, counters: Counters) -> None:
        self.store = store
        self.counters = counters
        self._applied: dict[tuple[str, str], Limits] = {}
        self.sync()

    def sync(self) -> None:
        wanted = effective(self.store.all_limits(), self.counters)
        for account, region in set(self._applied) - set(wanted):
            self.counters.set_limits(account, region, None)
        # Account-wide rows first: a region's own row then wins over them.
        for (account, region), limits in sorted(wanted.items(), key=lambda i: i[0][1] != ""):
            if self._applied.get((account, region)) != limits:
                self.counters.set_limits(account, region, limits)
                log.info(
                    "account %s%s: concurrency %d, unreserved floor %d",
                    account,
                    f" in {region}" if region else "",
                    limits.account,
                    limits.floor,
                )
        self._applied = wanted

    def set_concurrency(self, account: str, region: str, concurrency: int) -> None:
        self.store.set_account_limits(account, concurrency, None, region)
        self.sync()
