"""AWS's rest-xml protocol (S3): method, path and query select the operation; members
travel in the path, the query string, headers and an XML (or raw) payload.

S3's model gives several operations the same method and path (PutObject, CopyObject and
UploadPart are all `PUT /{Bucket}/{Key+}`): a request goes to the route whose literal
query keys are present and, among those, to the one with the most of its required query
and header members present (an `uploadId` and `partNumber`: UploadPart; an
`x-amz-copy-source`: CopyObject). A bucket may also be named by the Host
(virtual-hosted style: `<bucket>.s3.<region>.localhost`, `<bucket>.s3.amazonaws.com`, or
`<bucket>.localhost` for a request signed for S3); any other Host is path style.

XML is read and written by botocore's own rest-xml parser and serializer; the root
element of an answer is S3's (`ListBucketResult`, ...), which the model does not carry.
Errors are S3's `<Error><Code/><Message/>...<RequestId/></Error>`.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from botocore.model import OperationModel, Shape
from botocore.parsers import RestXMLParser
from botocore.serialize import TIMESTAMP_PRECISION_MILLISECOND, RestXMLSerializer

from lamina.api import aws_chunked
from lamina.api.located import UNSET, Rules, bind, place
from lamina.api.shapes import TEXT_SCALARS, text_scalar
from lamina.api.spec import RestRoute, Service
from lamina.api.wire import HttpRequest, HttpResponse, current_request_id
from lamina.context import STATUS
from lamina.errors import AwsError

CONTENT_TYPE = "application/xml"
# The root element of each answer with an XML body, as S3 writes it.
ROOTS = {
    "ListObjectsV2": "ListBucketResult",
    "ListObjects": "ListBucketResult",
    "ListBuckets": "ListAllMyBucketsResult",
    "CreateMultipartUpload": "InitiateMultipartUploadResult",
    "CompleteMultipartUpload": "CompleteMultipartUploadResult",
    "ListParts": "ListPartsResult",
    "ListMultipartUploads": "ListMultipartUploadsResult",
    "DeleteObjects": "DeleteResult",
    "GetBucketNotificationConfiguration": "NotificationConfiguration",
    "GetBucketLocation": "LocationConstraint",
    "ListObjectVersions": "ListVersionsResult",
    "GetBucketAcl": "AccessControlPolicy",
    "GetObjectAcl": "AccessControlPolicy",
    "GetBucketVersioning": "VersioningConfiguration",
    "GetBucketTagging": "Tagging",
    "GetObjectTagging": "Tagging",
}
NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"


class _Serializer(RestXMLSerializer):
    def __init__(self) -> None:
        super().__init__(timestamp_precision=TIMESTAMP_PRECISION_MILLISECOND)

    def element(self, shape: Shape, value: Any, name: str) -> bytes:
        root = ElementTree.Element("")
        self._serialize(shape, value, root, name)
        node = next(iter(root))
        node.attrib.setdefault("xmlns", NAMESPACE)
        return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(
            node, encoding="utf-8", xml_declaration=False
        )

    def header(self, shape: Shape, value: Any) -> str:
        return str(self._convert_header_value(shape, value))


_SERIALIZER = _Serializer()
_PARSER = RestXMLParser()


def _clean(shape: Shape, value: Any) -> Any:
    """`value` with members that are None or not in the shape left out, in model order
    (botocore's serializer stops at the first None)."""
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        return {
            name: _clean(member, value[name])
            for name, member in shape.members.items()
            if value.get(name) is not None
        }
    if kind == "list" and isinstance(value, list):
        return [_clean(shape.member, item) for item in value]
    return value


# Why a request was not let in, in S3's codes (lamina/api/auth.py names the kind).
S3_AUTH: dict[str, tuple[str, int, str]] = {
    "missing": ("AccessDenied", 403, "Access Denied"),
    "unknown": (
        "InvalidAccessKeyId", 403,
        "The AWS Access Key Id you provided does not exist in our records.",
    ),
    "mismatch": ("SignatureDoesNotMatch", 403, ""),
    "expired": (
        "RequestTimeTooSkewed", 403,
        "The difference between the request time and the current time is too large.",
    ),
    "token_expired": ("ExpiredToken", 400, "The provided token has expired."),
    "incomplete": ("AuthorizationHeaderMalformed", 400, ""),
}  # fmt: skip


def s3_auth_error(kind: str, message: str) -> AwsError:
    code, status, text = S3_AUTH[kind]
    if message == "Request has expired.":  # a presigned URL past its X-Amz-Expires
        code, text = "AccessDenied", message
    return AwsError(code, text or message, status)


# Addressing ------------------------------------------------------------------------------
def virtual_bucket(host: str, signed_for_s3: bool) -> str | None:
    """The bucket a virtual-hosted-style Host names, or None (path style)."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.lower()
    for marker in (".s3.", ".s3-"):
        at = name.rfind(marker)
        if at > 0:
            return name[:at]
    if signed_for_s3 and name.endswith(".localhost") and name.count(".") == 1:
        return name[: -len(".localhost")]
    return None


def signed_for(request: HttpRequest, service: str) -> bool:
    """Whether the request's SigV4 credential scope names `service`."""
    scope = f"/{service}/aws4_request"
    if scope in request.headers.get("authorization", ""):
        return True
    return f"%2F{service}%2Faws4_request" in request.raw_query


def claims_s3(request: HttpRequest) -> bool:
    """Whether a request is S3's: signed for S3 (SigV4, or a URL presigned with S3's older
    signature, which only S3 ever had), or sent to an S3 host name."""
    if signed_for(request, "s3") or "AWSAccessKeyId=" in request.raw_query:
        return True
    host = request.headers.get("host", "").lower()
    return host.startswith(("s3.", "s3-")) or virtual_bucket(host, False) is not None


# Routing -----------------------------------------------------------------------------------
@cache
def _required(operation: OperationModel) -> tuple[tuple[str, str], ...]:
    """(location, wire name) of the operation's required query and header members."""
    shape = operation.input_shape
    if shape is None:
        return ()
    found = []
    for name in shape.required_members:
        member = shape.members[name]
        location = member.serialization.get("location")
        if location in ("querystring", "header"):
            wire = member.serialization.get("name", name)
            found.append((location, wire.lower() if location == "header" else wire))
    return tuple(found)


def _present(operation: OperationModel, request: HttpRequest) -> int | None:
    count = 0
    for location, wire in _required(operation):
        if location == "header" and wire not in request.headers:
            return None
        if location == "querystring" and wire not in request.query:
            return None
        count += 1
    return count


def _scalar(shape: Shape, raw: str, path: str) -> Any:
    if shape.type_name == "timestamp":
        try:
            return text_scalar(shape, raw, path)
        except AwsError:
            return raw
    if shape.type_name in TEXT_SCALARS:
        return text_scalar(shape, raw, path)
    return raw


def _label(shape: Shape, text: str, path: str) -> Any:
    return text  # S3's labels are strings: a bucket and a key


def _payload(shape: Shape, body: bytes, path: str) -> Any:
    return _parse_xml(shape, body) if body.strip() else UNSET


_XML_RULES = Rules(label=_label, scalar=_scalar, document=_payload)


Index = tuple[list[RestRoute], dict[str, list[RestRoute]]]
_INDEX: dict[tuple[str, str], Index] = {}


def _index(service: Service, method: str) -> Index:
    """The service's routes of `method`: those without literal query keys, and the others
    by their first key (S3's subresources: `?uploads`, `?notification`, ...)."""
    found = _INDEX.get((service.name, method))
    if found is None:
        plain: list[RestRoute] = []
        keyed: dict[str, list[RestRoute]] = {}
        for route in service.routes:
            if route.method == method:
                if route.static_query:
                    keyed.setdefault(route.static_query[0][0], []).append(route)
                else:
                    plain.append(route)
        found = _INDEX[(service.name, method)] = (plain, keyed)
    return found


class RestXml:
    def route(self, service: Service, request: HttpRequest) -> tuple[OperationModel, Any] | None:
        path = request.path
        bucket = virtual_bucket(request.headers.get("host", ""), signed_for(request, "s3"))
        if bucket is not None:
            path = f"/{bucket}" if path in ("", "/") else f"/{bucket}{path}"
        best: tuple[tuple[int, int, bool, int], Any, Any] | None = None
        query = request.query
        plain, keyed = _index(service, request.method)
        candidates = plain
        if query and keyed:  # only the routes whose first literal key the query has
            candidates = [*plain, *(r for key in query for r in keyed.get(key, ()))]
        for route in candidates:
            labels = route.match(request.method, path, query)
            if labels is None:
                continue
            present = _present(route.operation, request)
            if present is None:
                continue
            # ties go to the current operation (PutBucketNotificationConfiguration, not
            # the deprecated PutBucketNotification at the same path)
            rank = (route.specificity[0], present, not route.operation.deprecated,
                    route.specificity[1])  # fmt: skip
            if best is None or rank > best[0]:
                best = (rank, route.operation, labels)
        if best is None:
            return None
        return best[1], best[2]

    def parse(
        self, service: Service, operation: OperationModel, match: Any, request: HttpRequest
    ) -> dict[str, Any]:
        shape = operation.input_shape
        if shape is None:
            return {}
        body = request.body
        if aws_chunked.is_chunked(request.headers):
            body = _decode(request)
        return bind(shape, match, request, body, _XML_RULES)[0]

    def serialize(
        self, service: Service, operation: OperationModel, result: dict[str, Any]
    ) -> HttpResponse:
        status = int(result.get(STATUS) or operation.http.get("responseCode", 200))
        request_id = current_request_id.get()
        response = HttpResponse(
            status, b"", {"x-amz-request-id": request_id, "x-amz-id-2": request_id}
        )
        shape = operation.output_shape
        if shape is None:
            return response
        payload_name = shape.serialization.get("payload")
        body: dict[str, Any] = {}
        for name, member, value in place(shape, result, response, _SERIALIZER.header):
            if name == payload_name:
                if member.type_name == "blob":
                    response.body = value if isinstance(value, bytes) else bytes(value)
                else:
                    root = member.serialization.get("name", member.name)
                    response.body = _SERIALIZER.element(member, _clean(member, value), root)
                    response.headers["Content-Type"] = CONTENT_TYPE
            elif payload_name is None:
                body[name] = value
        if operation.name == "GetBucketLocation":  # the root element holds the text itself
            region = escape(str(result.get("LocationConstraint") or ""))
            body, response.body = (
                {},
                (
                    '<?xml version="1.0" encoding="UTF-8"?>\n'
                    f'<LocationConstraint xmlns="{NAMESPACE}">{region}</LocationConstraint>'
                ).encode(),
            )
            response.headers["Content-Type"] = CONTENT_TYPE
        if body or (operation.name in ROOTS and not response.body):  # S3 sends <Root/>
            root = ROOTS.get(operation.name, shape.name)
            response.body = _SERIALIZER.element(shape, _clean(shape, body), root)
            response.headers["Content-Type"] = CONTENT_TYPE
        if response.body:  # the length of what is sent; a HEAD's names the object's
            response.headers.pop("Content-Length", None)
        return response

    def serialize_error(self, service: Service, error: AwsError) -> HttpResponse:
        request_id = current_request_id.get()
        extra = "".join(
            f"<{name}>{escape(str(value))}</{name}>" for name, value in error.fields.items()
        )
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{escape(error.code)}</Code><Message>{escape(error.message)}</Message>"
            f"{extra}<RequestId>{request_id}</RequestId><HostId>{request_id}</HostId></Error>"
        )
        headers = {
            "Content-Type": CONTENT_TYPE,
            "x-amz-request-id": request_id,
            "x-amz-id-2": request_id,
            **error.headers,
        }
        return HttpResponse(error.status, body.encode(), headers)


def _decode(request: HttpRequest) -> bytes:
    """An aws-chunked body's payload; its trailers (checksums) join the headers."""
    try:
        decoded = aws_chunked.decode(request.body)
    except aws_chunked.ChunkError as exc:
        raise AwsError("IncompleteBody", f"The request body is not aws-chunked: {exc}") from None
    for name, value in decoded.trailers.items():
        request.headers.setdefault(name, value)
    return decoded.payload()


def _parse_xml(shape: Shape, body: bytes) -> Any:
    try:
        node = _PARSER._parse_xml_string_to_dom(body)
        return _PARSER._parse_shape(shape, node)
    except Exception:
        raise AwsError(
            "MalformedXML",
            "The XML you provided was not well-formed or did not validate against our "
            "published schema",
        ) from None


def http_date(moment: dt.datetime) -> str:
    return moment.strftime("%a, %d %b %Y %H:%M:%S GMT")
