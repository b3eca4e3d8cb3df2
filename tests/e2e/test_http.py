"""HTTP/1.1 as Lamina's server speaks it (lamina/api/http.py), over raw sockets: keep-alive,
pipelining, chunked request bodies, 100-continue, large bodies; and what hostile clients
cannot do: stall others with headers that never end or with slow connections by the
thousand, exhaust descriptors, or make the server read a body without end."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Server, python_function

ECHO = "import json\n\ndef handler(event, context):\n    return event\n"
SIZE = "def handler(event, context):\n    return len(event['data'])\n"
INVOKE = "/2015-03-31/functions/{}/invocations"
HOSTILE = Path(__file__).resolve().parent.parent / "hostile_clients.py"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    args = ["--isolation", "none", "--header-timeout", "1", "--body-timeout", "1"]
    running = Server(tmp_path_factory.mktemp("http") / "data", args).start()
    lam = running.client()
    python_function(lam, "echo", ECHO)
    python_function(lam, "size", SIZE)
    yield running
    running.stop()


def connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Reader:
    """Responses read off one socket, in order."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise EOFError("closed")
        self.buffer += data

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if status == 100:
            return status, headers, b""
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body

    def closed(self) -> bool:
        try:
            while True:
                self._fill()
        except EOFError:
            return True


