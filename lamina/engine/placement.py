"""What the engine tells, and asks, of a placement across machines (a cluster's registry of
idle environments, lamina/cluster/placement.py). A single node has none: every invocation
runs on its own environments.

The engine never imports the cluster: it is handed an object with these methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from lamina.engine.invoker import InvokeRequest, InvokeResult
    from lamina.engine.pool import FunctionPool
    from lamina.sandbox.environment import Environment


class PoolListener(Protocol):
    """Told, synchronously, as an on-demand environment changes hands in its pool."""

    def idle(self, pool: FunctionPool, env: Environment) -> None:
        """`env` went idle (after an invocation): others may claim it."""

    def taken(self, pool: FunctionPool, env: Environment) -> None:
        """`env`, idle until now, runs an invocation of this node."""

    def gone(self, env: Environment) -> None:
        """`env` is being stopped (reaped, retired, dead)."""


class Placement(PoolListener, Protocol):
    """Asked when this machine has no idle environment for an invocation: one idle on
    another machine is claimed (held for it, invisible to others) before the admission,
    which then counts a warm start rather than a new environment; once admitted the
    invocation runs there."""

    async def claim(self, pool: FunctionPool, request: InvokeRequest) -> object | None:
        """An idle environment of `pool`'s version elsewhere, held; None if none is."""

    def unclaim(self, claim: object) -> None:
        """The claimed environment is not used after all (throttled, or one here
        became idle): others may claim it again."""

    async def run_claimed(
        self, claim: object, pool: FunctionPool, request: InvokeRequest
    ) -> InvokeResult | None:
        """Run the admitted `request` on the claimed environment (or another idle one
        elsewhere); None if none was idle after all: start one here."""
