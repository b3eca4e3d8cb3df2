"""Links to a function's code, as GetFunction's `Code.Location` hands them out.

AWS answers with a presigned S3 URL valid for 10 minutes; Lamina's link points to its
own `/_lamina/code/<digest>.zip` and carries an expiry and an HMAC-SHA256 of the digest
and expiry under a key of the server's (derived from the accounts' secrets key), so that
with auth on the code is served to whoever GetFunction answered (the owner, or an account
a resource policy lets in), for 10 minutes, and to nobody else.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

LIFETIME_S = 600


class CodeLinks:
    def __init__(self, key: bytes, wall: Callable[[], float] = time.time) -> None:
        self._key = key
        self._wall = wall

    def _signature(self, digest: str, expires: int) -> str:
        return hmac.new(self._key, f"{digest}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def query(self, digest: str) -> str:
        expires = int(self._wall()) + LIFETIME_S
        return f"X-Lamina-Expires={expires}&X-Lamina-Signature={self._signature(digest, expires)}"

    def valid(self, digest: str, expires: str, signature: str) -> bool:
        if not expires.isdigit() or int(expires) < self._wall():
            return False
        expected = self._signature(digest, int(expires))
        return hmac.compare_digest(expected.encode(), signature.encode("latin-1"))


def code_location(endpoint: str, digest: str, links: CodeLinks | None) -> str:
    """Where a code package (or a layer's content) is fetched: signed when `links`."""
    location = f"{endpoint}/_lamina/code/{digest}.zip"
    return f"{location}?{links.query(digest)}" if links is not None else location
