"""The Runtime API's answers as bytes: the event handed to a runtime carries the headers
its Invocation names, in the same form as any other answer."""

from __future__ import annotations

import httptools
import pytest

from lamina.sandbox.runtime_api import (
    ACCEPTED,
    ApiReply,
    Invocation,
    RuntimeApiServer,
    _Connection,
    encode,
    event_message,
)


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


class Recorder:
    """A RuntimeApiHandler that notes what it is told; the next event waits."""

    def __init__(self) -> None:
        self.told: list[tuple[str, ...]] = []

    def next_invocation(self, deliver: object) -> None:
        self.told.append(("next",))
        return None

    def post_response(self, request_id: str, body: bytes, oversized: bool) -> ApiReply:
        self.told.append(("response", request_id, body.decode(), str(oversized)))
        return ACCEPTED

    def post_error(self, request_id: str, body: bytes, error_type: str | None) -> ApiReply:
        self.told.append(("error", request_id, body.decode(), str(error_type)))
        return ACCEPTED


class Transport:
    def __init__(self) -> None:
        self.written = b""

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return False


def converse(pieces: list[bytes]) -> tuple[list[tuple[str, ...]], bytes, bool]:
    handler = Recorder()
    server = RuntimeApiServer(handler)  # type: ignore[arg-type]
    connection = _Connection(server)
    transport = Transport()
    connection.connection_made(transport)  # type: ignore[arg-type]
    for piece in pieces:
        connection.data_received(piece)
    return handler.told, transport.written, connection.waiting


ANSWER = (
    b"POST /2018-06-01/runtime/invocation/req-1/response HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n"
    b'Content-Length: 7\r\n\r\n{"n":1}'
)
NEXT_GET = b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n\r\n"


@pytest.mark.parametrize(
    "pieces",
    [
        [ANSWER + NEXT_GET],  # as Lamina's runtimes write it: answered without the parser
        [ANSWER[:-3], ANSWER[-3:] + NEXT_GET],  # split across reads
        [ANSWER.replace(b"Host", b"User-Agent: x\r\nHost") + NEXT_GET],  # another header
        [ANSWER, NEXT_GET],
    ],
)
def test_an_answer_and_the_next_get_are_understood_however_they_come(
    pieces: list[bytes],
) -> None:
    told, written, waiting = converse(pieces)
    assert told == [("response", "req-1", '{"n":1}', "False"), ("next",)]
    assert waiting  # the GET waits for its event
    # The 202 goes out with the event when the GET came in the same read, else at once.
    assert written == (encode(ACCEPTED) if pieces[-1] == NEXT_GET else b"")


def test_what_only_looks_like_a_pipelined_answer_goes_through_the_parser() -> None:
    error = ANSWER.replace(b"/response", b"/error")
    told, _, _ = converse([error + NEXT_GET])
    assert told == [("error", "req-1", '{"n":1}', "None"), ("next",)]
    told, _, _ = converse([ANSWER + NEXT_GET + NEXT_GET])  # a second GET behind it waits
    assert told == [("response", "req-1", '{"n":1}', "False"), ("next",)]


def test_lamina_runtimes_answers_skip_the_parser() -> None:
    connection = _Connection(RuntimeApiServer(Recorder()))  # type: ignore[arg-type]
    connection.connection_made(Transport())  # type: ignore[arg-type]
    assert connection._pipelined(ANSWER + NEXT_GET)
    assert not connection._pipelined(ANSWER + NEXT_GET[:-2])  # not whole: the parser's
    assert not connection._pipelined(ANSWER[:-1] + NEXT_GET)
