"""A standard queue keeps a window of its messages in memory (services/sqs/window.py): a
backlog on disk is received in order, a page at a time, and memory stays bounded while
every receipt keeps working. The window's sizes are made small here."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.clock import Clock
from lamina.services.sqs import window
from lamina.services.sqs.messages import Message
from lamina.services.sqs.queue import ReceiveOptions
from lamina.services.sqs.queues import Queues
from lamina.services.sqs.store import QueueStore


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(window, "PAGE", 20)
    monkeypatch.setattr(window, "MOST", 60)
    monkeypatch.setattr(window, "KEEP", 30)


@pytest.fixture
def backlog(tmp_path: Path) -> Iterator[Path]:
    """A data directory whose queue `q` holds 250 messages, as a stopped server left them."""
    queues = Queues(QueueStore(tmp_path), Clock())
    queue = queues.create("1", "r", "q", {}, {})
    now = time.time()
    queues.store.insert_messages(
        queue.id, [Message(n, f"m{n}", f"body {n}", {}, {}, now).stored() for n in range(1, 251)]
    )
    queues.store.close()
    yield tmp_path


def bodies(claims: list) -> list[str]:  # type: ignore[type-arg]
    return [c.message.body for c in claims]


@pytest.mark.usefixtures("small")
def test_a_backlog_is_read_in_pages_in_order(backlog: Path) -> None:
    queues = Queues(QueueStore(backlog), Clock())
    queue = queues.queues[("1", "r", "q")]
    assert queue.messages == {}  # nothing read at start
    assert queues.counts(queue) == (250, 0, 0)
    for n in range(5):  # sent after the backlog: received after it
        queues.enqueue(queue, f"late {n}", {}, {}, None, None, None)
    received = []
    while len(received) < 255:
        claims = queues.receive(queue, ReceiveOptions(10, 60.0))
        assert claims
        received += bodies(claims)
        for claim in claims:
            queues.settle(queue, [claim])
        assert len(queue.messages) <= window.MOST + window.PAGE
    assert received == [f"body {n}" for n in range(1, 251)] + [f"late {n}" for n in range(5)]
    assert queues.receive(queue, ReceiveOptions(10, 60.0)) == []
    assert queues.counts(queue) == (0, 0, 0)


@pytest.mark.usefixtures("small")
def test_receipts_hold_when_their_message_left_memory(backlog: Path) -> None:
    queues = Queues(QueueStore(backlog), Clock())
    queue = queues.queues[("1", "r", "q")]
    first = queues.receive(queue, ReceiveOptions(10, 0.0))  # visible again at once
    handles = [queues.receipt_handle(queue, c) for c in first]
    for _ in range(10):  # 100 in flight: the window is trimmed of what nobody holds
        queues.receive(queue, ReceiveOptions(10, 60.0))
    assert not {c.message.seq for c in first} & set(queue.messages)  # let go of
    for handle in handles:
        queues.delete_message(queue, handle)
    assert queues.counts(queue) == (140, 100, 0)
    assert not {c.message.seq for c in first} & {m.seq for m in queues.store.messages(queue.id)}


@pytest.mark.usefixtures("small")
def test_a_restart_keeps_what_was_in_flight(backlog: Path) -> None:
    queues = Queues(QueueStore(backlog), Clock())
    queue = queues.queues[("1", "r", "q")]
    held = queues.receive(queue, ReceiveOptions(10, 3600.0))
    handle = queues.receipt_handle(queue, held[0])
    queues.store.close()
    again = Queues(QueueStore(backlog), Clock())
    queue = again.queues[("1", "r", "q")]
    assert again.counts(queue) == (240, 10, 0)
    assert bodies(again.receive(queue, ReceiveOptions(10, 60.0))) == [
        f"body {n}" for n in range(11, 21)
    ]
    again.delete_message(queue, handle)  # a handle of the last run, its message not loaded
    assert again.counts(queue) == (230, 19, 0)
    assert queue.next_seq() > 250


@pytest.fixture
def fifo_backlog(tmp_path: Path) -> Iterator[Path]:
    """A FIFO queue `q.fifo` of 250 messages in groups a, b, c by turns (a0 b1 c2 a3 ...)."""
    queues = Queues(QueueStore(tmp_path), Clock())
    queue = queues.create("1", "r", "q.fifo", {"FifoQueue": "true"}, {})
    now = time.time()
    rows = [
        Message(n, f"m{n}", f"{'abc'[n % 3]}{n}", {}, {}, now, "abc"[n % 3], f"d{n}").stored()
        for n in range(250)
    ]
    queues.store.insert_messages(queue.id, rows)
    queues.store.close()
    yield tmp_path


@pytest.mark.usefixtures("small")
def test_a_fifo_backlog_is_read_in_pages_each_group_in_order(fifo_backlog: Path) -> None:
    queues = Queues(QueueStore(fifo_backlog), Clock())
    queue = queues.queues[("1", "r", "q.fifo")]
    assert queue.messages == {}
    received: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    for _ in range(100):
        claims = queues.receive(queue, ReceiveOptions(10, 60.0))
        if not claims:
            break
        for claim in claims:
            received[claim.message.body[0]].append(int(claim.message.body[1:]))
        queues.settle(queue, claims)
        assert len(queue.messages) <= window.MOST + window.PAGE
    assert received == {g: list(range(i, 250, 3)) for i, g in enumerate("abc")}


@pytest.mark.usefixtures("small")
def test_a_blocked_fifo_group_lets_the_others_through_within_the_window(
    fifo_backlog: Path,
) -> None:
    queues = Queues(QueueStore(fifo_backlog), Clock())
    queue = queues.queues[("1", "r", "q.fifo")]
    first = queues.receive(queue, ReceiveOptions(1, 3600.0))  # a0, held: group a is blocked
    assert [c.message.body for c in first] == ["a0"]
    handle = queues.receipt_handle(queue, first[0])
    got = []
    for _ in range(20):
        claims = queues.receive(queue, ReceiveOptions(10, 60.0))
        got += [c.message.body for c in claims]
        queues.settle(queue, claims)
    assert got and not any(body.startswith("a") for body in got)
    assert {body[0] for body in got} == {"b", "c"}
    assert len(queue.messages) <= window.MOST + window.PAGE
    queues.store.close()
    # After a restart nothing is loaded: the old handle reads the queue up to its message.
    again = Queues(QueueStore(fifo_backlog), Clock())
    queue = again.queues[("1", "r", "q.fifo")]
    again.delete_message(queue, handle)
    claims = again.receive(queue, ReceiveOptions(10, 60.0))
    assert [c.message.body for c in claims][:1] == ["a3"]  # a0 is gone, a goes on in order


@pytest.mark.usefixtures("small")
def test_fifo_sends_past_the_window_are_trimmed_and_read_back_in_order(tmp_path: Path) -> None:
    queues = Queues(QueueStore(tmp_path), Clock())
    queue = queues.create("1", "r", "t.fifo", {"FifoQueue": "true"}, {})
    held = None
    for n in range(100):
        queues.enqueue(queue, f"{'xy'[n % 2]}{n}", {}, {}, None, "xy"[n % 2], f"d{n}")
        if n == 40:  # x0 in flight: it and every message before it stay in memory
            held = queues.receive(queue, ReceiveOptions(1, 3600.0))
    assert held and held[0].message.body == "x0"
    assert len(queue.messages) <= window.MOST
    got: dict[str, list[int]] = {"x": [], "y": []}
    for _ in range(30):
        claims = queues.receive(queue, ReceiveOptions(10, 60.0))
        for claim in claims:
            got[claim.message.body[0]].append(int(claim.message.body[1:]))
        queues.settle(queue, claims)
    assert got == {"x": [], "y": list(range(1, 100, 2))}  # x waits behind x0
    assert queues.settle(queue, held) == 1
    rest = queues.receive(queue, ReceiveOptions(10, 60.0))
    assert [c.message.body for c in rest] == [f"x{n}" for n in range(2, 22, 2)]
