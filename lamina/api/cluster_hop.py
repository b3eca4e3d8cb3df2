"""`POST /_lamina/forward`: the owner's side of the forwarding hop between cluster nodes
(lamina/cluster/forward.py) as HTTP. Mounted public: the hop carries the cluster's
signature, checked by the owner, not a caller's SigV4."""

from __future__ import annotations

import json
import time

from lamina.api.wire import HttpRequest, HttpResponse
from lamina.cluster.forward import (
    META_HEADER,
    RESULT_HEADER,
    SIGNATURE_HEADER,
    HopRefused,
    NotIdle,
    NotSigned,
    Owner,
    encode_result,
)

JSON = {"Content-Type": "application/json"}
# The sender reads 409 as "nothing ran: start one yourself", any other refusal as a
# broken hop.
STATUS: dict[type[HopRefused], int] = {NotSigned: 403, NotIdle: 409}


class HopEndpoint:
    """Reads a hop off the request, has the owner run it, and answers its result."""

    def __init__(self, owner: Owner) -> None:
        self.owner = owner

    async def serve(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return _refused(403, "not signed by this cluster")
        meta = request.headers.get(META_HEADER.lower(), "").encode("latin-1")
        signature = request.headers.get(SIGNATURE_HEADER.lower(), "")
        try:
            result = await self.owner.run(meta, request.body or b"", signature, time.time())
        except HopRefused as refused:
            return _refused(STATUS[type(refused)], refused.message)
        return HttpResponse(200, result.payload, {RESULT_HEADER: encode_result(result)})


def _refused(status: int, message: str) -> HttpResponse:
    body = json.dumps({"message": message}, separators=(",", ":")).encode()
    return HttpResponse(status, body, dict(JSON))
