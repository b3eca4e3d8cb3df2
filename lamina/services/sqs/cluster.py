"""Queues shared by the nodes of a cluster (their store in the cluster's PostgreSQL).

Each node keeps its in-memory view of a queue (queue.py) as a cache of the database:
- every change a node writes is announced (NOTIFY) with the queue's id; the other nodes
  mark their view of it stale and wake its long polls; a stale view is brought up to
  date from the database before the next operation on it, in place (a message received
  through this node keeps its object, so its claims stay valid);
- a view holds a window of the queue's messages (window.py): bringing it up to date reads
  the first page again (a FIFO queue: what it has loaded) and the state of the other
  messages it holds;
- FIFO deduplication ids are checked in the database as the message is written;
- a receive is a compare-and-set in the database (the receive count must still be the
  one this node saw): when two nodes take the same message at once, one wins, the other
  refreshes its view and answers without it;
- queues made, changed or deleted on another node are read again when announced (and
  when a name is not found: it may have been made a moment ago elsewhere).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from lamina.services.sqs.messages import Message
from lamina.services.sqs.queue import EVERYTHING, NOTHING, Queue
from lamina.services.sqs.store import QueueStore, StoredMessage
from lamina.services.sqs.window import PAGE

CHANNEL = "lamina_sqs"  # payload: "<node> <queue id>" or "<node> queues"


class QueueSync:
    def __init__(self, store: QueueStore) -> None:
        self.store = store
        self.node = uuid.uuid4().hex[:12]
        self.stale: set[int] = set()  # ids of queues whose view may be behind
        self.queues_stale = False
        self.on_queues: Callable[[], None] | None = None  # reloads the list of queues
        self.by_id: Callable[[int], Queue | None] = lambda _: None

    # Telling the others ----------------------------------------------------------------
    def changed(self, queue: Queue) -> None:
        self.store.notify(CHANNEL, f"{self.node} {queue.id}")

    def changed_queues(self) -> None:
        self.store.notify(CHANNEL, f"{self.node} queues")

    # Hearing from them -----------------------------------------------------------------
    def listen(self, deliver: Callable[[Callable[[], None]], None]) -> None:
        def told(payload: str) -> None:
            deliver(lambda: self._told(payload))

        self.store.listen(CHANNEL, told)

    def _told(self, payload: str) -> None:
        node, _, what = payload.partition(" ")
        if node == self.node:
            return
        if what == "queues" or not what:  # "" : the listening connection was lost
            self.queues_stale = True
            if self.on_queues is not None:
                self.on_queues()
            if what:
                return
            self.stale.update(q for q in self._all_ids())
        else:
            self.stale.add(int(what))
        for queue_id in list(self.stale):
            queue = self.by_id(queue_id)
            if queue is not None:
                queue.wake()  # long polls look again (and refresh first)

    def _all_ids(self) -> list[int]:
        return [queue_id for queue_id, *_ in self.store.queues.all()]

    # Bringing a view up to date --------------------------------------------------------
    def fresh(self, queue: Queue, now: float) -> None:
        if queue.id not in self.stale:
            return
        self.stale.discard(queue.id)
        if queue.fifo:
            if queue.edge == NOTHING:
                return  # nothing loaded yet: its first receive reads what it needs
            upto = None if queue.edge == EVERYTHING else queue.edge[1]
            rows = {row.seq: row for row in self.store.messages(queue.id, upto)}
            edge = queue.edge
        else:
            page = self.store.window(queue.id, None, PAGE)
            rows = {row.seq: row for row in page}
            edge = (page[-1].visible, page[-1].seq) if len(page) == PAGE else EVERYTHING
        others = [seq for seq in queue.messages if seq not in rows]
        states = self.store.states(queue.id, others) if others else {}
        for seq in others:
            message = queue.messages[seq]
            state = states.get(seq)
            if state is None:
                queue.forget(message)
            else:
                _update(queue, message, state)
        for seq, row in rows.items():
            known = queue.messages.get(seq)
            if known is None:
                queue.last_seq = max(queue.last_seq, seq)
                queue.index(Message.load(row))
            else:
                _update(queue, known, _state(row))
        queue.edge = edge

    def claim(self, queue: Queue, taken: list[tuple[Message, int]]) -> set[int]:
        """Write the receives of `taken` (message, its receive count before) where no other
        node received the message meanwhile; the seqs this node won."""
        won = self.store.claim(
            queue.id,
            [(m.seq, before, m.visible, m.receives, m.first_receive, m.receipt)
             for m, before in taken],
        )  # fmt: skip
        if len(won) < len(taken):
            self.stale.add(queue.id)  # the others' receives: read them back
        return won


def _state(row: StoredMessage) -> tuple[float, int, float | None, str | None]:
    return row.visible, row.receives, row.first_receive, row.receipt


def _update(
    queue: Queue, message: Message, state: tuple[float, int, float | None, str | None]
) -> None:
    if state != (message.visible, message.receives, message.first_receive, message.receipt):
        message.visible, message.receives, message.first_receive, message.receipt = state
        queue.touched(message)
