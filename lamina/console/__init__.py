"""The web console served by `lamina serve` at /console: a static page (plain HTML, CSS
and script, with the vendored uPlot for charts; no build step) that polls the live view
(console/live.py) at /_lamina/live."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from urllib.parse import urlencode

from lamina.api.wire import HttpRequest, HttpResponse

STATIC = Path(__file__).resolve().parent / "static"
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".html": "text/html; charset=utf-8"}  # fmt: skip


class ConsolePages:
    """GET /console (redirected to /console/) and the files under it."""

    def __init__(self, root: Path = STATIC) -> None:
        self.root = root.resolve()
        self._cache: dict[str, tuple[bytes, str]] = {}

    async def handle(self, request: HttpRequest) -> HttpResponse:
        path = request.path
        if path == "/console":
            query = urlencode({k: v[0] for k, v in request.query.items() if v})
            return HttpResponse(
                302, b"", {"Location": "/console/" + (f"?{query}" if query else "")}
            )
        relative = path[len("/console/") :] or "index.html"
        found = self._file(relative)
        if found is None:
            return HttpResponse(404, b"Not found", {"Content-Type": "text/plain"})
        body, content_type = found
        return HttpResponse(200, body, {"Content-Type": content_type, "Cache-Control": "no-cache"})

    def _file(self, relative: str) -> tuple[bytes, str] | None:
        cached = self._cache.get(relative)
        if cached is not None:
            return cached
        target = (self.root / relative).resolve()
        if not target.is_relative_to(self.root) or not target.is_file():
            return None
        content_type = TYPES.get(target.suffix) or (
            mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        )
        found = (target.read_bytes(), content_type)
        self._cache[relative] = found
        return found
