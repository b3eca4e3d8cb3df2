"""AWS's event-stream encoding (application/vnd.amazon.eventstream), which botocore's
EventStream parser reads: each message is a prelude (total and headers lengths, CRC32),
string headers (`:message-type`, `:event-type`, `:content-type`), the payload and a CRC32
of the whole. An event's payload is its blob member marked `eventpayload`, or its other
members as JSON."""

from __future__ import annotations

import binascii
import json
import struct
from typing import Any

from botocore.model import Shape

STRING = 7  # header value type: string


def message(headers: dict[str, str], payload: bytes) -> bytes:
    encoded = b"".join(
        bytes([len(name)]) + name.encode() + bytes([STRING]) + struct.pack(">H", len(value))
        + value.encode()
        for name, value in headers.items()
    )  # fmt: skip
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    head = prelude + struct.pack(">I", binascii.crc32(prelude))
    body = head + encoded + payload
    return body + struct.pack(">I", binascii.crc32(body))


def event(stream_shape: Shape, name: str, members: dict[str, Any]) -> bytes:
    """One event of the stream whose shape is `stream_shape` (its member `name`)."""
    shape = stream_shape.members[name]
    payload_member = next(
        (m for m, s in shape.members.items() if s.serialization.get("eventpayload")), None
    )
    if payload_member is not None:
        payload = bytes(members.get(payload_member) or b"")
        content_type = "application/octet-stream"
    else:
        payload = json.dumps(members, separators=(",", ":")).encode()
        content_type = "application/json"
    headers = {":event-type": name, ":content-type": content_type, ":message-type": "event"}
    return message(headers, payload)
