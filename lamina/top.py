"""`lamina top`: a live terminal view of concurrency per function against its limits,
throttles per second and cold starts, drawn with rich from the server's live view."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

BAR = 20


class Unreachable(Exception):
    pass


def fetch(endpoint: str, region: str, account: str, timeout: float = 5.0) -> dict[str, Any]:
    from lamina.client_auth import headers

    params = {"region": region, "seconds": 60}
    if account:
        params["account"] = account
    url = f"{endpoint}/_lamina/live?{urlencode(params)}"
    try:
        request = urllib.request.Request(url, headers=headers("GET", url, region))
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            data: dict[str, Any] = json.load(answer)
            return data
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise Unreachable(f"cannot reach Lamina at {endpoint}: {exc}") from exc


def bar(used: int, provisioned_busy: int, limit: int | None) -> Text:
    """`used` of `limit` as a bar; the provisioned part in green, the rest in blue, red
    when at the limit."""
    text = Text()
    if not limit:
        text.append("·" * BAR, style="dim")
        return text
    filled = min(BAR, round(BAR * used / limit)) if used else 0
    green = min(filled, round(BAR * provisioned_busy / limit)) if provisioned_busy else 0
    full = used >= limit
    text.append("█" * green, style="green")
    text.append("█" * (filled - green), style="red" if full else "blue")
    text.append("░" * (BAR - filled), style="dim")
    return text


def _rate(totals: dict[str, Any], name: str, seconds: int) -> str:
    value = totals.get(name, 0) / max(seconds, 1)
    return f"{value:.1f}" if value else "0"


def render(data: dict[str, Any]) -> Group:
    totals = data["totals"]
    seconds = data.get("recent_seconds", 5)
    recent = totals.get("recent", {})
    minute = totals["last_minute"]
    head = Text()
    head.append("Lamina top", style="bold")
    head.append(f"  account {data['account']} · {data['region']}  ", style="dim")
    head.append(f"concurrent {totals['concurrency']}/{totals['limit']}  ")
    head.append(f"unreserved {totals['unreserved_in_use']}/{totals['unreserved_pool']}  ")
    head.append(f"claimed {totals['claimed']}  ")
    head.append(f"throttles/s {_rate(recent, 'throttles', seconds)}  ", style="yellow")
    head.append(f"invocations/s {_rate(recent, 'invocations', seconds)}  ")
    head.append(f"cold starts 1m {minute['cold_starts']}")
    table = Table(expand=True, box=None, header_style="bold dim", pad_edge=False)
    table.add_column("Function", no_wrap=True)
    table.add_column("Concurrency", no_wrap=True)
    table.add_column("Now/Limit", justify="right")
    table.add_column("Peak 1m", justify="right")
    table.add_column("Reserved", justify="right")
    table.add_column("Prov busy/ready/cfg", justify="right")
    table.add_column("Inv/s", justify="right")
    table.add_column("Thr/s", justify="right")
    table.add_column("Thr 1m", justify="right")
    table.add_column("Cold 1m", justify="right")
    table.add_column("Err 1m", justify="right")
    table.add_column("Avg ms", justify="right")
    pool = totals.get("unreserved_pool")
    for function in sorted(
        data["functions"],
        key=lambda f: (-f["concurrency"], -f["last_minute"]["invocations"], f["name"]),
    ):
        minute_f = function["last_minute"]
        recent_f = function.get("recent", {})
        reserved = function["reserved"]
        limit = reserved if reserved is not None else pool
        throttles_now = _rate(recent_f, "throttles", seconds)
        average = minute_f["duration_avg"]
        table.add_row(
            function["name"],
            bar(function["concurrency"], function["provisioned_busy"], limit),
            f"{function['concurrency']}/{limit if limit is not None else '-'}",
            str(minute_f["peak_concurrency"]),
            "-" if reserved is None else str(reserved),
            (
                f"{function['provisioned_busy']}/{function['provisioned_ready']}/"
                f"{function['provisioned']}"
                if function["provisioned"]
                else "-"
            ),
            _rate(recent_f, "invocations", seconds),
            Text(throttles_now, style="yellow" if throttles_now != "0" else ""),
            str(minute_f["throttles"]),
            str(minute_f["cold_starts"]),
            Text(str(minute_f["errors"]), style="red" if minute_f["errors"] else ""),
            "-" if average is None else f"{average:.1f}",
        )
    if not data["functions"]:
        table.add_row("(no functions)", "", "", "", "", "", "", "", "", "", "", "")
    return Group(head, table)


def run(
    endpoint: str,
    region: str,
    account: str,
    interval: float = 1.0,
    once: bool = False,
    iterations: int = 0,
    console: Console | None = None,
) -> int:
    """Draw until interrupted (or `iterations` frames, or one with `once`)."""
    console = console or Console()
    try:
        if once:
            console.print(render(fetch(endpoint, region, account)))
            return 0
        frames = 0
        with Live(
            render(fetch(endpoint, region, account)),
            console=console,
            refresh_per_second=4,
            screen=False,
        ) as live:
            while True:
                frames += 1
                if iterations and frames >= iterations:
                    return 0
                time.sleep(interval)
                live.update(render(fetch(endpoint, region, account)))
    except Unreachable as exc:
        console.print(f"[red]{exc}[/red]")
        return 1
    except KeyboardInterrupt:
        return 0
