"""Costs that must not grow with what is deployed: a warm invoke, GetAccountSettings and the
live view at 10,000 functions against 10 (two servers side by side, measured in
alternating batches), and the start of a server with 100,000 queued asynchronous events
or 200,000 SQS messages.

The 10,000 functions are copies of one created through the API, written into the data
directory through the store (as 10,000 CreateFunction calls would leave it), so the test
takes seconds; the three servers' data directories start as copies of the one where it was
created."""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import statistics
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.clock import Clock
from lamina.console.live import SHOWN
from lamina.keys import FunctionKey
from lamina.services.sqs.attributes import DEFAULTS
from lamina.services.sqs.messages import Message
from lamina.services.sqs.queues import Queues
from lamina.services.sqs.store import INSERT, QueueStore
from lamina.store.events import SCHEMA as EVENTS_SCHEMA
from lamina.store.sqlite import SqliteStore
from tests.helpers import Server, python_function

MANY = 10_000
ARGS = ["--isolation", "none"]


def deploy(source: Path, data: Path, count: int) -> Server:
    """A server whose data directory holds `count` functions fn-00000 ... (stopped): a copy
    of `source`, which holds fn-00000."""
    shutil.copytree(source, data)
    server = Server(data, ARGS)
    store = SqliteStore(data)
    try:
        template = store.get_function(FunctionKey("000000000000", "us-east-1", "fn-00000"))
        assert template is not None
        for n in range(1, count):
            name = f"fn-{n:05d}"
            key = FunctionKey("000000000000", "us-east-1", name)
            record = json.loads(json.dumps(template))
            record["config"].update(FunctionName=name, FunctionArn=key.arn)
            record["config"]["LoggingConfig"]["LogGroup"] = f"/aws/lambda/{name}"
            assert store.insert_function(key, record)
    finally:
        store.close()
    return server


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, Server]]:
    """Servers with 10, SHOWN (as many as the live view lists) and 10,000 functions."""
    source = tmp_path_factory.mktemp("source") / "data"
    first = Server(source, ARGS).start()
    python_function(first.client(), "fn-00000", "def handler(event, context):\n    return 1\n")
    first.stop()
    running = {
        n: deploy(source, tmp_path_factory.mktemp(f"n{n}") / "data", n) for n in (10, SHOWN, MANY)
    }
    for server in running.values():
        server.start()
    yield running
    for server in running.values():
        server.stop()


@pytest.fixture
def servers(deployed: dict[int, Server]) -> tuple[Server, Server]:
    return deployed[10], deployed[MANY]


