"""Lamina's event-stream encoding read back by botocore's own event-stream parser."""

from __future__ import annotations

import botocore.session
from botocore.eventstream import EventStream
from botocore.parsers import EventStreamJSONParser

from lamina.api import eventstream


class _Raw:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self) -> list[bytes]:
        # Split across messages at odd places: the parser must reassemble them.
        return [self.data[i : i + 7] for i in range(0, len(self.data), 7)]

    def close(self) -> None:
        pass


def test_payload_chunks_and_invoke_complete_round_trip() -> None:
    model = botocore.session.get_session().get_service_model("lambda")
    output = model.operation_model("InvokeWithResponseStream").output_shape
    shape = output.members["EventStream"]
    data = (
        eventstream.event(shape, "PayloadChunk", {"Payload": b"first \x00 bytes"})
        + eventstream.event(shape, "PayloadChunk", {"Payload": b"second"})
        + eventstream.event(
            shape,
            "InvokeComplete",
            {
                "ErrorCode": "Error",
                "ErrorDetails": '{"errorMessage": "x"}',
                "LogResult": "dGFpbA==",
            },
        )
    )
    parser = EventStreamJSONParser()
    events = list(EventStream(_Raw(data), shape, parser, "InvokeWithResponseStream"))
    assert events == [
        {"PayloadChunk": {"Payload": b"first \x00 bytes"}},
        {"PayloadChunk": {"Payload": b"second"}},
        {
            "InvokeComplete": {
                "ErrorCode": "Error",
                "ErrorDetails": '{"errorMessage": "x"}',
                "LogResult": "dGFpbA==",
            }
        },
    ]
