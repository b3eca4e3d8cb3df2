"""A streamed HTTP answer: the function's prelude, then its body as it writes it.

A function that streams with `awslambda.HttpResponseStream.from(stream, {statusCode,
headers, cookies})` writes the content type `application/vnd.awslambda.http-integration-
response`, a JSON prelude, eight NUL bytes, then the body. Any other streamed answer is a
200 with the stream's content type.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from lamina.web.payload import BadResponse, structured
from lamina.web.request import WebResponse

HTTP_INTEGRATION = "application/vnd.awslambda.http-integration-response"
DELIMITER = b"\x00" * 8
PRELUDE_LIMIT = 1 << 20  # a prelude longer than this is not one


async def _chain(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first:
        yield first
    async for chunk in rest:
        yield chunk


async def streamed_answer(content_type: str, chunks: AsyncIterator[bytes]) -> WebResponse:
    """The answer's head once it is known (after the prelude), and its body to follow."""
    if content_type.partition(";")[0].strip().lower() != HTTP_INTEGRATION:
        return WebResponse(200, [("Content-Type", content_type)], chunks)
    buffer = bytearray()
    async for chunk in chunks:
        buffer += chunk
        end = buffer.find(DELIMITER)
        if end >= 0:
            head = _prelude(bytes(buffer[:end]))
            head.body = _chain(bytes(buffer[end + len(DELIMITER) :]), chunks)
            return head
        if len(buffer) > PRELUDE_LIMIT:
            break
    raise BadResponse("the streamed response has no prelude")


def _prelude(text: bytes) -> WebResponse:
    try:
        document: Any = json.loads(text) if text.strip() else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadResponse("the prelude is not JSON") from exc
    if not isinstance(document, dict):
        raise BadResponse("the prelude is not an object")
    document.setdefault("statusCode", 200)
    document.pop("body", None)
    return structured(document, cookies=True, default_type="application/octet-stream")
