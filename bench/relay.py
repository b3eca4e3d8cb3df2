"""The warm-invoke baseline: a minimal uvloop HTTP server that relays each request body to
a worker process over a socket pair and sends the worker's answer back.

This is the least a function platform must do per invoke (parse HTTP, hand the event to
another process, get the result back, answer), with nothing else: no routing, no
validation, no accounting, no logs. `bench/run.py` measures Lamina against it.

Like a Lambda execution environment, the worker gets one event at a time: the next body
goes out when the previous answer is back (the others wait in a queue, in order). With
`--pipeline` every body is written at once and the worker answers in batches, which is
faster but is no longer what an environment does.

Run: .venv/bin/python bench/relay.py PORT [--pipeline]   (prints "ready" when listening)
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections import deque

import httptools
import uvloop


def worker(sock: socket.socket) -> None:
    """The 'function': answers every length-prefixed frame with the same bytes."""
    buffer = b""
    while True:
        try:
            data = sock.recv(1 << 16)
        except OSError:
            data = b""
        if not data:
            os._exit(0)
        buffer += data
        answers = []
        while len(buffer) >= 4:
            size = int.from_bytes(buffer[:4], "big")
            if len(buffer) < 4 + size:
                break
            answers.append(buffer[: 4 + size])
            buffer = buffer[4 + size :]
        if answers:
            sock.sendall(b"".join(answers))


class WorkerLink(asyncio.Protocol):
    """The front's end of the socket pair: frames out, frames back in order."""

    def __init__(self, pipeline: bool) -> None:
        self.pipeline = pipeline
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[HttpConnection] = deque()  # sent, answer not back yet
        self.queued: deque[tuple[bytes, HttpConnection]] = deque()  # not sent yet
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, body: bytes, connection: HttpConnection) -> None:
        if self.waiting and not self.pipeline:
            self.queued.append((body, connection))
            return
        self._write(body, connection)

    def _write(self, body: bytes, connection: HttpConnection) -> None:
        assert self.transport is not None
        self.waiting.append(connection)
        self.transport.write(len(body).to_bytes(4, "big") + body)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 4:
            size = int.from_bytes(self.buffer[:4], "big")
            if len(self.buffer) < 4 + size:
                return
            body = self.buffer[4 : 4 + size]
            self.buffer = self.buffer[4 + size :]
            self.waiting.popleft().answer(body)
            if self.queued and not self.waiting:
                self._write(*self.queued.popleft())


class HttpConnection(asyncio.Protocol):
    def __init__(self, link: WorkerLink) -> None:
        self.link = link
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body, self.body = b"".join(self.body), []
        self.link.send(body, self)

    def answer(self, body: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        self.transport.write(head + body)


async def serve(port: int, sock: socket.socket, pipeline: bool) -> None:
    loop = asyncio.get_running_loop()
    _, link = await loop.connect_accepted_socket(lambda: WorkerLink(pipeline), sock)
    server = await loop.create_server(lambda: HttpConnection(link), "127.0.0.1", port, backlog=4096)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    port = int(sys.argv[1])
    ours, theirs = socket.socketpair()
    if os.fork() == 0:
        ours.close()
        worker(theirs)
    theirs.close()
    uvloop.run(serve(port, ours, "--pipeline" in sys.argv[2:]))


if __name__ == "__main__":
    main()
