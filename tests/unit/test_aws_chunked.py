"""aws-chunked bodies: decoded, and their chunk signatures checked against AWS's own
worked example (S3's "Signature Calculations for the Authorization Header: Transferring
Payload in Multiple Chunks")."""

from __future__ import annotations

from lamina.api import aws_chunked
from lamina.api.auth import keyed_hmac

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
STAMP = "20130524T000000Z"
SCOPE = "20130524/us-east-1/s3/aws4_request"
SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
SIGNATURES = (
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
)


def example_body() -> bytes:
    sizes = (65536, 1024, 0)
    return b"".join(
        b"%x;chunk-signature=%s\r\n" % (size, sig.encode()) + b"a" * size + b"\r\n"
        for size, sig in zip(sizes, SIGNATURES, strict=True)
    )


def test_aws_example_verifies_and_decodes() -> None:
    key = keyed_hmac(SECRET, "20130524", "us-east-1", "s3")
    body = example_body()
    assert aws_chunked.verify(body, key, STAMP, SCOPE, SEED, trailer=False)
    assert aws_chunked.decode(body).payload() == b"a" * 66560


def test_a_changed_byte_or_seed_fails() -> None:
    key = keyed_hmac(SECRET, "20130524", "us-east-1", "s3")
    body = bytearray(example_body())
    body[200] = ord("b")
    assert not aws_chunked.verify(bytes(body), key, STAMP, SCOPE, SEED, trailer=False)
    assert not aws_chunked.verify(example_body(), key, STAMP, SCOPE, "0" * 64, trailer=False)


def test_unsigned_trailer_form() -> None:
    body = b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n"
    decoded = aws_chunked.decode(body)
    assert decoded.payload() == b"hello world"
    assert decoded.trailers == {"x-amz-checksum-crc32": "DUoRhQ=="}