class Connection:
    def __init__(self, server: Server) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def call(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n"
        self.sock.sendall(head.encode() + body)
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(65536)
        head_bytes, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head_bytes.decode("latin-1").split("\r\n")
        length = next(
            int(line.split(":", 1)[1])
            for line in lines
            if line.lower().startswith("content-length")
        )
        while len(self.buffer) < length:
            self.buffer += self.sock.recv(65536)
        answer, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(lines[0].split()[1]), answer

    def close(self) -> None:
        self.sock.close()


def alternating(
    servers: tuple[Server, ...], method: str, path: str, rounds: int, batch: int
) -> list[float]:
    """p50 (ms) per server of `method path`, in alternating batches."""
    connections = [Connection(server) for server in servers]
    times: list[list[float]] = [[] for _ in servers]
    try:
        for connection in connections:  # warm
            for _ in range(20):
                assert connection.call(method, path)[0] == 200
        for _ in range(rounds):
            for index, connection in enumerate(connections):
                for _ in range(batch):
                    started = time.perf_counter()
                    status, _ = connection.call(method, path)
                    times[index].append((time.perf_counter() - started) * 1000)
                    assert status == 200
    finally:
        for connection in connections:
            connection.close()
    return [statistics.median(series) for series in times]


def test_the_servers_hold_what_they_should(servers: tuple[Server, Server]) -> None:
    few, many = servers
    for server, count in ((few, 10), (many, MANY)):
        settings = server.client().get_account_settings()
        assert settings["AccountUsage"]["FunctionCount"] == count


def test_a_warm_invoke_costs_the_same_at_10_and_10000_functions(
    servers: tuple[Server, Server],
) -> None:
    path = "/2015-03-31/functions/fn-00000/invocations"
    few, many = alternating(servers, "POST", path, rounds=20, batch=100)
    print(f"\nwarm invoke p50: 10 functions {few:.3f} ms, {MANY:,} functions {many:.3f} ms")
    assert many <= 1.10 * few, f"10 functions {few:.3f} ms, {MANY:,} functions {many:.3f} ms"


@pytest.mark.parametrize(
    ("path", "baseline"), [("/2016-08-19/account-settings", 10), ("/_lamina/live", SHOWN)]
)
def test_account_figures_do_not_grow_with_the_functions(
    deployed: dict[int, Server], path: str, baseline: int
) -> None:
    """GetAccountSettings against 10 functions; the live view, which lists at most SHOWN
    functions, against a server with that many."""
    few, many = alternating((deployed[baseline], deployed[MANY]), "GET", path, rounds=10, batch=20)
    print(f"\n{path} p50: {baseline} functions {few:.3f} ms, {MANY:,} functions {many:.3f} ms")
    assert many <= 1.5 * few + 1.0, f"{baseline} functions {few:.3f} ms, {MANY:,}: {many:.3f} ms"


def test_start_with_100000_queued_events(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = sqlite3.connect(data / "events.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(EVENTS_SCHEMA)
    later = time.time() + 3600  # their next try is due in an hour: queued, not running
    payload = json.dumps({"order": "x" * 200}).encode()
    with db:
        db.executemany(
            "INSERT INTO events (account, region, function, qualifier, request_id, payload, "
            "accepted, attempts, due) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    "000000000000",
                    "us-east-1",
                    "queued",
                    "",
                    f"r-{n}",
                    payload,
                    time.time(),
                    1,
                    later,
                )
                for n in range(100_000)
            ),
        )
    db.close()
    server = Server(data, ARGS)
    started = time.monotonic()
    server.start(timeout=60)
    took = time.monotonic() - started
    try:
        with urllib.request.urlopen(f"{server.endpoint}/_lamina/health", timeout=10) as answer:
            assert answer.status == 200
    finally:
        server.stop()
    check = sqlite3.connect(data / "events.db")
    remaining = check.execute("SELECT count(*) FROM events").fetchone()[0]
    check.close()
    print(f"\nstart with 100,000 queued events: {took:.2f} s")
    assert remaining == 100_000  # nothing lost, nothing run early
    assert took < 5.0


MESSAGES = 200_000


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _timed_start(server: Server) -> float:
    started = time.monotonic()
    server.start(timeout=120)
    return time.monotonic() - started


def test_start_with_200000_sqs_messages(tmp_path: Path) -> None:
    """Messages stay on disk: the start reads none of them and memory does not hold them
    (a server that read them all took 2 s and 180 MB more than an empty one here, at
    this size); the first receive gets the oldest."""
    empty = Server(tmp_path / "empty", ARGS)
    baseline = _timed_start(empty)
    empty.stop()
    data = tmp_path / "data"
    data.mkdir()
    store = QueueStore(data)
    queue = Queues(store, Clock()).create("000000000000", "us-east-1", "big", dict(DEFAULTS), {})
    store.close()
    now = time.time()
    # Rows as the store writes them (store.py's INSERT), their JSON made from one template.
    head, tail = json.dumps(Message(1, "@", "x" * 100, {}, {}, now).frozen_part()).split("@", 1)
    db = sqlite3.connect(data / "queues.db")
    with db:
        db.executemany(
            INSERT,
            ((queue.id, n, f"{head}m-{n:06d}{tail}", now, 0, None, None)
             for n in range(1, MESSAGES + 1)),
        )  # fmt: skip
    db.close()
    server = Server(data, ARGS)
    took = _timed_start(server)
    try:
        assert server.process is not None
        rss = _rss_mb(server.process.pid)
        sqs = server.client("sqs")
        url = sqs.get_queue_url(QueueName="big")["QueueUrl"]
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        after = _rss_mb(server.process.pid)
    finally:
        server.stop()
    print(f"\nstart with {MESSAGES:,} SQS messages: {took:.2f} s (empty: {baseline:.2f} s), "
          f"RSS {rss:.0f} MB ({after:.0f} MB after a receive)")  # fmt: skip
    assert [m["MessageId"] for m in got] == [f"m-{n:06d}" for n in range(1, 11)]
    assert counts["ApproximateNumberOfMessages"] == str(MESSAGES - 10)
    assert counts["ApproximateNumberOfMessagesNotVisible"] == "10"
    assert took < 1.25 * baseline + 1.0
    assert after < 130  # an empty server: ~77 MB
