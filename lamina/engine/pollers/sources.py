"""What a poller needs of its event source and of its function: small interfaces.

Services implement the source side (services/sqs/poll.py, services/kinesis/poll.py) and
the control layer the function side (control/mappings.py); the pollers import neither.
A source hands out its own items (claims of queue messages, stream records) and builds
Lambda's event record of each item itself, exactly as AWS shapes it for that source.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from lamina.engine.invoker import InvokeResult
from lamina.keys import FunctionKey


# Queues ---------------------------------------------------------------------------------
class QueuedMessage(Protocol):
    @property
    def id(self) -> str:
        """The message id: a batch item failure's itemIdentifier."""

    @property
    def group(self) -> str | None:
        """The FIFO message group, None on a standard queue."""

    @property
    def size(self) -> int:
        """Bytes of body and attributes."""


class QueueClaim(Protocol):
    """A received message, owned while no one else has received it since."""

    @property
    def message(self) -> QueuedMessage: ...

    @property
    def owned(self) -> bool: ...


class QueueView(Protocol):
    """One queue as a poller reads it. Claims are the ones `poll` handed out."""

    @property
    def fifo(self) -> bool: ...

    @property
    def visibility_timeout(self) -> int:
        """The queue's VisibilityTimeout, in seconds."""

    async def poll(self, batch_size: int, window: float, max_bytes: int, wait: float) -> list[Any]:
        """Long-poll up to `wait` real seconds for messages, then gather more for up to
        `window` platform seconds: at most `batch_size` claims and about `max_bytes`.
        Raises AwsError if the queue is deleted meanwhile."""

    def hold(self, claims: Sequence[Any], seconds: float) -> list[Any]:
        """Keep the claims hidden `seconds` more; returns those still owned."""

    def release(self, claims: Sequence[Any]) -> None:
        """Make the claimed messages visible again now."""

    def settle(self, claims: Sequence[Any]) -> int:
        """Delete the claimed messages still owned; returns how many."""

    def records(self, claims: Sequence[Any]) -> list[dict[str, Any]]:
        """Lambda's event record of each claimed message."""

    def filter_form(self, record: dict[str, Any]) -> Any:
        """What FilterCriteria patterns are matched against, for an event record."""


class QueueSource(Protocol):
    def queue(self, arn: str) -> QueueView | None:
        """The queue `arn`, None if there is none."""

    def send_internal(self, arn: str, body: str) -> str | None:
        """Send `body` to the queue `arn` (an on-failure destination); the message id,
        None if there is no such queue."""


# Streams --------------------------------------------------------------------------------
class StreamRecord(Protocol):
    @property
    def n(self) -> int:
        """Its position in its shard: 0, 1, 2, ..."""

    @property
    def partition_key(self) -> str:
        """What its lane is chosen by (ParallelizationFactor): records of a key keep
        their order."""

    @property
    def arrival(self) -> float:
        """Wall-clock seconds it arrived at."""


class ShardView(Protocol):
    """One shard as a poller reads it. Records are the ones `read` returned."""

    @property
    def index(self) -> int:
        """The shard's number in its stream: what checkpoints are keyed by."""

    @property
    def id(self) -> str: ...

    @property
    def parent(self) -> str | None:
        """The id of the shard this one took over from (its records come first)."""

    def end(self) -> int | None:
        """Once the shard is closed, the position one past its last record."""

    def read(self, start: int, limit: int) -> Sequence[StreamRecord]:
        """Records at positions >= start, oldest first, within their retention."""

    def trim_horizon(self) -> int:
        """The position of the oldest record still retained."""

    def latest(self) -> int:
        """The position the next record will have."""

    def at_timestamp(self, timestamp: float) -> int:
        """The position of the first record that arrived at or after `timestamp`."""

    async def wait(self, position: int, timeout: float) -> None:
        """Until a record at `position` exists, the stream goes, or `timeout` seconds."""

    def cost(self, record: Any) -> int:
        """About the bytes `record` takes in an event."""

    def sequence_number(self, record: Any) -> str:
        """A batch item failure's itemIdentifier."""

    def records(self, records: Sequence[Any], role: str) -> list[dict[str, Any]]:
        """Lambda's event record of each record (`role` is the function's execution
        role, for invokeIdentityArn)."""

    def filter_form(self, record: dict[str, Any]) -> Any:
        """What FilterCriteria patterns are matched against, for an event record."""

    def batch_info(self, records: Sequence[Any]) -> dict[str, Any]:
        """What an on-failure record says of the records given up, under its source's
        key (`KinesisBatchInfo`, ...)."""


class StreamView(Protocol):
    @property
    def deleted(self) -> bool: ...

    def shards(self) -> Sequence[ShardView]: ...

    async def changed(self, timeout: float) -> None:
        """Until the shards change (or the stream goes), or `timeout` seconds."""


class StreamSource(Protocol):
    def stream(self, arn: str) -> StreamView | None:
        """The stream `arn`, None if there is none."""


# The function side ----------------------------------------------------------------------
class MappingTarget(Protocol):
    """The function of a mapping, as its poller invokes it (`config` is the mapping's
    record: FunctionArn, _Account, _Region)."""

    def exists(self, config: dict[str, Any]) -> bool: ...

    async def invoke(self, config: dict[str, Any], payload: bytes) -> InvokeResult:
        """Invoke through the engine's leases; raises Throttled when refused, AwsError
        when the function is gone."""


class IteratorAgeRecorder(Protocol):
    """The IteratorAge metric (observe.metrics.Metrics has it)."""

    def iterator_age(
        self, key: FunctionKey, milliseconds: float, qualifier: str | None = None
    ) -> None: ...
