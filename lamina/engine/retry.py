"""When an asynchronous invocation is tried again: plain functions, `now` passed in. The
async queue (engine/async_queue.py) runs them in real time, the planner in virtual time.

- Throttled (or failed on Lamina's side): exponential backoff with jitter, 1 s doubling to
  5 min, without using up an attempt; the function pauses for that long, but goes on as
  soon as a slot it could use frees: one of its own, or one of the account's unreserved
  pool when it has no reservation.
- A function error: tried again after 1 and then 2 minutes, `MaximumRetryAttempts` times.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from lamina.engine.concurrency import Lease, Pool
from lamina.keys import FunctionKey

RETRY_DELAYS = (60.0, 120.0)  # after the first and the second failed run
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 300.0


def backoff_delay(
    backoffs: int, uniform: Callable[[float, float], float] = random.uniform
) -> float:
    """Seconds to wait after the `backoffs`-th throttle in a row (1-based): jittered, so
    that events throttled together do not come back together."""
    ceiling = min(BACKOFF_FIRST * 2 ** (backoffs - 1), BACKOFF_MAX)
    return uniform(ceiling / 2, ceiling)


def error_retry_delay(attempts: int) -> float:
    """Seconds before running again an event whose `attempts`-th run failed."""
    return RETRY_DELAYS[min(attempts, len(RETRY_DELAYS)) - 1]


def slot_frees(paused: FunctionKey, paused_reserved: int | None, lease: Lease) -> bool:
    """Whether releasing `lease` may let the paused function `paused` run again."""
    if paused == lease.function:
        return True
    return (
        lease.pool is Pool.UNRESERVED
        and paused_reserved is None
        and (paused.account, paused.region) == (lease.function.account, lease.function.region)
    )
