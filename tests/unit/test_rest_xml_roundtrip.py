"""Lamina's rest-xml layer (S3) against botocore's own serializer and parser.

Requests: botocore serializes each built S3 operation as boto3 puts it on the wire (path
style), Lamina routes and parses it, and the parameters come back equal. Responses:
Lamina serializes a result, botocore's rest-xml parser reads it, and it comes back equal.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import parse_qs, urlsplit

import botocore.parsers
import botocore.serialize
import pytest
from botocore.awsrequest import HTTPHeaders, prepare_request_dict

from lamina.api.protocols import PROTOCOLS
from lamina.api.spec import service
from lamina.api.wire import HttpRequest
from lamina.services.s3.provider import S3Provider

S3 = service("s3")
REST_XML = PROTOCOLS["rest-xml"]
WHEN = dt.datetime(2026, 12, 1, 12, 30, 15, tzinfo=dt.UTC)
OWNER = {"DisplayName": "000000000000", "ID": "ab" * 32}
UPLOAD = "upload-id_0123456789"
BUCKET = {"Bucket": "my-bucket"}
OBJECT = {"Bucket": "my-bucket", "Key": "dir/a b+c/ünï.txt"}

REQUESTS: dict[str, dict[str, Any]] = {
    "ListBuckets": {},
    "CreateBucket": {**BUCKET, "CreateBucketConfiguration": {"LocationConstraint": "eu-west-1"}},
    "DeleteBucket": BUCKET,
    "HeadBucket": BUCKET,
    "GetBucketLocation": BUCKET,
    "GetBucketAcl": BUCKET,
    "GetBucketCors": BUCKET,
    "GetBucketPolicy": BUCKET,
    "GetBucketTagging": BUCKET,
    "GetBucketVersioning": BUCKET,
    "GetBucketNotificationConfiguration": BUCKET,
    "PutBucketNotificationConfiguration": {
        **BUCKET,
        "NotificationConfiguration": {
            "LambdaFunctionConfigurations": [
                {
                    "Id": "uploads",
                    "LambdaFunctionArn": "arn:aws:lambda:us-east-1:000000000000:function:f",
                    "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:Delete"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "in/"}]}},
                }
            ],
            "QueueConfigurations": [
                {"QueueArn": "arn:aws:sqs:us-east-1:000000000000:q",
                 "Events": ["s3:ObjectCreated:Put"]}
            ],
        },
    },
    "PutObject": {
        **OBJECT,
        "Body": b"\x00binary \xff body",
        "ContentType": "text/plain",
        "Metadata": {"colour": "blue"},
        "IfNoneMatch": "*",
    },
    "GetObject": {**OBJECT, "Range": "bytes=0-9", "IfMatch": '"abc"'},
    "HeadObject": {**OBJECT, "ChecksumMode": "ENABLED"},
    "DeleteObject": OBJECT,
    "DeleteObjects": {**BUCKET,
                      "Delete": {"Objects": [{"Key": "a"}, {"Key": "b/c"}], "Quiet": True}},
    "CopyObject": {**OBJECT, "CopySource": "src-bucket/src key", "MetadataDirective": "REPLACE"},
    "ListObjectsV2": {
        **BUCKET,
        "Prefix": "dir/",
        "Delimiter": "/",
        "MaxKeys": 10,
        "ContinuationToken": "dG9rZW4=",
        "FetchOwner": True,
    },
    "ListObjects": {**BUCKET, "Prefix": "dir/", "Marker": "dir/a", "MaxKeys": 5},
    "ListObjectVersions": {**BUCKET, "Prefix": "dir/", "KeyMarker": "dir/a"},
    "GetObjectAcl": OBJECT,
    "GetObjectTagging": OBJECT,
    "CreateMultipartUpload": {**OBJECT, "ContentType": "application/zip"},
    "UploadPart": {**OBJECT, "UploadId": UPLOAD, "PartNumber": 3, "Body": b"part bytes"},
    "UploadPartCopy": {
        **OBJECT,
        "UploadId": UPLOAD,
        "PartNumber": 2,
        "CopySource": "src-bucket/big",
        "CopySourceRange": "bytes=0-5242879",
    },
    "CompleteMultipartUpload": {
        **OBJECT,
        "UploadId": UPLOAD,
        "MultipartUpload": {"Parts": [{"PartNumber": 1, "ETag": '"e1"'},
                                      {"PartNumber": 2, "ETag": '"e2"'}]},
    },
    "AbortMultipartUpload": {**OBJECT, "UploadId": UPLOAD},
    "ListParts": {**OBJECT, "UploadId": UPLOAD, "MaxParts": 2, "PartNumberMarker": 1},
    "ListMultipartUploads": {**BUCKET, "Prefix": "dir/"},
}  # fmt: skip

RESULTS: dict[str, dict[str, Any]] = {
    "ListBuckets": {
        "Buckets": [{"Name": "b1", "CreationDate": WHEN, "BucketRegion": "us-east-1"}],
        "Owner": OWNER,
    },
    "CreateBucket": {"Location": "/my-bucket", "BucketArn": "arn:aws:s3:::my-bucket"},
    "HeadBucket": {"BucketRegion": "eu-west-1", "BucketArn": "arn:aws:s3:::my-bucket"},
    "GetBucketLocation": {"LocationConstraint": "eu-west-1"},
    "GetBucketAcl": {
        "Owner": OWNER,
        "Grants": [{"Grantee": {**OWNER, "Type": "CanonicalUser"}, "Permission": "FULL_CONTROL"}],
    },
    "GetBucketVersioning": {},
    "GetBucketNotificationConfiguration": REQUESTS["PutBucketNotificationConfiguration"][
        "NotificationConfiguration"
    ],
    "PutObject": {"ETag": '"0123abcd"', "ChecksumCRC32": "DUoRhQ=="},
    "GetObject": {
        "Body": b"0123456789",
        "ContentLength": 10,
        "ContentType": "text/plain",
        "ETag": '"0123abcd"',
        "LastModified": WHEN,
        "AcceptRanges": "bytes",
        "ContentRange": "bytes 0-9/100",
        "Metadata": {"colour": "blue"},
    },
    "HeadObject": {
        "ContentLength": 100,
        "ContentType": "text/plain",
        "ETag": '"0123abcd"',
        "LastModified": WHEN,
        "AcceptRanges": "bytes",
        "ChecksumCRC32": "DUoRhQ==",
    },
    "DeleteObjects": {"Deleted": [{"Key": "a"}, {"Key": "b/c"}]},
    "CopyObject": {"CopyObjectResult": {"ETag": '"0123abcd"', "LastModified": WHEN}},
    "ListObjectsV2": {
        "IsTruncated": True,
        "Contents": [
            {
                "Key": "dir/a b+c.txt",
                "LastModified": WHEN,
                "ETag": '"0123abcd"',
                "Size": 3,
                "StorageClass": "STANDARD",
                "Owner": OWNER,
            }
        ],
        "Name": "my-bucket",
        "Prefix": "dir/",
        "Delimiter": "/",
        "MaxKeys": 2,
        "CommonPrefixes": [{"Prefix": "dir/sub/"}],
        "KeyCount": 2,
        "NextContinuationToken": "bmV4dA==",
    },
    "GetObjectTagging": {"TagSet": []},
    "ListObjectVersions": {
        "IsTruncated": False,
        "KeyMarker": "",
        "VersionIdMarker": "",
        "Versions": [
            {
                "ETag": '"0123abcd"',
                "Size": 3,
                "StorageClass": "STANDARD",
                "Key": "k",
                "VersionId": "null",
                "IsLatest": True,
                "LastModified": WHEN,
                "Owner": OWNER,
            }
        ],
        "Name": "my-bucket",
        "Prefix": "",
        "MaxKeys": 1000,
    },
    "CreateMultipartUpload": {"Bucket": "my-bucket", "Key": "k", "UploadId": UPLOAD},
    "UploadPart": {"ETag": '"e1"'},
    "UploadPartCopy": {"CopyPartResult": {"ETag": '"e2"', "LastModified": WHEN}},
    "CompleteMultipartUpload": {
        "Location": "http://127.0.0.1:9700/my-bucket/k",
        "Bucket": "my-bucket",
        "Key": "k",
        "ETag": '"abc-2"',
    },
    "ListParts": {
        "Bucket": "my-bucket",
        "Key": "k",
        "UploadId": UPLOAD,
        "PartNumberMarker": 0,
        "NextPartNumberMarker": 1,
        "MaxParts": 1000,
        "IsTruncated": False,
        "Parts": [{"PartNumber": 1, "LastModified": WHEN, "ETag": '"e1"', "Size": 5}],
        "Initiator": OWNER,
        "Owner": OWNER,
        "StorageClass": "STANDARD",
    },
}


def wire_request(name: str, params: dict[str, Any]) -> HttpRequest:
    operation = S3.model.operation_model(name)
    serialized = botocore.serialize.create_serializer("rest-xml").serialize_to_request(
        params, operation
    )
    prepare_request_dict(serialized, "http://127.0.0.1:9700")
    url = urlsplit(serialized["url"])
    body = serialized["body"]
    if isinstance(body, str):
        body = body.encode()
    headers = {k.lower(): str(v) for k, v in serialized["headers"].items()}
    headers["host"] = "127.0.0.1:9700"
    return HttpRequest(
        serialized["method"],
        url.path,
        parse_qs(url.query, keep_blank_values=True),
        headers,
        bytes(body or b""),
        raw_query=url.query,
    )


def test_every_built_operation_is_covered() -> None:
    built = sorted(name for name in S3.model.operation_names if hasattr(S3Provider, name))
    assert built == sorted(REQUESTS)


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_request_round_trip(name: str) -> None:
    params = REQUESTS[name]
    request = wire_request(name, params)
    found = REST_XML.route(S3, request)
    assert found is not None, f"no route for {request.method} {request.path}"
    operation, match = found
    assert operation.name == name
    assert REST_XML.parse(S3, operation, match, request) == params


@pytest.mark.parametrize("name", sorted(set(RESULTS) - {"GetBucketLocation"}))
def test_response_round_trip(name: str) -> None:
    operation = S3.model.operation_model(name)
    response = REST_XML.serialize(S3, operation, RESULTS[name])
    headers = dict(response.headers)
    if response.body:  # what the HTTP layer adds as it sends the body
        headers["Content-Length"] = str(len(response.body))
    parsed = botocore.parsers.create_parser("rest-xml").parse(
        {
            "status_code": response.status,
            "headers": HTTPHeaders.from_dict(headers),
            "body": response.body,
        },
        operation.output_shape,
    )
    parsed.pop("ResponseMetadata", None)
    if parsed.get("Metadata") == {} and "Metadata" not in RESULTS[name]:
        del parsed["Metadata"]  # botocore's parser fills an absent header map with {}
    if isinstance(parsed.get("Body"), str):  # a raw parse hands the streamed body over as is
        parsed["Body"] = parsed["Body"].encode()
    assert parsed == RESULTS[name]


def test_bucket_location_is_the_root_elements_text() -> None:
    """botocore reads GetBucketLocation with a handler of its own (the root's text)."""
    operation = S3.model.operation_model("GetBucketLocation")
    for region, text in (("eu-west-1", b">eu-west-1</LocationConstraint>"),
                         (None, b"></LocationConstraint>")):  # fmt: skip
        response = REST_XML.serialize(S3, operation, {"LocationConstraint": region})
        assert response.body.endswith(text)
        assert b'<LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/"' in (
            response.body
        )
