"""`lamina trace export --since 10m [--until TIME] [--out FILE]`: what a running server saw,
one line per invocation (GET /_lamina/trace), as a trace `lamina plan` replays."""

from __future__ import annotations

import argparse
import calendar
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO

from lamina.config import env_default

RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
FORMATS = (
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%MZ",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d",
)


def add_parser(commands: argparse._SubParsersAction) -> None:
    trace = commands.add_parser("trace", help="traffic traces: export what a server saw")
    actions = trace.add_subparsers(dest="action", required=True)
    export = actions.add_parser(
        "export", help="one line per invocation the server saw (for lamina plan)"
    )
    export.add_argument(
        "--since",
        required=True,
        help="how far back: 10m, 2h, 1d, an ISO time (UTC) or epoch seconds",
    )
    export.add_argument("--until", help="the end, in the same forms (default: now)")
    export.add_argument("--out", type=Path, help="write here (default: standard output)")
    export.add_argument("--account", help="only this account's invocations")
    export.add_argument("--endpoint", default=env_default("ENDPOINT", "http://127.0.0.1:9700"))
    export.add_argument("--region", help="only this region's invocations")


def moment(text: str, now: float | None = None) -> float:
    """Epoch seconds from `10m` (ago), an ISO time in UTC or epoch seconds."""
    now = time.time() if now is None else now
    text = text.strip()
    found = RELATIVE.match(text)
    if found:
        return now - float(found[1]) * UNITS[found[2]]
    try:
        return float(text)
    except ValueError:
        pass
    for pattern in FORMATS:
        try:
            return float(calendar.timegm(time.strptime(text, pattern)))
        except ValueError:
            continue
    raise ValueError(
        f"{text!r} is not a time: give 10m, 2h or 1d (ago), an ISO time such as "
        "2026-01-31T08:00:00Z, or epoch seconds"
    )


def url(
    endpoint: str, since: float, until: float | None, account: str | None, region: str | None
) -> str:
    query = {"since": f"{since:.6f}"}
    if until is not None:
        query["until"] = f"{until:.6f}"
    if account:
        query["account"] = account
    if region:
        query["region"] = region
    return f"{endpoint.rstrip('/')}/_lamina/trace?{urllib.parse.urlencode(query)}"


def run(args: argparse.Namespace) -> int:
    try:
        since = moment(args.since)
        until = moment(args.until) if args.until else None
    except ValueError as exc:
        print(f"lamina trace export: {exc}", file=sys.stderr)
        return 2
    address = url(args.endpoint, since, until, args.account, args.region)
    try:
        with urllib.request.urlopen(address, timeout=60) as response:
            if args.out is not None:
                with args.out.open("wb") as handle:
                    lines = _copy(response, handle)
                print(f"wrote {lines - 1:,} invocations to {args.out}", file=sys.stderr)
            else:
                _copy(response, sys.stdout.buffer)
    except urllib.error.HTTPError as exc:
        print(
            f"lamina trace export: {exc.code} {exc.read().decode(errors='replace')}",
            file=sys.stderr,
        )
        return 1
    except urllib.error.URLError as exc:
        print(f"cannot reach Lamina at {args.endpoint}: {exc.reason}", file=sys.stderr)
        return 1
    return 0


def _copy(source: BinaryIO, target: BinaryIO) -> int:
    lines = 0
    while chunk := source.read(65536):
        target.write(chunk)
        lines += chunk.count(b"\n")
    target.flush()
    return lines
