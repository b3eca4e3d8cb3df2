"""The beat the telemetry keepers (logs, metrics, traces) share: every FLUSH_S write what
was buffered and, in a cluster, read what other nodes wrote; every TRIM_S enforce
retention. A store that is away is logged and tried again at the next beat: what was
buffered waits for it.

Neither period is scaled by the clock's time scale: FLUSH_S bounds what a `kill -9` loses
and how soon other nodes see a write, and TRIM_S paces work against retentions that are
wall time users see."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from lamina.clock import Clock

FLUSH_S = 0.5
TRIM_S = 60.0

Step = Callable[[], Awaitable[None]]


async def keep(flush: Step, read_others: Step | None, trim: Step, log: logging.Logger,
               what: str, clock: Clock) -> None:  # fmt: skip
    """Run until cancelled. `read_others` None: no other node writes this store."""
    trimmed = clock.monotonic()
    while True:
        await asyncio.sleep(FLUSH_S)
        try:
            await flush()
            if read_others is not None:
                await read_others()
            if clock.monotonic() - trimmed > TRIM_S:
                trimmed = clock.monotonic()
                await trim()
        except Exception as error:  # the store away: what is buffered waits
            log.warning("%s not stored yet: %s", what, error)
