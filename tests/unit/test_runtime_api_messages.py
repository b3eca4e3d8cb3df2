"""The Runtime API's answers as bytes: the event handed to a runtime carries the headers
its Invocation names, in the same form as any other answer."""

from __future__ import annotations

import httptools
import pytest

from lamina.sandbox.runtime_api import ACCEPTED, ApiReply, Invocation, encode, event_message


class Parsed:
    def __init__(self, data: bytes) -> None:
        self.headers: dict[str, str] = {}
        self.body = b""
        parser = httptools.HttpResponseParser(self)
        parser.feed_data(data)
        self.status = parser.get_status_code()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode()] = value.decode()

    def on_body(self, body: bytes) -> None:
        self.body += body


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {
            "client_context": '{"custom":{"a":1}}',
            "cognito_identity": '{"id":"x"}',
            "tenant_id": "t-1",
        },
    ],
)
def test_an_event_carries_its_invocations_headers(extra: dict[str, str]) -> None:
    invocation = Invocation(
        "req-1", b'{"n":1}', 1_700_000_000_000, "arn:aws:lambda:f", "Root=1-a", **extra
    )  # type: ignore[arg-type]
    message = event_message(invocation)
    assert message == encode(ApiReply(200, invocation.payload, invocation.headers()))
    parsed = Parsed(message)
    assert parsed.status == 200
    assert parsed.headers == {**invocation.headers(), "Content-Length": "7"}
    assert parsed.body == b'{"n":1}'


def test_the_accepted_answer() -> None:
    parsed = Parsed(encode(ACCEPTED))
    assert (parsed.status, parsed.body) == (202, b'{"status":"OK"}')
    assert parsed.headers["Content-Type"] == "application/json"
