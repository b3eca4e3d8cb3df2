"""Offer five times the allowed concurrency for a few seconds and watch, from inside the
functions, how many ran at once. Bounded: 100 callers, 4 seconds, loopback only."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.helpers import Server, python_function

ACCOUNT = 20
FLOOR = 5
RESERVED = 5
CALLERS = 5 * ACCOUNT
SECONDS = 4.0

TIMED = """
import time

def handler(event, context):
    start = time.time()
    time.sleep(0.05)
    return {"start": start, "end": time.time()}
"""


def peak_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals open at one instant (ends sort before starts)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def caller(port: int, names: list[str], deadline: float, out: list[tuple[str, int, bytes]]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    index = 0
    while time.monotonic() < deadline:
        name = names[index % len(names)]
        index += 1
        connection.request("POST", f"/2015-03-31/functions/{name}/invocations", body=b"{}")
        response = connection.getresponse()
        out.append((name, response.status, response.read()))
    connection.close()


def test_five_times_overload_never_exceeds_the_limits(tmp_path: Path) -> None:
    server = Server(
        tmp_path / "data",
        args=[
            "--account-concurrency",
            str(ACCOUNT),
            "--unreserved-floor",
            str(FLOOR),
            "--request-rate",
            "0",  # only concurrency limits here
        ],
    ).start()
    try:
        client = server.client()
        for name in ("guarded", "crowd-a", "crowd-b"):
            python_function(client, name, TIMED, Timeout=10)
        client.put_function_concurrency(
            FunctionName="guarded", ReservedConcurrentExecutions=RESERVED
        )
        results: list[list[tuple[str, int, bytes]]] = [[] for _ in range(CALLERS)]
        deadline = time.monotonic() + SECONDS
        threads = [
            threading.Thread(
                target=caller,
                args=(server.port, ["guarded", "crowd-a", "crowd-b"][i % 3 :], deadline, out),
            )
            for i, out in enumerate(results)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(SECONDS + 60)
        assert not any(thread.is_alive() for thread in threads)

        answers = [answer for out in results for answer in out]
        statuses = {status for _, status, _ in answers}
        assert statuses <= {200, 429}, statuses  # each got a result or a throttle
        ran: dict[str, list[tuple[float, float]]] = {}
        for name, status, body in answers:
            if status == 200:
                times: dict[str, Any] = json.loads(body)
                ran.setdefault(name, []).append((times["start"], times["end"]))
            else:
                assert json.loads(body)["message"] == "Rate Exceeded."
        shared = ran["crowd-a"] + ran["crowd-b"]
        peaks = {
            "guarded": peak_overlap(ran["guarded"]),
            "shared": peak_overlap(shared),
            "account": peak_overlap(shared + ran["guarded"]),
        }
        print(f"\n{len(answers)} requests, {sum(len(v) for v in ran.values())} ran; peaks {peaks}")
        assert peaks["guarded"] <= RESERVED
        assert peaks["shared"] <= ACCOUNT - RESERVED
        assert peaks["account"] <= ACCOUNT
        # The load really was an overload: every limit was reached and many were refused.
        assert peaks["guarded"] == RESERVED
        assert peaks["shared"] >= ACCOUNT - RESERVED - 2
        assert sum(status == 429 for _, status, _ in answers) > len(answers) / 2
        with urllib.request.urlopen(f"{server.endpoint}/_lamina/stats", timeout=5) as answer:
            account = json.loads(answer.read())["concurrency"][0]
        assert account["ConcurrentExecutions"] == 0
        assert account["UnreservedInUse"] == 0
    finally:
        server.stop()
