"""Function logs live in the store: a restart, even after `kill -9`, keeps every line
written more than a second before it, and CloudWatch Logs answers with them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.helpers import Server, python_function

PRINTS = "def handler(event, context):\n    print('line', event['n'])\n    return event['n']\n"


def messages(logs: Any, name: str) -> list[str]:
    events = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
    return [e["message"] for e in events]


def test_log_lines_survive_kill_9(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = Server(data_dir).start()
    try:
        lam = first.client()
        python_function(lam, "talker", PRINTS)
        for n in range(3):
            lam.invoke(FunctionName="talker", Payload=f'{{"n": {n}}}'.encode())
        before = messages(first.client("logs"), "talker")
        assert [m for m in before if m.startswith("line")] == [f"line {n}" for n in range(3)]
        time.sleep(1.2)  # at most the last second may be lost to a kill -9
    finally:
        first.kill()
    second = Server(data_dir).start()
    try:
        after = messages(second.client("logs"), "talker")
        assert after == before  # START, the lines, END and REPORT of every invocation
        second.client().invoke(FunctionName="talker", Payload=b'{"n": 3}')
        assert "line 3" in messages(second.client("logs"), "talker")
    finally:
        second.stop()
