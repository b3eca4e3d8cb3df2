"""S3 against a real `lamina serve`: boto3 (path-style and virtual-hosted-style), the AWS
CLI's `aws s3 cp` / `aws s3 ls`, S3's errors, listings, ranges, copies, multipart
uploads, and functions created from code in a bucket."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.e2e.test_aws_cli import AWS, cli_env
from tests.helpers import CREDENTIALS, PYTHON_RUNTIME, ROLE, Server, make_zip

MB = 1024 * 1024


@pytest.fixture
def s3(server: Server) -> Any:
    return server.client("s3")


def error_of(call: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    found: dict[str, Any] = caught.value.response["Error"]
    found["Status"] = caught.value.response["ResponseMetadata"]["HTTPStatusCode"]
    return found


def s3_cli(server: Server, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(AWS), "--endpoint-url", server.endpoint, "s3", *args],
        env=cli_env(tmp_path, "us-east-1"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_buckets_and_their_errors(s3: Any) -> None:
    assert s3.create_bucket(Bucket="first-bucket")["Location"] == "/first-bucket"
    s3.head_bucket(Bucket="first-bucket")
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert "first-bucket" in names
    # us-east-1 answers its owner 200 again; another region says it is already theirs.
    s3.create_bucket(Bucket="first-bucket")
    assert s3.get_bucket_location(Bucket="first-bucket")["LocationConstraint"] is None
    bad = error_of(s3.create_bucket, Bucket="No_Such")
    assert (bad["Code"], bad["Status"]) == ("InvalidBucketName", 400)
    missing = error_of(s3.get_object, Bucket="not-a-bucket", Key="k")
    assert (missing["Code"], missing["Status"]) == ("NoSuchBucket", 404)
    assert missing["Message"] == "The specified bucket does not exist"
    assert missing["BucketName"] == "not-a-bucket"
    assert error_of(s3.head_bucket, Bucket="not-a-bucket")["Code"] == "404"
    s3.put_object(Bucket="first-bucket", Key="k", Body=b"x")
    # What deployment tools read first: settings this bucket does not have, said as S3 does.
    assert "Status" not in s3.get_bucket_versioning(Bucket="first-bucket")
    assert error_of(s3.get_bucket_policy, Bucket="first-bucket")["Code"] == "NoSuchBucketPolicy"
    assert error_of(s3.get_bucket_tagging, Bucket="first-bucket")["Code"] == "NoSuchTagSet"
    acl = s3.get_bucket_acl(Bucket="first-bucket")
    assert [g["Permission"] for g in acl["Grants"]] == ["FULL_CONTROL"]
    assert acl["Grants"][0]["Grantee"]["ID"] == acl["Owner"]["ID"]
    assert s3.get_object_tagging(Bucket="first-bucket", Key="k")["TagSet"] == []
    full = error_of(s3.delete_bucket, Bucket="first-bucket")
    assert (full["Code"], full["Status"]) == ("BucketNotEmpty", 409)
    s3.delete_object(Bucket="first-bucket", Key="k")
    s3.delete_bucket(Bucket="first-bucket")
    assert error_of(s3.head_bucket, Bucket="first-bucket")["Code"] == "404"


def test_other_regions_and_accounts(server: Server) -> None:
    west = server.client("s3", region="eu-west-1")
    refused = error_of(west.create_bucket, Bucket="west-bucket")
    assert refused["Code"] == "IllegalLocationConstraintException"
    west.create_bucket(
        Bucket="west-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    assert west.get_bucket_location(Bucket="west-bucket")["LocationConstraint"] == "eu-west-1"
    again = error_of(
        west.create_bucket,
        Bucket="west-bucket",
        CreateBucketConfiguration={"LocationConstraint": "eu-west-1"},
    )
    assert (again["Code"], again["Status"]) == ("BucketAlreadyOwnedByYou", 409)
    other = server.client(
        "s3", credentials={"aws_access_key_id": "111111111111", "aws_secret_access_key": "x"}
    )
    taken = error_of(other.create_bucket, Bucket="west-bucket")
    assert (taken["Code"], taken["Status"]) == ("BucketAlreadyExists", 409)
    assert error_of(other.list_objects_v2, Bucket="west-bucket")["Code"] == "AccessDenied"
    assert "west-bucket" not in [b["Name"] for b in other.list_buckets()["Buckets"]]


def test_objects_ranges_conditions_and_copies(s3: Any) -> None:
    s3.create_bucket(Bucket="objects")
    body = b"0123456789" * 10
    put = s3.put_object(
        Bucket="objects",
        Key="dir/a b+c.txt",
        Body=body,
        ContentType="text/plain",
        Metadata={"colour": "blue"},
    )
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = s3.get_object(Bucket="objects", Key="dir/a b+c.txt")
    assert got["Body"].read() == body
    assert (got["ContentType"], got["Metadata"], got["ContentLength"]) == (
        "text/plain",
        {"colour": "blue"},
        100,
    )
    head = s3.head_object(Bucket="objects", Key="dir/a b+c.txt")
    assert (head["ContentLength"], head["ETag"]) == (100, put["ETag"])
    part = s3.get_object(Bucket="objects", Key="dir/a b+c.txt", Range="bytes=10-19")
    assert part["Body"].read() == b"0123456789"
    assert part["ContentRange"] == "bytes 10-19/100"
    assert part["ResponseMetadata"]["HTTPStatusCode"] == 206
    tail = s3.get_object(Bucket="objects", Key="dir/a b+c.txt", Range="bytes=-5")
    assert tail["Body"].read() == b"56789"
    beyond = error_of(s3.get_object, Bucket="objects", Key="dir/a b+c.txt", Range="bytes=100-")
    assert (beyond["Code"], beyond["Status"]) == ("InvalidRange", 416)
    missing = error_of(s3.get_object, Bucket="objects", Key="nope")
    assert (missing["Code"], missing["Status"], missing["Key"]) == ("NoSuchKey", 404, "nope")
    assert error_of(s3.head_object, Bucket="objects", Key="nope")["Code"] == "404"
    changed = error_of(s3.get_object, Bucket="objects", Key="dir/a b+c.txt", IfMatch='"0000"')
    assert (changed["Code"], changed["Status"]) == ("PreconditionFailed", 412)
    exists = error_of(
        s3.put_object, Bucket="objects", Key="dir/a b+c.txt", Body=b"", IfNoneMatch="*"
    )
    assert exists["Code"] == "PreconditionFailed"
    copied = s3.copy_object(
        Bucket="objects", Key="copy", CopySource={"Bucket": "objects", "Key": "dir/a b+c.txt"}
    )
    assert copied["CopyObjectResult"]["ETag"] == put["ETag"]
    again = s3.get_object(Bucket="objects", Key="copy")
    assert (again["Body"].read(), again["Metadata"]) == (body, {"colour": "blue"})
    itself = error_of(s3.copy_object, Bucket="objects", Key="copy", CopySource="objects/copy")
    assert itself["Code"] == "InvalidRequest"
    bad_md5 = error_of(
        s3.put_object, Bucket="objects", Key="x", Body=b"abc", ContentMD5="AAAAAAAAAAAAAAAAAAAAAA=="
    )
    assert bad_md5["Code"] == "BadDigest"
    too_long = error_of(s3.put_object, Bucket="objects", Key="k" * 1025, Body=b"")
    assert (too_long["Code"], too_long["Status"]) == ("KeyTooLongError", 400)
    big_metadata = error_of(
        s3.put_object, Bucket="objects", Key="m", Body=b"", Metadata={"m": "v" * 2048}
    )
    assert big_metadata["Code"] == "MetadataTooLarge"
    empty = s3.put_object(Bucket="objects", Key="empty", Body=b"")
    assert empty["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'
    assert s3.get_object(Bucket="objects", Key="empty")["Body"].read() == b""
    gone = s3.delete_objects(
        Bucket="objects", Delete={"Objects": [{"Key": "copy"}, {"Key": "empty"}]}
    )
    assert sorted(d["Key"] for d in gone["Deleted"]) == ["copy", "empty"]
    assert error_of(s3.head_object, Bucket="objects", Key="copy")["Code"] == "404"


def test_listing_prefixes_delimiters_and_pages(s3: Any) -> None:
    s3.create_bucket(Bucket="listing")
    keys = ["a.txt", "b/1", "b/2", "b/c/3", "c/4", "d", "é/5", "b+c"]
    for key in keys:
        s3.put_object(Bucket="listing", Key=key, Body=key.encode())
    everything = s3.list_objects_v2(Bucket="listing")
    assert [o["Key"] for o in everything["Contents"]] == sorted(keys, key=lambda k: k.encode())
    assert everything["KeyCount"] == len(keys)
    top = s3.list_objects_v2(Bucket="listing", Delimiter="/")
    assert [o["Key"] for o in top["Contents"]] == ["a.txt", "b+c", "d"]
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["b/", "c/", "é/"]
    under = s3.list_objects_v2(Bucket="listing", Prefix="b/", Delimiter="/")
    assert [o["Key"] for o in under["Contents"]] == ["b/1", "b/2"]
    assert [p["Prefix"] for p in under["CommonPrefixes"]] == ["b/c/"]
    seen: list[str] = []
    token: dict[str, str] = {}
    for _ in range(10):
        page = s3.list_objects_v2(Bucket="listing", Delimiter="/", MaxKeys=2, **token)
        seen += [o["Key"] for o in page.get("Contents", [])]
        seen += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        if not page["IsTruncated"]:
            break
        token = {"ContinuationToken": page["NextContinuationToken"]}
    assert sorted(seen) == sorted(["a.txt", "b+c", "d", "b/", "c/", "é/"])
    after = s3.list_objects_v2(Bucket="listing", StartAfter="b/2")
    assert after["Contents"][0]["Key"] == "b/c/3"
    versions = s3.list_object_versions(Bucket="listing", Prefix="b/")["Versions"]
    assert [(v["Key"], v["VersionId"], v["IsLatest"]) for v in versions] == [
        ("b/1", "null", True),
        ("b/2", "null", True),
        ("b/c/3", "null", True),
    ]
    other = error_of(s3.get_object, Bucket="listing", Key="d", VersionId="v2")
    assert (other["Code"], other["Status"]) == ("NoSuchVersion", 404)
    assert s3.get_object(Bucket="listing", Key="d", VersionId="null")["Body"].read() == b"d"
    old = s3.list_objects(Bucket="listing", Prefix="b/")
    assert [o["Key"] for o in old["Contents"]] == ["b/1", "b/2", "b/c/3"]
    paginator = s3.get_paginator("list_objects_v2")
    counted = sum(len(p["Contents"]) for p in paginator.paginate(Bucket="listing", MaxKeys=3))
    assert counted == len(keys)


def test_multipart_upload(s3: Any) -> None:
    s3.create_bucket(Bucket="multipart")
    first, second = os.urandom(5 * MB), b"the end"
    upload = s3.create_multipart_upload(Bucket="multipart", Key="big", ContentType="a/b")
    uid = upload["UploadId"]
    p1 = s3.upload_part(Bucket="multipart", Key="big", UploadId=uid, PartNumber=1, Body=first)
    p2 = s3.upload_part(Bucket="multipart", Key="big", UploadId=uid, PartNumber=2, Body=second)
    listed = s3.list_parts(Bucket="multipart", Key="big", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in listed] == [
        (1, 5 * MB, p1["ETag"]),
        (2, len(second), p2["ETag"]),
    ]
    uploads = s3.list_multipart_uploads(Bucket="multipart")["Uploads"]
    assert [u["UploadId"] for u in uploads] == [uid]
    wrong = error_of(
        s3.complete_multipart_upload,
        Bucket="multipart",
        Key="big",
        UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": p2["ETag"]},
                                   {"PartNumber": 1, "ETag": p1["ETag"]}]},
    )  # fmt: skip
    assert wrong["Code"] == "InvalidPartOrder"
    done = s3.complete_multipart_upload(
        Bucket="multipart",
        Key="big",
        UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1["ETag"]},
                                   {"PartNumber": 2, "ETag": p2["ETag"]}]},
    )  # fmt: skip
    digests = hashlib.md5(first).digest() + hashlib.md5(second).digest()
    assert done["ETag"] == f'"{hashlib.md5(digests).hexdigest()}-2"'
    got = s3.get_object(Bucket="multipart", Key="big")
    assert (got["Body"].read(), got["ContentType"]) == (first + second, "a/b")
    gone = error_of(s3.list_parts, Bucket="multipart", Key="big", UploadId=uid)
    assert (gone["Code"], gone["Status"]) == ("NoSuchUpload", 404)
    small = s3.create_multipart_upload(Bucket="multipart", Key="small")["UploadId"]
    tags = [
        s3.upload_part(Bucket="multipart", Key="small", UploadId=small, PartNumber=n, Body=b"x")
        for n in (1, 2)
    ]
    too_small = error_of(
        s3.complete_multipart_upload,
        Bucket="multipart",
        Key="small",
        UploadId=small,
        MultipartUpload={"Parts": [{"PartNumber": n + 1, "ETag": t["ETag"]}
                                   for n, t in enumerate(tags)]},
    )  # fmt: skip
    assert too_small["Code"] == "EntityTooSmall"
    s3.abort_multipart_upload(Bucket="multipart", Key="small", UploadId=small)
    copy = s3.create_multipart_upload(Bucket="multipart", Key="copied")["UploadId"]
    parts = []
    for number, span in ((1, f"bytes=0-{5 * MB - 1}"), (2, f"bytes={5 * MB}-{5 * MB + 6}")):
        made = s3.upload_part_copy(Bucket="multipart", Key="copied", UploadId=copy,
                                   PartNumber=number, CopySource="multipart/big",
                                   CopySourceRange=span)  # fmt: skip
        parts.append({"PartNumber": number, "ETag": made["CopyPartResult"]["ETag"]})
    s3.complete_multipart_upload(Bucket="multipart", Key="copied", UploadId=copy,
                                 MultipartUpload={"Parts": parts})  # fmt: skip
    copied = s3.get_object(Bucket="multipart", Key="copied")["Body"].read()
    assert copied == (first + second)[: 5 * MB + 7]
    assert (
        error_of(
            s3.upload_part, Bucket="multipart", Key="small", UploadId=small, PartNumber=3, Body=b"x"
        )["Code"]
        == "NoSuchUpload"
    )


def test_virtual_hosted_style(server: Server) -> None:
    s3 = server.client("s3")
    s3.create_bucket(Bucket="virtual")
    hosted = server.client("s3")
    rewritten: list[str] = []

    def to_host(request: Any, **_: Any) -> None:
        # what a client sends to <bucket>.s3.<region>.localhost: the bucket in the Host only
        prefix = f"{server.endpoint}/virtual"
        if request.url.startswith(prefix):
            request.url = server.endpoint + (request.url[len(prefix) :] or "/")
            request.headers["Host"] = f"virtual.s3.us-east-1.localhost:{server.port}"
            rewritten.append(request.url)

    hosted.meta.events.register("before-sign.s3", to_host)
    hosted.put_object(Bucket="virtual", Key="k", Body=b"hosted")  # signed over that Host
    assert hosted.get_object(Bucket="virtual", Key="k")["Body"].read() == b"hosted"
    listed = hosted.list_objects_v2(Bucket="virtual")  # GET / on the bucket's host
    assert [o["Key"] for o in listed["Contents"]] == ["k"]
    assert len(rewritten) == 3 and rewritten[0].endswith("/k")
    request = urllib.request.Request(  # unsigned, as curl sends it
        f"{server.endpoint}/k", headers={"Host": "virtual.s3.us-east-1.localhost"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.read() == b"hosted"
    patch = urllib.request.Request(
        f"{server.endpoint}/k", method="PATCH", headers={"Host": "virtual.s3.localhost"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(patch, timeout=10)
    assert refused.value.code == 405
    assert b"<Code>MethodNotAllowed</Code>" in refused.value.read()


def test_aws_cli_cp_and_ls(server: Server, tmp_path: Path) -> None:
    small = tmp_path / "small.txt"
    small.write_bytes(b"small file\n")
    large = tmp_path / "large.bin"
    large.write_bytes(os.urandom(20 * MB + 123))  # the CLI uploads it in 8 MB parts
    made = s3_cli(server, tmp_path, "mb", "s3://cli-bucket")
    assert made.returncode == 0, made.stderr
    for source, target in ((small, "s3://cli-bucket/dir/small.txt"),
                           (large, "s3://cli-bucket/large.bin")):  # fmt: skip
        done = s3_cli(server, tmp_path, "cp", str(source), target)
        assert done.returncode == 0, done.stderr
    listed = s3_cli(server, tmp_path, "ls", "s3://cli-bucket/")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert "PRE dir/" in lines[0]
    assert lines[1].split()[2:] == [str(20 * MB + 123), "large.bin"]
    recursive = s3_cli(server, tmp_path, "ls", "--recursive", "s3://cli-bucket")
    assert [line.split()[-1] for line in recursive.stdout.splitlines()] == [
        "dir/small.txt",
        "large.bin",
    ]
    buckets = s3_cli(server, tmp_path, "ls")
    assert "cli-bucket" in buckets.stdout
    s3 = server.client("s3")
    head = s3.head_object(Bucket="cli-bucket", Key="large.bin")
    assert head["ETag"].endswith('-3"')  # 8 + 8 + 4 MB
    # A large object copied within S3: the CLI copies it part by part (UploadPartCopy).
    copied = s3_cli(server, tmp_path, "cp", "s3://cli-bucket/large.bin", "s3://cli-bucket/copy.bin")
    assert copied.returncode == 0, copied.stderr
    assert s3.head_object(Bucket="cli-bucket", Key="copy.bin")["ETag"] == head["ETag"]
    for name in ("small.txt", "large.bin"):
        back = tmp_path / f"back-{name}"
        key = "dir/small.txt" if name == "small.txt" else name
        done = s3_cli(server, tmp_path, "cp", f"s3://cli-bucket/{key}", str(back))
        assert done.returncode == 0, done.stderr
        assert back.read_bytes() == (tmp_path / name.replace("small.txt", "small.txt")).read_bytes()


def test_function_from_code_in_a_bucket(server: Server, s3: Any) -> None:
    lam = server.client()
    s3.create_bucket(Bucket="code-bucket")
    source = "def handler(event, context):\n    return {'from': 'bucket', 'got': event}\n"
    s3.put_object(Bucket="code-bucket", Key="fn/v1.zip", Body=make_zip({"app.py": source}))
    made = lam.create_function(
        FunctionName="from-bucket",
        Runtime=PYTHON_RUNTIME,
        Role=ROLE,
        Handler="app.handler",
        Code={"S3Bucket": "code-bucket", "S3Key": "fn/v1.zip"},
    )
    assert made["CodeSize"] > 0
    lam.get_waiter("function_active_v2").wait(FunctionName="from-bucket")
    answer = lam.invoke(FunctionName="from-bucket", Payload=b'{"n": 1}')
    assert json.loads(answer["Payload"].read()) == {"from": "bucket", "got": {"n": 1}}
    second = "def handler(event, context):\n    return 'v2'\n"
    s3.put_object(Bucket="code-bucket", Key="fn/v2.zip", Body=make_zip({"app.py": second}))
    lam.update_function_code(FunctionName="from-bucket", S3Bucket="code-bucket", S3Key="fn/v2.zip")
    lam.get_waiter("function_updated_v2").wait(FunctionName="from-bucket")
    answer = lam.invoke(FunctionName="from-bucket")
    assert json.loads(answer["Payload"].read()) == "v2"
    missing = error_of(
        lam.create_function,
        FunctionName="no-code",
        Runtime=PYTHON_RUNTIME,
        Role=ROLE,
        Handler="app.handler",
        Code={"S3Bucket": "code-bucket", "S3Key": "nope.zip"},
    )
    assert missing["Code"] == "InvalidParameterValueException"
    assert "Error occurred while GetObject. S3 Error Code: NoSuchKey" in missing["Message"]
    layer_zip = make_zip({"python/shared.py": "VALUE = 'from a layer in a bucket'\n"})
    s3.put_object(Bucket="code-bucket", Key="layers/shared.zip", Body=layer_zip)
    layer = lam.publish_layer_version(
        LayerName="shared", Content={"S3Bucket": "code-bucket", "S3Key": "layers/shared.zip"}
    )
    assert layer["Content"]["CodeSize"] == len(layer_zip)
    uses = "import shared\ndef handler(event, context):\n    return shared.VALUE\n"
    lam.create_function(
        FunctionName="with-layer",
        Runtime=PYTHON_RUNTIME,
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": uses})},
        Layers=[layer["LayerVersionArn"]],
    )
    lam.get_waiter("function_active_v2").wait(FunctionName="with-layer")
    answer = lam.invoke(FunctionName="with-layer")
    assert json.loads(answer["Payload"].read()) == "from a layer in a bucket"


def test_unsigned_and_signed_with_auth_on(tmp_path: Path) -> None:
    """With auth on, S3 verifies SigV4 as every service does, and answers in S3's codes."""
    server = Server(tmp_path / "data", args=["--auth", "on"]).start()
    try:
        account, credentials = server.new_account("s3-owner")
        s3 = boto3.client(
            "s3",
            endpoint_url=server.endpoint,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 0}, signature_version="s3v4"),
            **credentials,
        )
        s3.create_bucket(Bucket="signed")
        s3.put_object(Bucket="signed", Key="k", Body=b"v")
        assert s3.get_object(Bucket="signed", Key="k")["Body"].read() == b"v"
        url = s3.generate_presigned_url("get_object", Params={"Bucket": "signed", "Key": "k"})
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert answer.read() == b"v"
        wrong = boto3.client(
            "s3",
            endpoint_url=server.endpoint,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 0}),
            aws_access_key_id=credentials["aws_access_key_id"],
            aws_secret_access_key="not-the-secret",
        )
        assert error_of(wrong.list_buckets)["Code"] == "SignatureDoesNotMatch"
        unknown = boto3.client(
            "s3",
            endpoint_url=server.endpoint,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 0}),
            **CREDENTIALS,
        )
        assert error_of(unknown.list_buckets)["Code"] == "InvalidAccessKeyId"
        del account
        # aws-chunked uploads, as SDKs that stream send them: signed chunks, and unsigned
        # chunks with a trailing checksum; a chunk that was changed is refused.
        pieces = [b"a" * 70000, b"b" * 1000]
        for form in ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"):
            status, _ = chunked_put(server, credentials, f"chunked-{form}", pieces, form)
            assert status == 200
            got = s3.get_object(Bucket="signed", Key=f"chunked-{form}")
            assert got["Body"].read() == b"".join(pieces)
            assert "ContentEncoding" not in got  # aws-chunked is the upload's, not the object's
        status, body = chunked_put(
            server, credentials, "tampered", pieces, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", True
        )
        assert (status, b"<Code>SignatureDoesNotMatch</Code>" in body) == (403, True)
        status, body = chunked_put(
            server, credentials, "bad-crc", pieces, "STREAMING-UNSIGNED-PAYLOAD-TRAILER", True
        )
        assert (status, b"<Code>BadDigest</Code>" in body) == (400, True)
    finally:
        server.stop()


