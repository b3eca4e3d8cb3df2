"""Every SQS queue, and the state machine of their messages.

Each queue is owned by one `Queue` object on the event loop (queue.py); `Queues` makes
every change to it and writes it through to the store (store.py) before the operation
answers, so an accepted message survives a crash. Only a window of a queue's messages is
in memory (window.py); a receipt whose message is not is checked against the store (or,
in a FIFO queue, the queue is read up to it).
Times the user sees (SentTimestamp, ...) are wall-clock; the queue's own delays —
visibility timeouts, DelaySeconds, retention, the deduplication window, the purge and
re-creation cool-downs — are platform delays and go through the clock, so `--time-scale`
shortens them. WaitTimeSeconds is the caller's own wait and is not scaled.

Long polling waits on futures woken by sends and visibility changes, with a timeout at
the next moment a hidden message becomes visible: no polling loop.

In cluster mode (the store in the cluster's PostgreSQL) the in-memory state is each
node's view, kept up to date by cluster.py: receives are compare-and-set in the database,
and every change is announced to the other nodes.

Event source mappings read queues through `poll`, `hold`, `release` and `settle`
(poll.py adapts them to the pollers' view); destinations and dead-letter targets send
with `send_internal`.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from lamina.clock import Clock
from lamina.deliveries import Delivery
from lamina.services.sqs import access
from lamina.services.sqs.attributes import MAX_VISIBILITY
from lamina.services.sqs.cluster import QueueSync
from lamina.services.sqs.messages import (
    Claim,
    Message,
    attributes_size,
    no_queue,
    parameter_error,
    parse_receipt,
    receipt_handle,
    sqs_error,
)
from lamina.services.sqs.queue import EVERYTHING, Queue, ReceiveOptions
from lamina.services.sqs.store import QueueStore, SeqTaken
from lamina.services.sqs.window import admit, fill, fill_fifo, load_through

DEDUP_WINDOW = 300.0  # seconds, a platform delay
SEQ_TRIES = 8  # numbers tried for one message when other nodes took them
BATCH_LIMIT = 10
T = TypeVar("T")


class Queues:
    """Every queue of every account and region: the one owner of their state."""

    def __init__(self, store: QueueStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.queues: dict[tuple[str, str, str], Queue] = {}
        self.by_arn: dict[str, Queue] = {}
        self.deleted_at: dict[tuple[str, str, str], float] = {}  # platform time
        self.by_id: dict[int, Queue] = {}
        self.sync = QueueSync(store) if store.shared else None
        if self.sync is not None:
            self.sync.on_queues = self.reload_queues
            self.sync.by_id = self.by_id.get
        self._load()

    # Loading and lookup ----------------------------------------------------------------
    def _load(self) -> None:
        for row in list(self.store.queues.all()):
            self._register(self._loaded(*row))

    def _loaded(
        self, queue_id: int, account: str, region: str, name: str, record: dict[str, Any]
    ) -> Queue:
        """One queue from the store; none of its messages (window.py reads them when
        receives need them)."""
        queue = Queue(
            queue_id,
            account,
            region,
            name,
            dict(record["attributes"]),
            dict(record.get("tags") or {}),
            record["created"],
            record["modified"],
            self.clock,
        )
        queue.last_seq = self.store.last_seq(queue_id)
        return queue

    def _register(self, queue: Queue) -> None:
        self.queues[(queue.account, queue.region, queue.name)] = queue
        self.by_arn[queue.arn] = queue
        self.by_id[queue.id] = queue

    def reload_queues(self) -> None:
        """Cluster mode: queues made, changed or deleted by other nodes."""
        rows = {row[0]: row for row in self.store.queues.all()}
        for queue in [q for q in self.by_id.values() if q.id not in rows]:
            queue.deleted = True
            self._unregister(queue)
            queue.wake()
        for queue_id, row in rows.items():
            known = self.by_id.get(queue_id)
            if known is None:
                self._register(self._loaded(*row))
                continue
            record = row[4]
            known.attributes = dict(record["attributes"])
            known.tags = dict(record.get("tags") or {})
            known.modified = record["modified"]

    def _unregister(self, queue: Queue) -> None:
        key = (queue.account, queue.region, queue.name)
        if self.queues.get(key) is queue:
            del self.queues[key]
        self.by_arn.pop(queue.arn, None)
        self.by_id.pop(queue.id, None)

    def find(self, key: tuple[str, str, str]) -> Queue | None:
        """The queue (account, region, name); in cluster mode, as the database has it now
        (a queue made on another node a moment ago is found)."""
        queue = self.queues.get(key)
        if self.sync is None:
            return queue
        if queue is None:
            self.reload_queues()
            queue = self.queues.get(key)
        if queue is not None:
            self.sync.fresh(queue, self.clock.wall())
        return queue

    def listen(self, deliver: Callable[[Callable[[], None]], None]) -> None:
        if self.sync is not None:
            self.sync.listen(deliver)

    def _changed(self, queue: Queue) -> None:
        if self.sync is not None:
            self.sync.changed(queue)

    def queue_by_arn(self, arn: str) -> Queue | None:
        queue = self.by_arn.get(arn)
        return None if queue is None or queue.deleted else queue

    def may_send(self, arn: str, account: str, principal: str) -> bool:
        """Whether a function of `account` running as `principal` may send to the queue
        `arn` (its own account's, or one whose policy allows it)."""
        queue = self.queue_by_arn(arn)
        return queue is not None and access.may_send(queue, account, principal)

    def counts(self, queue: Queue) -> tuple[int, int, int]:
        """(visible, in flight, delayed), as the store has them."""
        return self.store.counts(queue.id, self.clock.wall())

    def _prepare(self, queue: Queue, now: float, want: int) -> None:
        """The messages a receive of `want` needs, in memory."""
        if queue.fifo:
            fill_fifo(queue, self.store, now, want)
        else:
            fill(queue, self.store, now)

    def _current(self, queue: Queue, seq: int, nonce: str) -> Message | None:
        """The message `seq` if `nonce` is the receipt of its latest receive; read from
        the store if it is not in memory (a standard queue's window let it go)."""
        message = queue.messages.get(seq)
        if message is None and queue.fifo:
            load_through(queue, self.store, seq)
            message = queue.messages.get(seq)
        elif message is None:
            row = self.store.message(queue.id, seq)
            if row is not None and row.receipt == nonce:
                message = Message.load(row)
                queue.index(message)
        return message if message is not None and message.receipt == nonce else None

    # Receiving, the heart of it --------------------------------------------------------
    def _expired(self, queue: Queue, message: Message, now: float) -> bool:
        retention = self.clock.platform_delay(queue.int_attribute("MessageRetentionPeriod"))
        return message.sent + retention <= now

    def receive(self, queue: Queue, options: ReceiveOptions) -> list[Claim]:
        """Take up to `max_messages` visible messages and hide them for `visibility`."""
        now = self.clock.wall()
        if self.sync is not None:
            self.sync.fresh(queue, now)
        self._prepare(queue, now, options.max_messages)
        taken: list[Message] = []
        dropped: list[Message] = []
        redrive = queue.redrive()
        size = 0

        def take(message: Message) -> bool:
            """False when the message went away instead (expired, or moved to the DLQ)."""
            nonlocal size
            if self._expired(queue, message, now):
                dropped.append(message)
                queue.forget(message)
                return False
            if redrive is not None and message.receives >= redrive[1]:
                dead = self.queue_by_arn(redrive[0])
                if dead is not None:
                    self._move(queue, message, dead, now)
                    return False
            taken.append(message)
            size += message.size
            return True

        def full() -> bool:
            if len(taken) >= options.max_messages:
                return True
            return bool(options.max_bytes) and size >= options.max_bytes

        if queue.fifo:
            for group in list(queue.groups):
                if full():
                    break
                seqs = queue.groups.get(group)
                for seq in list(seqs or ()):
                    message = queue.messages.get(seq)
                    if message is None:
                        continue
                    if message.visible > now:
                        break  # in flight or delayed: the rest of the group waits behind it
                    take(message)
                    if full():
                        break
        else:
            heap = queue.heap
            while heap and not full():
                visible, seq, version = heap[0]
                if visible > now:
                    break
                heapq.heappop(heap)
                message = queue.messages.get(seq)
                if message is None or message.version != version:
                    continue
                take(message)
        claims = []
        for message in taken:
            message.receives += 1
            if message.first_receive is None:
                message.first_receive = now
            message.visible = now + options.visibility
            message.receipt = uuid.uuid4().hex
            queue.touched(message)
            claims.append(Claim(message, message.receipt))
        if dropped:
            self.store.delete_messages(queue.id, [m.seq for m in dropped])
        if taken and self.sync is not None:
            won = self.sync.claim(queue, [(m, m.receives - 1) for m in taken])
            if len(won) < len(taken):  # another node received some at the same moment
                claims = [c for c in claims if c.message.seq in won]
                self.sync.fresh(queue, now)
        elif taken:
            self.store.update_states(
                queue.id,
                [(m.seq, m.visible, m.receives, m.first_receive, m.receipt) for m in taken],
            )
        if taken or dropped:
            self._changed(queue)
        return claims

    def _move(self, queue: Queue, message: Message, dead: Queue, now: float) -> None:
        queue.forget(message)
        moved = Message(
            seq=dead.next_seq(),
            id=message.id,
            body=message.body,
            attributes=message.attributes,
            system=message.system,
            sent=message.sent,
            group=message.group,
            dedup=message.dedup,
            sequence=message.sequence,
            source_arn=queue.arn,
            visible=now,
            receives=message.receives,
            first_receive=message.first_receive,
        )
        self._numbered(
            dead,
            moved,
            lambda: self.store.move_message(queue.id, message.seq, dead.id, moved.stored()),
        )
        admit(dead, moved, now)
        dead.wake()
        self._changed(dead)

    async def receive_waiting(
        self, queue: Queue, options: ReceiveOptions, wait: float
    ) -> list[Claim]:
        """receive(), waiting up to `wait` real seconds for the first message."""
        deadline = time.monotonic() + wait
        while True:
            if queue.deleted:
                raise no_queue()
            claims = self.receive(queue, options)
            remaining = deadline - time.monotonic()
            if claims or remaining <= 0:
                return claims
            until_visible = queue.next_visible() - self.clock.wall()
            await queue.wait(min(remaining, max(until_visible, 0.001)))

    # For event source mappings (through poll.py) ----------------------------------------
    async def poll(
        self, queue: Queue, batch_size: int, window: float, max_bytes: int, wait: float = 20.0
    ) -> list[Claim]:
        """A batch for a mapping: long-poll for the first messages, then gather more for
        up to `window` platform seconds, until `batch_size` or `max_bytes` is reached.
        Cancelled while gathering, the messages become visible again at once."""
        visibility = self.clock.platform_delay(queue.int_attribute("VisibilityTimeout"))
        options = ReceiveOptions(min(batch_size, BATCH_LIMIT), visibility, max_bytes)
        claims = await self.receive_waiting(queue, options, wait)
        if not claims or window <= 0:
            return claims
        deadline = time.monotonic() + self.clock.platform_delay(window)
        try:
            while len(claims) < batch_size and sum(c.message.size for c in claims) < max_bytes:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or queue.deleted:
                    break
                wanted_now = min(batch_size - len(claims), BATCH_LIMIT)
                used = sum(c.message.size for c in claims)
                more = self.receive(queue, ReceiveOptions(wanted_now, visibility, max_bytes - used))
                if more:
                    claims.extend(more)
                    continue
                until_visible = queue.next_visible() - self.clock.wall()
                await queue.wait(min(remaining, max(until_visible, 0.001)))
        except asyncio.CancelledError:
            self.release(queue, claims)
            raise
        return claims

    def release(self, queue: Queue, claims: Iterable[Claim]) -> None:
        """Make claimed messages visible again now (a poller gave them back)."""
        self.hold(queue, claims, 0.0)

    def hold(self, queue: Queue, claims: Iterable[Claim], seconds: float) -> list[Claim]:
        """Keep claimed messages hidden for `seconds` more platform seconds; returns the
        claims still owned (the others were received again by someone else)."""
        now = self.clock.wall()
        kept, changed = [], []
        for claim in claims:
            message = self._current(queue, claim.message.seq, claim.nonce)
            if message is None:
                continue
            message.visible = now + self.clock.platform_delay(seconds)
            queue.touched(message)
            kept.append(claim)
            changed.append(message)
        if kept:
            self.store.update_states(
                queue.id,
                [(m.seq, m.visible, m.receives, m.first_receive, m.receipt) for m in changed],
            )
            queue.wake()
            self._changed(queue)
        return kept

    def settle(self, queue: Queue, claims: Iterable[Claim]) -> int:
        """Delete the claimed messages still owned; returns how many were deleted."""
        gone = []
        for claim in claims:
            message = self._current(queue, claim.message.seq, claim.nonce)
            if message is not None:
                queue.forget(message)
                gone.append(message.seq)
        if gone:
            self.store.delete_messages(queue.id, gone)
            self._changed(queue)
        return len(gone)

    def send_internal(self, arn: str, body: str) -> str | None:
        """Send `body` to the queue `arn` (destinations, dead-letter targets); the message
        id, or None if there is no such queue."""
        queue = self.queue_by_arn(arn)
        if queue is None:
            return None
        group = "lamina" if queue.fifo else None
        dedup = uuid.uuid4().hex if queue.fifo else None
        message, _ = self.enqueue(queue, body, {}, {}, 0, group, dedup)
        return message.id

    def send_as_service(
        self,
        queue_arn: str,
        body: str,
        *,
        service: str,
        source_arn: str,
        source_account: str,
        attributes: dict[str, dict[str, str]] | None = None,
        group: str | None = None,
        dedup: str | None = None,
    ) -> Delivery:
        """lamina.deliveries.QueueSender: SendMessage on behalf of an AWS service (an SNS
        subscription, an EventBridge target, an S3 notification)."""
        found = self.may_deliver(
            queue_arn, service=service, source_arn=source_arn, source_account=source_account
        )
        queue = self.queue_by_arn(queue_arn)
        if found is not Delivery.ACCEPTED or queue is None:
            return found
        size = len(body.encode()) + attributes_size(attributes or {})
        if size > queue.int_attribute("MaximumMessageSize"):
            return Delivery.TOO_LARGE
        if queue.fifo:
            group = group or "default"
            dedup = dedup or hashlib.sha256(body.encode()).hexdigest()
        self.enqueue(queue, body, dict(attributes or {}), {}, None, group, dedup)
        return Delivery.ACCEPTED

    def may_deliver(
        self, queue_arn: str, *, service: str, source_arn: str, source_account: str
    ) -> Delivery:
        """What send_as_service would meet (ACCEPTED, MISSING, DENIED), sending nothing."""
        queue = self.queue_by_arn(queue_arn)
        if queue is None:
            return Delivery.MISSING
        if not access.service_may_send(queue, service, source_arn, source_account):
            return Delivery.DENIED
        return Delivery.ACCEPTED

    def enqueue(
        self,
        queue: Queue,
        body: str,
        attributes: dict[str, dict[str, Any]],
        system: dict[str, dict[str, Any]],
        delay: int | None,
        group: str | None,
        dedup: str | None,
    ) -> tuple[Message, bool]:
        """Store and index one message; (message, False) for a FIFO duplicate."""
        now = self.clock.wall()
        seq = queue.next_seq()
        if delay is None:
            delay = queue.int_attribute("DelaySeconds")
        message = Message(
            seq=seq,
            id=str(uuid.uuid4()),
            body=body,
            attributes=attributes,
            system=system,
            sent=now,
            group=group if queue.fifo else None,
            dedup=dedup if queue.fifo else None,
            sequence=f"{seq:020d}" if queue.fifo else None,
            visible=now + self.clock.platform_delay(delay),
        )
        if queue.fifo:
            assert dedup is not None
            scope = group if queue.attributes.get("DeduplicationScope") == "messageGroup" else ""
            expires = now + self.clock.platform_delay(DEDUP_WINDOW)
            # A newline parts scope and id: neither may hold one (nor PostgreSQL's text a NUL).
            key = f"{scope}\n{dedup}"
            seen = self._numbered(
                queue,
                message,
                lambda: self.store.insert_unique(queue.id, message.stored(), key, expires, now),
            )
            if seen is not None:
                first, sequence = seen
                duplicate = Message(0, first, body, attributes, system, now, group, dedup, sequence)
                return duplicate, False
            queue.sends += 1
            if queue.sends >= 1000:
                queue.sends = 0
                self.store.drop_dedup(queue.id, now)
        else:
            self._numbered(
                queue, message, lambda: self.store.insert_message(queue.id, message.stored())
            )
        admit(queue, message, now)
        queue.wake()
        self._changed(queue)
        return message, True

    @staticmethod
    def _numbered(queue: Queue, message: Message, insert: Callable[[], T]) -> T:
        """`insert()` the message; numbered again (higher) when another node of a cluster
        gave its number to a message of the queue at the same moment."""
        for _ in range(SEQ_TRIES - 1):
            try:
                return insert()
            except SeqTaken:
                taken, message.seq = message.seq, queue.next_seq()
                if message.sequence == f"{taken:020d}":  # a FIFO sequence number is its seq
                    message.sequence = f"{message.seq:020d}"
        return insert()

    # Changes the operations ask for ----------------------------------------------------
    def create(
        self, account: str, region: str, name: str, attributes: dict[str, str], tags: dict[str, str]
    ) -> Queue:
        now = self.clock.wall()
        record = {"attributes": attributes, "tags": tags, "created": now, "modified": now}
        queue_id = self.store.queues.insert(account, region, name, record)
        queue = Queue(queue_id, account, region, name, attributes, tags, now, now, self.clock)
        queue.edge = EVERYTHING  # a new queue: no message on disk only
        self._register(queue)
        if self.sync is not None:
            self.sync.changed_queues()
        return queue

    def delete(self, queue: Queue) -> None:
        self.store.delete_queue(queue.id)
        queue.deleted = True
        key = (queue.account, queue.region, queue.name)
        self._unregister(queue)
        self.deleted_at[key] = self.clock.platform_now()
        queue.wake()
        if self.sync is not None:
            self.sync.changed_queues()

    def save(self, queue: Queue) -> None:
        """The queue's attributes or tags changed."""
        self.store.queues.update(queue.id, queue.record())
        queue.wake()
        if self.sync is not None:
            self.sync.changed_queues()

    def purge(self, queue: Queue) -> None:
        queue.last_purge = self.clock.platform_now()
        self.store.purge(queue.id)
        queue.clear()
        self._changed(queue)

    def receipt_handle(self, queue: Queue, claim: Claim) -> str:
        return receipt_handle(queue.id, queue.arn, claim)

    def delete_message(self, queue: Queue, handle: str) -> None:
        seq, nonce = parse_receipt(queue.id, queue.arn, handle)
        message = self._current(queue, seq, nonce)
        # A stale handle (the message was received again since) succeeds without deleting,
        # as AWS documents; a message already gone succeeds too.
        if message is None:
            return
        queue.forget(message)
        self.store.delete_messages(queue.id, [seq])
        self._changed(queue)

    def change_visibility(self, queue: Queue, handle: str, timeout: int) -> None:
        if not 0 <= timeout <= MAX_VISIBILITY:
            raise parameter_error(
                "VisibilityTimeout", timeout, "Must be between 0 and 43200, if provided."
            )
        seq, nonce = parse_receipt(queue.id, queue.arn, handle)
        message = self._current(queue, seq, nonce)
        if message is None:
            raise parameter_error(
                "ReceiptHandle",
                handle,
                "Message does not exist or is not available for visibility timeout change.",
            )
        now = self.clock.wall()
        if message.visible <= now:
            raise sqs_error(
                "MessageNotInflight",
                "Message does not exist or is not available for visibility timeout change.",
                "AWS.SimpleQueueService.MessageNotInflight",
            )
        message.visible = now + self.clock.platform_delay(timeout)
        queue.touched(message)
        self.store.update_states(
            queue.id,
            [(seq, message.visible, message.receives, message.first_receive, message.receipt)],
        )
        queue.wake()
        self._changed(queue)
