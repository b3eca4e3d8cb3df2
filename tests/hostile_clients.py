"""Hostile HTTP clients against a Lamina server, in a process of their own (the tests that
use it measure a well-behaved client beside them).

    python tests/hostile_clients.py PORT SLOW ENDLESS SECONDS

SLOW connections that trickle a request's headers (a byte every few seconds, reconnecting
when the server closes them) and ENDLESS connections that each send a chunked Invoke body
without end (at most ENDLESS_RATE bytes a second each, reconnecting when answered), for
SECONDS, or until it gets SIGTERM (the test that measured beside it is done). Prints
"ready N" once the slow connections are open, and at the end one line of JSON: what was
sent and how the server answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import resource
import signal
import sys
import time

HEAD = b"POST /2015-03-31/functions/none/invocations HTTP/1.1\r\nHost: hostile\r\nX-Slow: "
ENDLESS_HEAD = (
    b"POST /2015-03-31/functions/none/invocations HTTP/1.1\r\nHost: hostile\r\n"
    b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
)
CHUNK = 64 * 1024
ENDLESS_RATE = 16 * 1024 * 1024  # bytes per second per endless connection
TRICKLE_S = 3.0


async def slow(port: int, deadline: float, stats: dict[str, int], opened: asyncio.Event) -> None:
    first = True
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            stats["connect_errors"] += 1
            await asyncio.sleep(0.5)
            continue
        stats["slow_connections"] += 1
        if first:
            first = False
            stats["slow_open"] += 1
            if stats["slow_open"] >= stats["slow_wanted"]:
                opened.set()
        try:
            writer.write(HEAD)
            await asyncio.sleep(random.random() * TRICKLE_S)
            while time.monotonic() < deadline:
                writer.write(b"x")
                await writer.drain()
                answer = await _answered(reader, TRICKLE_S)
                if answer is not None:
                    stats["slow_answered_" + answer] = stats.get("slow_answered_" + answer, 0) + 1
                    break
        except OSError:
            stats["slow_reset"] += 1
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _answered(reader: asyncio.StreamReader, wait: float) -> str | None:
    """The status the server answered with (or "closed"), None if it said nothing yet."""
    try:
        line = await asyncio.wait_for(reader.readline(), wait)
    except TimeoutError:
        return None
    if not line:
        return "closed"
    parts = line.split()
    return parts[1].decode() if len(parts) > 1 else "garbage"


async def endless(port: int, deadline: float, stats: dict[str, int]) -> None:
    chunk = b"%x\r\n" % CHUNK + b" " * CHUNK + b"\r\n"
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            stats["connect_errors"] += 1
            await asyncio.sleep(0.5)
            continue
        stats["endless_connections"] += 1
        reading = asyncio.ensure_future(reader.readline())
        try:
            writer.write(ENDLESS_HEAD + b"1\r\n[\r\n")
            started = time.monotonic()
            sent = 0
            while time.monotonic() < deadline and not reading.done():
                writer.write(chunk)
                sent += len(chunk)
                stats["endless_bytes"] += len(chunk)
                await writer.drain()
                ahead = sent / ENDLESS_RATE - (time.monotonic() - started)
                await asyncio.sleep(max(ahead, 0))
            if reading.done() and not reading.cancelled() and reading.exception() is None:
                parts = reading.result().split()
                status = parts[1].decode() if len(parts) > 1 else "closed"
                stats["endless_answered_" + status] = stats.get("endless_answered_" + status, 0) + 1
                stats["endless_longest_body"] = max(stats["endless_longest_body"], sent)
        except OSError:
            stats["endless_reset"] += 1
            stats["endless_longest_body"] = max(stats["endless_longest_body"], sent)
        finally:
            reading.cancel()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def main(port: int, slow_count: int, endless_count: int, seconds: float) -> None:
    stats = {
        "slow_wanted": slow_count,
        "slow_open": 0,
        "slow_connections": 0,
        "slow_reset": 0,
        "connect_errors": 0,
        "endless_connections": 0,
        "endless_bytes": 0,
        "endless_reset": 0,
        "endless_longest_body": 0,
    }
    deadline = time.monotonic() + seconds
    opened, told = asyncio.Event(), asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, told.set)
    tasks = []
    for index in range(slow_count):
        tasks.append(asyncio.ensure_future(slow(port, deadline, stats, opened)))
        if index % 200 == 199:
            await asyncio.sleep(0.01)  # within the listen backlog
    for _ in range(endless_count):
        tasks.append(asyncio.ensure_future(endless(port, deadline, stats)))
    if slow_count:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(opened.wait(), 30)
    print(f"ready {stats['slow_open']}", flush=True)
    attack = asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.wait(
        [attack, asyncio.ensure_future(told.wait())], return_when=asyncio.FIRST_COMPLETED
    )
    attack.cancel()  # told to stop: every connection goes now, the counts so far stay
    await asyncio.gather(attack, return_exceptions=True)
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
