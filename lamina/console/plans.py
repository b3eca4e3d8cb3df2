"""Plans in the console: `lamina plan` reports kept under `<data dir>/plans/<name>/`, listed
at /console/plans/ and served from there (report.html, report.json, concurrency.png).

`POST /_lamina/plans` plans this server's own recent traffic: the invocations it recorded
(the invocation log, as `lamina trace export` reads it) since `since` seconds ago, under
settings given as YAML (the server's own limits by default), by `lamina plan` in a
process of its own (the replay is CPU work: it stays off the server's event loop). The
answer names the report's address.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from html import escape
from pathlib import Path
from typing import Any

from lamina.api.wire import HttpRequest, HttpResponse
from lamina.config import Settings
from lamina.observe.invocation_log import InvocationLog

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$")
FILES = {
    "report.html": "text/html; charset=utf-8",
    "report.json": "application/json",
    "concurrency.png": "image/png",
    "recommended.yaml": "text/plain; charset=utf-8",
    "validation.json": "application/json",
}
PLAN_TIMEOUT = 300.0  # seconds a plan of the server's traffic may take
JSON = {"Content-Type": "application/json"}


class PlanPages:
    def __init__(self, root: Path, log: InvocationLog, settings: Settings) -> None:
        self.root = root
        self.log = log
        self.settings = settings
        self._running: set[asyncio.Task[Any]] = set()

    # GET /console/plans/[<name>/<file>] -------------------------------------------------
    async def page(self, request: HttpRequest) -> HttpResponse:
        parts = [p for p in request.path.split("/")[3:] if p]
        if not parts:
            return HttpResponse(200, self._index().encode(), {"Content-Type": FILES["report.html"]})
        if len(parts) != 2 or not NAME.match(parts[0]) or parts[1] not in FILES:
            return HttpResponse(404, b"Not found", {"Content-Type": "text/plain"})
        path = self.root / parts[0] / parts[1]
        if not path.is_file():
            return HttpResponse(404, b"Not found", {"Content-Type": "text/plain"})
        body = await asyncio.to_thread(path.read_bytes)
        headers = {"Content-Type": FILES[parts[1]], "Cache-Control": "no-cache"}
        return HttpResponse(200, body, headers)

    def _index(self) -> str:
        rows = []
        for report in sorted(self.root.glob("*/report.json"), key=lambda p: -p.stat().st_mtime):
            try:
                document = json.loads(report.read_text())
            except (OSError, ValueError):
                continue
            name = report.parent.name
            trace = document.get("trace", {})
            total = sum(a["cost"]["total"] for a in document.get("accounts", []))
            throttled = sum(a["throttled"] for a in document.get("accounts", []))
            rows.append(
                f'<tr><td><a href="{escape(name)}/report.html">{escape(name)}</a></td>'
                f"<td>{escape(str(trace.get('format', '')))}</td>"
                f"<td>{trace.get('invocations', 0):,}</td><td>{throttled:,}</td>"
                f"<td>${total:,.4f}</td></tr>"
            )
        body = "".join(rows) or '<tr><td colspan="5">No plans yet.</td></tr>'
        return (
            '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Lamina plans'
            "</title><style>body{font:14px system-ui,sans-serif;margin:24px}td,th{padding:3px "
            '10px;text-align:left}</style></head><body><h1>Plans</h1><p><a href="../">'
            "Console</a></p><table><tr><th>Plan</th><th>Trace</th><th>Invocations</th>"
            f"<th>Throttled</th><th>Cost</th></tr>{body}</table></body></html>"
        )

    # POST /_lamina/plans ----------------------------------------------------------------
    async def plan_traffic(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return _error(405, 'POST a JSON object: {"since": seconds, "settings": YAML}')
        try:
            document = json.loads(request.body or b"{}")
            since = float(document.get("since", 600))
            settings_text = str(document.get("settings") or self._default_settings())
            if not 1 <= since <= 86400 * 2:
                raise ValueError("since must be between 1 and 172800 seconds")
        except (ValueError, TypeError, AttributeError) as exc:
            return _error(400, f"Bad plan request: {exc}")
        name = time.strftime("traffic-%Y%m%dT%H%M%S", time.gmtime()) + f"-{int(since)}s"
        directory = self.root / name
        directory.mkdir(parents=True, exist_ok=True)
        trace = directory / "trace.csv"
        lines = await asyncio.to_thread(self._export, trace, time.time() - since)
        if lines == 0:
            return _error(409, f"No invocations in the last {since:g} s to plan.")
        (directory / "settings.yaml").write_text(settings_text)
        task = asyncio.get_running_loop().create_task(self._run_plan(directory))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        code, output = await task
        if code != 0:
            return _error(400, output.strip() or f"lamina plan exited {code}")
        answer = {"plan": name, "url": f"/console/plans/{name}/report.html", "invocations": lines}
        return HttpResponse(200, json.dumps(answer).encode(), dict(JSON))

    def _default_settings(self) -> str:
        s = self.settings
        return (
            f"account: {{limit: {s.account_concurrency}, unreserved_floor: "
            f"{s.unreserved_floor}, burst: {s.burst}, burst_window: {s.burst_window}, "
            f"request_rate: {s.request_rate}}}\nkeep_alive: {s.keep_alive}\n"
        )

    def _export(self, path: Path, since: float) -> int:
        count = -1
        with path.open("w") as handle:
            for chunk in self.log.read(since):
                handle.write(chunk)
                count += chunk.count("\n")
        return max(0, count)

    async def _run_plan(self, directory: Path) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "lamina.cli",
            "plan",
            str(directory / "trace.csv"),
            "--settings",
            str(directory / "settings.yaml"),
            "--out",
            str(directory),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            async with asyncio.timeout(PLAN_TIMEOUT):
                output, _ = await process.communicate()
        except BaseException:
            process.kill()
            await process.wait()
            raise
        return process.returncode or 0, output.decode(errors="replace")

    async def close(self) -> None:
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)


def _error(status: int, message: str) -> HttpResponse:
    return HttpResponse(status, json.dumps({"message": message}).encode(), dict(JSON))
