"""Which messages of a queue are in memory.

A standard queue keeps a window: the messages that become visible first (read from the
store a page at a time, in the order of its index by (visible at, seq)), the messages in
flight (their claims point at them), and the messages sent while the window reaches
their key. Everything else stays on disk, so a server starts without reading any
message and its memory does not grow with a queue's backlog. The queue's `edge` is the
key up to which every stored message is loaded: a receive reads the next page when no
loaded message that is visible comes before the edge, and a send past the edge is only
written. When the window grows past MOST messages (or MOST_BYTES), the messages that
become visible last and are not in flight leave memory and the edge moves back.

Standard queues promise best-effort order only, but the window keeps it: a backlog is
received before what is sent after it.

A FIFO queue loads its messages in the order they were sent: every message up to a seq
(its edge), so each group's loaded messages come first in that group. A receive reads
more pages while fewer messages than it wants can be received from what is loaded (their
group's first message in flight or delayed), until MOST are loaded: as AWS looks only so
far into a FIFO backlog for groups to receive from. Trimming drops the last-sent messages,
never one in flight nor any sent before it.
"""

from __future__ import annotations

import math

from lamina.services.sqs.messages import Message
from lamina.services.sqs.queue import EVERYTHING, NOTHING, Queue
from lamina.services.sqs.store import QueueStore

PAGE = 1000  # messages read from the store at a time
PAGES = 4  # pages read at most before a receive answers with what it has
MOST = 20_000  # loaded messages before the window is trimmed ...
MOST_BYTES = 64 << 20
KEEP = 10_000  # ... to this
KEEP_BYTES = 32 << 20


def fill_fifo(queue: Queue, store: QueueStore, now: float, want: int) -> None:
    """Before a receive from a FIFO queue: read the next pages while fewer than `want`
    loaded messages can be received (at most MOST loaded)."""
    while queue.edge != EVERYTHING and len(queue.messages) < MOST:
        if _receivable(queue, now, want) >= want:
            return
        _next_page(queue, store)
    trim(queue, now)


def load_through(queue: Queue, store: QueueStore, seq: int) -> None:
    """A FIFO queue's messages up to `seq` in memory (its receipt is being used)."""
    while queue.edge != EVERYTHING and queue.edge[1] < seq:
        _next_page(queue, store)


def _next_page(queue: Queue, store: QueueStore) -> None:
    page = store.sent_after(queue.id, queue.edge[1], PAGE)  # NOTHING's -1: from the first
    for row in page:
        if row.seq not in queue.messages:
            queue.index(Message.load(row))
    queue.edge = (-math.inf, page[-1].seq) if len(page) == PAGE else EVERYTHING


def _receivable(queue: Queue, now: float, want: int) -> int:
    found = 0
    for seqs in queue.groups.values():
        for seq in seqs:
            message = queue.messages.get(seq)
            if message is None:
                continue
            if message.visible > now:
                break
            found += 1
            if found >= want:
                return found
    return found


def fill(queue: Queue, store: QueueStore, now: float) -> None:
    """Before a receive from a standard queue: load the messages that come before the
    first visible one in memory, if any may be on disk only."""
    for _ in range(PAGES):
        if queue.edge[0] > now:
            return  # nothing on disk only is visible yet
        top = queue.top()
        if top is not None and top[0] <= now and top <= queue.edge:
            return  # a loaded visible message comes before anything not loaded
        page = store.window(queue.id, None if queue.edge == NOTHING else queue.edge, PAGE)
        for row in page:
            if row.seq not in queue.messages:
                queue.index(Message.load(row))
        queue.edge = (page[-1].visible, page[-1].seq) if len(page) == PAGE else EVERYTHING
        trim(queue, now)


def admit(queue: Queue, message: Message, now: float) -> None:
    """A message just stored: in memory if the window reaches it."""
    if queue.edge == EVERYTHING or (
        not queue.fifo and (message.visible, message.seq) <= queue.edge
    ):
        queue.index(message)
        trim(queue, now)


def trim(queue: Queue, now: float) -> None:
    """Past MOST messages or MOST_BYTES: the messages that become visible last, and that
    nobody holds, leave memory until KEEP and KEEP_BYTES remain."""
    count, size = len(queue.messages), queue.loaded_bytes
    if count <= max(MOST, queue.trim_at) and size <= MOST_BYTES:
        return
    if queue.fifo:
        _trim_fifo(queue, now)
        return
    movable = sorted(
        (m for m in queue.messages.values() if m.receipt is None or m.visible <= now),
        key=lambda m: (m.visible, m.seq),
    )
    cut = len(movable)
    while cut > 0 and (count > KEEP or size > KEEP_BYTES):
        cut -= 1
        count -= 1
        size -= movable[cut].size
    # In-flight messages stay; if they alone fill the window, trim again only at twice as many.
    queue.trim_at = 2 * count if count > KEEP else 0
    if cut == len(movable):
        return
    first = movable[cut]
    for message in movable[cut:]:
        queue.evict(message)
    queue.edge = min(queue.edge, (first.visible, first.seq - 1))
    queue.reindex()


def _trim_fifo(queue: Queue, now: float) -> None:
    """The last-sent messages leave memory, back to the last one in flight at most."""
    count, size = len(queue.messages), queue.loaded_bytes
    seqs = sorted(queue.messages)
    held = max(
        (s for s, m in queue.messages.items() if m.receipt is not None and m.visible > now),
        default=-1,
    )
    cut = len(seqs)
    while cut > 0 and seqs[cut - 1] > held and (count > KEEP or size > KEEP_BYTES):
        cut -= 1
        count -= 1
        size -= queue.messages[seqs[cut]].size
    queue.trim_at = 2 * count if count > KEEP else 0
    if cut == len(seqs):
        return
    for seq in reversed(seqs[cut:]):  # each the last of its group when it goes
        queue.evict(queue.messages[seq])
    queue.edge = (-math.inf, seqs[cut] - 1)
