"""What the engine tells, and asks, of a placement across machines (a cluster's registry of
idle environments, lamina/cluster/placement.py). A single node has none: every invocation
runs on its own environments.

The engine never imports the cluster: it is handed an object with these methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from lamina.engine.invoker import InvokeRequest, InvokeResult
    from lamina.keys import FunctionKey
    from lamina.sandbox.environment import Environment
    from lamina.sandbox.launch import FunctionImage


class Listed(Protocol):
    """Where idle environments come from: an on-demand pool of a version (`listing` the
    version) or the provisioned set of an alias or version ("provisioned:" + qualifier)."""

    @property
    def key(self) -> FunctionKey: ...

    @property
    def image(self) -> FunctionImage: ...

    @property
    def listing(self) -> str: ...


class PoolListener(Protocol):
    """Told, synchronously, as an environment changes hands in its pool or set."""

    def idle(self, source: Listed, env: Environment) -> None:
        """`env` went idle (after an invocation, or ready): others may claim it."""

    def taken(self, source: Listed, env: Environment) -> None:
        """`env`, idle until now, runs an invocation of this node."""

    def gone(self, env: Environment) -> None:
        """`env` is being stopped (reaped, retired, dead)."""


class Placement(PoolListener, Protocol):
    """Asked when this machine has no idle environment for an invocation: one idle on
    another machine is claimed (held for it, invisible to others) before the admission,
    which then counts a warm start (or a provisioned one) rather than a new environment;
    once admitted the invocation runs there."""

    async def claim(
        self, sources: list[Listed], request: InvokeRequest
    ) -> tuple[Listed, object] | None:
        """An idle environment elsewhere of the first of `sources` that has one, held:
        (that source, the claim); None if none has."""

    def unclaim(self, claim: object) -> None:
        """The claimed environment is not used after all (throttled, or one here
        became idle): others may claim it again."""

    async def run_claimed(
        self, claim: object, source: Listed, request: InvokeRequest
    ) -> InvokeResult | None:
        """Run the admitted `request` on the claimed environment (or another idle one of
        `source` elsewhere); None if none was idle after all: run it here."""