def chunked_put(
    server: Server,
    credentials: dict[str, str],
    key: str,
    pieces: list[bytes],
    form: str,
    spoil: bool = False,
) -> tuple[int, bytes]:
    """PUT an object in aws-chunked encoding, the request signed by botocore's SigV4 and,
    for the signed form, each chunk signed after it (AWS's chunk signature chain)."""
    data = b"".join(pieces)
    headers = {
        "x-amz-content-sha256": form,
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
    }
    if "TRAILER" in form:
        headers["x-amz-trailer"] = "x-amz-checksum-crc32"
    request = AWSRequest("PUT", f"{server.endpoint}/signed/{key}", headers=headers)
    secret = credentials["aws_secret_access_key"]
    SigV4Auth(Credentials(credentials["aws_access_key_id"], secret), "s3", "us-east-1").add_auth(
        request
    )
    stamp = request.headers["X-Amz-Date"]
    previous = request.headers["Authorization"].rsplit("Signature=", 1)[1]
    key_bytes = f"AWS4{secret}".encode()
    for part in (stamp[:8], "us-east-1", "s3", "aws4_request"):
        key_bytes = hmac.new(key_bytes, part.encode(), hashlib.sha256).digest()
    body = b""
    for piece in [*pieces, b""]:
        if form.startswith("STREAMING-AWS4"):
            text = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", stamp,
                               f"{stamp[:8]}/us-east-1/s3/aws4_request", previous,
                               hashlib.sha256(b"").hexdigest(),
                               hashlib.sha256(piece).hexdigest()])  # fmt: skip
            previous = hmac.new(key_bytes, text.encode(), hashlib.sha256).hexdigest()
            body += b"%x;chunk-signature=%s\r\n" % (len(piece), previous.encode())
        else:
            body += b"%x\r\n" % len(piece)
        body += (piece.replace(b"a", b"c", 1) if spoil and piece else piece) + b"\r\n"
    if "TRAILER" in form:
        crc = zlib.crc32(b"x" if spoil else data).to_bytes(4, "big")
        body = body[:-2] + b"x-amz-checksum-crc32:" + base64.b64encode(crc) + b"\r\n\r\n"
    sent = urllib.request.Request(
        str(request.url), data=body, method="PUT", headers=dict(request.headers.items())
    )
    try:
        with urllib.request.urlopen(sent, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
