"""The counting service as the engine sees it when counts are shared between nodes.

A single node counts in this process (engine/concurrency.py's `Counters`, called directly
on the hot path). Nodes of a cluster count in one shared place instead
(lamina/cluster/counting.py: Redis scripts that keep the same rules); this is what the
engine and the control plane ask of it. Every method may raise `CountingUnavailable`:
then nothing was decided and nothing changed, and the caller refuses rather than guess.
"""

from __future__ import annotations

from typing import Protocol

from lamina.engine.concurrency import Decision, Kind, Lease
from lamina.errors import AwsError
from lamina.keys import FunctionKey


class CountingUnavailable(ConnectionError):
    """The shared counts cannot be reached (or are being rebuilt): admit nothing."""


def counts_unreachable(message: str) -> AwsError:
    """What a client is answered when the shared counts cannot be reached: nothing was
    started nor changed; AWS's ServiceException (500), which SDKs retry."""
    return AwsError(
        "ServiceException",
        f"Lamina cannot reach the cluster's concurrency counts, so it starts nothing rather "
        f"than risk exceeding a limit ({message}).",
        500,
    )


class SharedCounting(Protocol):
    async def acquire(
        self,
        function: FunctionKey,
        now: float,
        kind: Kind = Kind.ON_DEMAND,
        new_environment: bool = False,
        spillover: bool = False,
    ) -> Decision: ...

    async def release(self, lease: Lease) -> None: ...

    def release_soon(self, lease: Lease) -> None:
        """Release in the background; this node's next admission of the same function
        waits for it."""

    async def set_reserved(self, function: FunctionKey, reserved: int | None) -> None: ...

    async def set_provisioned(self, function: FunctionKey, total: int) -> None: ...

    async def forget(self, function: FunctionKey) -> None: ...

    async def reserved(self, function: FunctionKey) -> int | None: ...

    def set_provisioned_ready_soon(self, function: FunctionKey, ready: int) -> None:
        """Told from synchronous code (the provisioner): written in order, soon."""

    def refresh_limits_soon(self) -> None:
        """Accounts' limits changed (the accounts store): every account's limits are
        written again, in order, soon."""

    def now(self) -> float:
        """Platform seconds on a clock every node shares (token buckets refill on it)."""
        ...
