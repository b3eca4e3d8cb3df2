"""A message's number is the sending node's clock in microseconds: another node of a
cluster may have given the same number to a message of the queue at the same moment. The
send then takes the next number rather than failing."""

from __future__ import annotations

from pathlib import Path

from lamina.clock import Clock
from lamina.services.sqs.messages import Message
from lamina.services.sqs.queue import Queue
from lamina.services.sqs.queues import Queues
from lamina.services.sqs.store import QueueStore

TAKEN = 10**18  # far past any clock: next_seq gives exactly last_seq + 1


def _taken_by_another_node(queues: Queues, name: str, attributes: dict[str, str]) -> Queue:
    queue = queues.create("1", "r", name, attributes, {})
    other = Message(TAKEN, "other", "from the other node", {}, {}, 0.0, "g", "d0")
    queues.store.insert_messages(queue.id, [other.stored()])
    queue.last_seq = TAKEN - 1  # this node has not heard of it
    return queue


def test_a_number_another_node_took_is_skipped(tmp_path: Path) -> None:
    queues = Queues(QueueStore(tmp_path), Clock())
    queue = _taken_by_another_node(queues, "q", {})
    message, stored = queues.enqueue(queue, "mine", {}, {}, 0, None, None)
    assert stored and message.seq == TAKEN + 1
    bodies = {m.seq: m.message["body"] for m in queues.store.messages(queue.id)}
    assert bodies == {TAKEN: "from the other node", TAKEN + 1: "mine"}


def test_a_fifo_message_takes_the_sequence_number_of_its_new_number(tmp_path: Path) -> None:
    queues = Queues(QueueStore(tmp_path), Clock())
    queue = _taken_by_another_node(queues, "q.fifo", {"FifoQueue": "true"})
    message, stored = queues.enqueue(queue, "mine", {}, {}, 0, "g", "d1")
    assert stored and message.seq == TAKEN + 1
    assert message.sequence == f"{TAKEN + 1:020d}"
    # The deduplication id was written with the message, once: a resend is a duplicate.
    again, stored = queues.enqueue(queue, "mine", {}, {}, 0, "g", "d1")
    assert not stored and again.sequence == message.sequence