def post(path: str, body: bytes, extra: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


def test_keep_alive_and_pipelined_requests_are_answered_in_order(server: Server) -> None:
    sock = connect(server)
    reader = Reader(sock)
    with sock:
        requests = [post(INVOKE.format("echo"), json.dumps({"n": n}).encode()) for n in range(5)]
        sock.sendall(b"".join(requests))  # five at once: answered one after the other
        for n in range(5):
            status, headers, body = reader.response()
            assert status == 200 and json.loads(body) == {"n": n}
            assert headers.get("connection") != "close"
        sock.sendall(b"GET /_lamina/health HTTP/1.1\r\nHost: t\r\n\r\n")  # the same connection
        assert reader.response()[0] == 200


def test_chunked_request_body(server: Server) -> None:
    sock = connect(server)
    reader = Reader(sock)
    document = json.dumps({"chunked": "yes", "pad": "x" * 100_000}).encode()
    pieces = [document[i : i + 7000] for i in range(0, len(document), 7000)]
    with sock:
        sock.sendall(
            f"POST {INVOKE.format('echo')} HTTP/1.1\r\nHost: t\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        for piece in pieces:
            sock.sendall(b"%x\r\n%b\r\n" % (len(piece), piece))
            time.sleep(0.001)
        sock.sendall(b"0\r\n\r\n")
        status, _, body = reader.response()
        assert status == 200 and json.loads(body) == json.loads(document)


def test_expect_100_continue(server: Server) -> None:
    sock = connect(server)
    reader = Reader(sock)
    body = json.dumps({"after": "continue"}).encode()
    with sock:
        head = post(INVOKE.format("echo"), b"", "Expect: 100-continue\r\n")
        sock.sendall(head.replace(b"Content-Length: 0", b"Content-Length: %d" % len(body)))
        assert reader.response()[0] == 100  # before the body is sent
        sock.sendall(body)
        status, _, answer = reader.response()
        assert status == 200 and json.loads(answer) == {"after": "continue"}
    # Too large for Invoke: the answer is 413 at once, with no 100 Continue before it.
    sock = connect(server)
    reader = Reader(sock)
    with sock:
        sock.sendall(
            f"POST {INVOKE.format('echo')} HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
            "Content-Length: 7000000\r\n\r\n".encode()
        )
        status, headers, answer = reader.response()
        assert status == 413 and headers["x-amzn-errortype"] == "RequestTooLargeException"
        assert reader.closed()


def test_large_body_up_to_the_limit(server: Server) -> None:
    data = "y" * (6_291_456 - 100)
    document = json.dumps({"data": data}).encode()
    assert len(document) <= 6_291_456
    sock = connect(server)
    reader = Reader(sock)
    with sock:
        sock.sendall(post(INVOKE.format("size"), document))
        status, _, body = reader.response()
        assert status == 200 and json.loads(body) == len(data)


def test_a_client_that_never_finishes_its_headers_is_cut_off(server: Server) -> None:
    sock = connect(server)
    reader = Reader(sock)
    started = time.monotonic()
    with sock:
        sock.sendall(b"POST /2015-03-31/functions/echo/invocations HTTP/1.1\r\nHost: t\r\nX-a: ")
        for _ in range(3):  # trickling does not keep it open
            time.sleep(0.4)
            try:
                sock.sendall(b"a")
            except OSError:
                break
        status, _, _ = reader.response()
        assert status == 408
        assert reader.closed()
    assert time.monotonic() - started < 3.0  # --header-timeout 1 (checked every 0.25 s)


def test_a_body_that_stops_coming_is_cut_off(server: Server) -> None:
    sock = connect(server)
    reader = Reader(sock)
    started = time.monotonic()
    with sock:
        head = f"POST {INVOKE.format('echo')} HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n"
        sock.sendall(head.encode() + b"{")  # and the other 99 bytes never come
        assert reader.closed()
    assert time.monotonic() - started < 3.0  # --body-timeout 1


def test_an_endless_body_is_refused_as_it_streams(server: Server) -> None:
    sock = connect(server)
    reader = Reader(sock)
    sent = 0
    chunk = b"%x\r\n" % 65536 + b" " * 65536 + b"\r\n"
    started = time.monotonic()
    with sock:
        sock.sendall(
            f"POST {INVOKE.format('echo')} HTTP/1.1\r\nHost: t\r\n"
            "Transfer-Encoding: chunked\r\n\r\n1\r\n[\r\n".encode()
        )
        sock.settimeout(0.0)
        pending = b""
        while time.monotonic() - started < 20:
            pending = pending or chunk
            try:
                done = sock.send(pending)
                sent += done
                pending = pending[done:]
            except BlockingIOError:
                time.sleep(0.001)
            except OSError:
                break
            with contextlib.suppress(BlockingIOError, EOFError, OSError):
                reader._fill()
            if b"\r\n\r\n" in reader.buffer:
                break
        sock.settimeout(10)
        status, headers, body = reader.response()
    assert status == 413 and headers["x-amzn-errortype"] == "RequestTooLargeException"
    assert json.loads(body)["message"] == (
        "Request must be smaller than 6291456 bytes for the InvokeFunction operation"
    )
    assert sent < 200 * 1024 * 1024  # read only up to the limit, then dropped for a moment
    assert time.monotonic() - started < 15


def test_connections_past_the_ceiling_are_refused_at_once(tmp_path: Path) -> None:
    args = ["--isolation", "none", "--max-connections", "20", "--header-timeout", "30"]
    running = Server(tmp_path / "data", args).start()
    try:
        kept = connect(running)  # an established client before the crowd
        reader = Reader(kept)
        crowd = [connect(running) for _ in range(30)]
        refused, waiting, deadline = 0, list(crowd), time.monotonic() + 10
        while refused < 10 and waiting and time.monotonic() < deadline:
            answered, _, _ = select.select(waiting, [], [], deadline - time.monotonic())
            for sock in answered:  # those within the ceiling wait for a request: no answer
                waiting.remove(sock)
                if sock.recv(4096).startswith(b"HTTP/1.1 503"):
                    refused += 1
        assert refused >= 10  # 31 connections, 20 served: the rest answered 503 and closed
        kept.sendall(b"GET /_lamina/health HTTP/1.1\r\nHost: t\r\n\r\n")
        assert reader.response()[0] == 200  # those already in keep being served
        for sock in crowd:
            sock.close()
        kept.close()
    finally:
        running.stop()


def invoke_latencies(server: Server, count: int) -> list[float]:
    sock = connect(server)
    reader = Reader(sock)
    times = []
    with sock:
        request = post(INVOKE.format("noop"), b"{}")
        for _ in range(count):
            started = time.perf_counter()
            sock.sendall(request)
            status, _, _ = reader.response()
            times.append(time.perf_counter() - started)
            assert status == 200
    return times


@pytest.mark.alone
def test_invokes_keep_their_latency_under_thousands_of_slow_clients(tmp_path: Path) -> None:
    """5,000 connections trickling their headers and a stream of endless bodies: a normal
    client's warm invoke answers within 2x its quiet p50."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard >= 12_000, "the test needs descriptors for 5,000 connections on each side"
    running = Server(tmp_path / "data", ["--isolation", "none"]).start()
    attack = None
    try:
        python_function(running.client(), "noop", "def handler(event, context):\n    return 1\n")
        invoke_latencies(running, 200)  # warm
        quiet = statistics.median(invoke_latencies(running, 600))
        attack = subprocess.Popen(
            [sys.executable, str(HOSTILE), str(running.port), "5000", "2", "25"],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": ""},
        )
        assert attack.stdout is not None
        ready = attack.stdout.readline().split()
        assert ready[0] == "ready" and int(ready[1]) >= 5000, ready
        time.sleep(1.0)
        loaded = statistics.median(invoke_latencies(running, 600))
        attack.terminate()  # measured: the attack stops here rather than at its 25 s
        out, _ = attack.communicate(timeout=60)
        stats = json.loads(out.strip().splitlines()[-1])
    finally:
        if attack is not None and attack.poll() is None:
            attack.kill()
            attack.wait()
        running.stop()
    print(f"\nquiet p50 {quiet * 1000:.3f} ms, under attack {loaded * 1000:.3f} ms; {stats}")
    assert stats["endless_connections"] >= 2 and stats["endless_bytes"] > 10_000_000
    assert stats.get("endless_answered_413", 0) >= 1
    assert stats["endless_longest_body"] < 200 * 1024 * 1024
    assert loaded <= 2 * quiet, f"quiet p50 {quiet * 1000:.3f} ms, attacked {loaded * 1000:.3f}"
