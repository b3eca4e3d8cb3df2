"""`aws-chunked` request bodies (S3 uploads): the payload in chunks, each
`<hex size>[;chunk-signature=<sig>]\\r\\n<data>\\r\\n`, ended by a zero-size chunk and, for
the `...-TRAILER` forms, trailing headers (`x-amz-checksum-crc32:...`).

`X-Amz-Content-SHA256` names the form: `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` signs each
chunk (its signature chains from the request's own, the seed), `STREAMING-UNSIGNED-
PAYLOAD-TRAILER` signs none, `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER` signs the chunks
and the trailer.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class ChunkError(ValueError):
    """The body is not well-formed aws-chunked."""


@dataclass
class Chunk:
    data: memoryview
    signature: str


@dataclass
class Decoded:
    chunks: list[Chunk] = field(default_factory=list)
    trailers: dict[str, str] = field(default_factory=dict)
    trailer_signature: str = ""

    def payload(self) -> bytes:
        return b"".join(chunk.data for chunk in self.chunks)


def is_chunked(headers: dict[str, str]) -> bool:
    """Whether the request's body is aws-chunked (by its payload hash or its encoding)."""
    return headers.get("x-amz-content-sha256", "").startswith("STREAMING-") or (
        "aws-chunked" in headers.get("content-encoding", "")
    )


def parse(body: bytes) -> Decoded:
    view = memoryview(body)
    decoded = Decoded()
    at = 0
    while True:
        end = body.find(b"\r\n", at)
        if end < 0:
            raise ChunkError("a chunk header is not terminated")
        header = body[at:end].decode("latin-1")
        size_text, _, extension = header.partition(";")
        try:
            size = int(size_text.strip(), 16)
        except ValueError:
            raise ChunkError(f"bad chunk size {size_text[:32]!r}") from None
        signature = ""
        if extension.startswith("chunk-signature="):
            signature = extension[len("chunk-signature=") :].strip()
        start = end + 2
        if size == 0:
            decoded.chunks.append(Chunk(view[start:start], signature))
            _trailers(body[start:].decode("latin-1"), decoded)
            return decoded
        if start + size + 2 > len(body) or body[start + size : start + size + 2] != b"\r\n":
            raise ChunkError("a chunk is shorter than its size says")
        decoded.chunks.append(Chunk(view[start : start + size], signature))
        at = start + size + 2


def _trailers(text: str, decoded: Decoded) -> None:
    for line in text.split("\r\n"):
        name, sep, value = line.partition(":")
        if not sep:
            continue
        name = name.strip().lower()
        if name == "x-amz-trailer-signature":
            decoded.trailer_signature = value.strip()
        else:
            decoded.trailers[name] = value.strip()


def decode(body: bytes) -> Decoded:
    """The chunks and trailers of an aws-chunked body (ChunkError if malformed)."""
    return parse(body)


def verify(body: bytes, keyed: hmac.HMAC, stamp: str, scope: str, seed: str, trailer: bool) -> bool:
    """Whether every chunk signature (and the trailer's, for the -TRAILER form) chains
    correctly from the seed signature, under the request's signing key (`keyed`: an HMAC
    keyed with it, copied for each signature)."""
    try:
        decoded = parse(body)
    except ChunkError:
        return False
    previous = seed
    for chunk in decoded.chunks:
        string_to_sign = "\n".join(
            (
                "AWS4-HMAC-SHA256-PAYLOAD",
                stamp,
                scope,
                previous,
                EMPTY_SHA256,
                hashlib.sha256(chunk.data).hexdigest(),
            )
        )
        expected = _sign(keyed, string_to_sign)
        if not hmac.compare_digest(expected, chunk.signature):
            return False
        previous = expected
    if trailer:
        lines = "".join(f"{name}:{value}\n" for name, value in decoded.trailers.items())
        string_to_sign = "\n".join(
            (
                "AWS4-HMAC-SHA256-TRAILER",
                stamp,
                scope,
                previous,
                hashlib.sha256(lines.encode()).hexdigest(),
            )
        )
        expected = _sign(keyed, string_to_sign)
        return hmac.compare_digest(expected, decoded.trailer_signature)
    return True


def _sign(keyed: hmac.HMAC, text: str) -> str:
    mac = keyed.copy()
    mac.update(text.encode())
    return mac.hexdigest()
