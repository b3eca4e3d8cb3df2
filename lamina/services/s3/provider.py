"""S3's operations, as botocore's model names them: parameters in, result members out.
Objects and uploads are objects.py's, buckets buckets.py's, notification records
notifications.py's; here are the rules of each operation (ranges, conditions, copies,
listings, checksums)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import zlib
from typing import Any
from urllib.parse import quote, unquote

from lamina.clock import Clock
from lamina.context import STATUS, RequestContext
from lamina.deliveries import Delivery, FunctionInvoker, QueueSender, TopicPublisher
from lamina.services.s3 import errors, notifications
from lamina.services.s3.buckets import Bucket, Buckets, owner
from lamina.services.s3.multipart import MultipartOperations
from lamina.services.s3.objects import LAST, Objects
from lamina.services.s3.settings import BucketSettings

DEFAULT_TYPE = "binary/octet-stream"
HEADER_FIELDS = ("ContentEncoding", "ContentDisposition", "ContentLanguage", "CacheControl")
CHECKSUMS = {
    "ChecksumCRC32": lambda data: zlib.crc32(data).to_bytes(4, "big"),
    "ChecksumSHA1": lambda data: hashlib.sha1(data, usedforsecurity=False).digest(),
    "ChecksumSHA256": lambda data: hashlib.sha256(data).digest(),
}
OTHER_CHECKSUMS = ("ChecksumCRC32C", "ChecksumCRC64NVME")
MAX_KEYS = 1000
MAX_KEY = 1024  # bytes of a key's UTF-8
MAX_METADATA = 2048  # bytes of user metadata, names and values


def moment(epoch: float) -> dt.datetime:
    """S3's times: whole seconds, UTC."""
    return dt.datetime.fromtimestamp(int(epoch), dt.UTC)


def quoted(etag: str) -> str:
    return f'"{etag}"'


def check_key(key: str) -> None:
    size = len(key.encode())
    if size > MAX_KEY:
        raise errors.s3_error(
            "KeyTooLongError", "Your key is too long", 400, Size=size, MaxSizeAllowed=MAX_KEY
        )


def check_version(params: dict[str, Any]) -> None:
    """Objects here have one version, `null` (an unversioned bucket's)."""
    version = params.get("VersionId")
    if version not in (None, "null"):
        raise errors.s3_error(
            "NoSuchVersion", "The specified version does not exist.", 404,
            Key=params["Key"], VersionId=version,
        )  # fmt: skip


def object_fields(params: dict[str, Any]) -> dict[str, Any]:
    """What an object keeps of the request that wrote it (its key and metadata checked)."""
    check_key(params["Key"])
    metadata = params.get("Metadata") or {}
    size = sum(len(k.encode()) + len(str(v).encode()) for k, v in metadata.items())
    if size > MAX_METADATA:
        raise errors.s3_error(
            "MetadataTooLarge",
            "Your metadata headers exceed the maximum allowed metadata size.",
            400,
            Size=size,
            MaxSizeAllowed=MAX_METADATA,
        )
    fields: dict[str, Any] = {
        "content_type": params.get("ContentType") or DEFAULT_TYPE,
        "metadata": dict(params.get("Metadata") or {}),
    }
    headers = {}
    for name in HEADER_FIELDS:
        value = params.get(name)
        if name == "ContentEncoding" and value:
            value = ",".join(p for p in (v.strip() for v in value.split(",")) if p != "aws-chunked")
        if value:
            headers[name] = value
    expires = params.get("Expires")
    if isinstance(expires, dt.datetime):
        headers["Expires"] = expires.timestamp()
    fields["headers"] = headers
    return fields


def check_digests(params: dict[str, Any], data: bytes) -> dict[str, str]:
    """Content-MD5 and the checksums the request carries, verified; the checksums kept."""
    md5 = params.get("ContentMD5")
    if md5:
        try:
            given = base64.b64decode(md5, validate=True)
        except (binascii.Error, ValueError):
            raise errors.s3_error(
                "InvalidDigest", "The Content-MD5 you specified was invalid."
            ) from None
        actual = hashlib.md5(data, usedforsecurity=False).digest()
        if given != actual:
            raise errors.bad_digest("Content-MD5", md5, base64.b64encode(actual).decode())
    kept = {}
    for member, compute in CHECKSUMS.items():
        given_text = params.get(member)
        if given_text:
            actual_text = base64.b64encode(compute(data)).decode()
            if given_text != actual_text:
                raise errors.bad_digest(member[len("Checksum") :].lower(), given_text, actual_text)
            kept[member] = given_text
    for member in OTHER_CHECKSUMS:
        if params.get(member):
            kept[member] = params[member]
    return kept


def _range(text: str, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a `Range: bytes=...` header; None: the whole object."""
    unit, _, spec = text.strip().partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if not first_text:
            count = int(last_text)
            if count <= 0 or size == 0:
                raise errors.invalid_range(text, size)
            return max(0, size - count), size - 1
        first = int(first_text)
        last = int(last_text) if last_text else size - 1
    except ValueError:
        return None
    if first >= size:
        raise errors.invalid_range(text, size)
    if last < first:
        return None
    return first, min(last, size - 1)


def _token(cursor: str) -> str:
    return base64.urlsafe_b64encode(cursor.encode()).decode()


def _cursor(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise errors.invalid_argument(
            "The continuation token provided is incorrect", "continuation-token", token
        ) from None


class S3Provider(MultipartOperations, BucketSettings):
    def __init__(
        self,
        buckets: Buckets,
        objects: Objects,
        clock: Clock,
        functions: FunctionInvoker | None = None,
        queues: QueueSender | None = None,
        topics: TopicPublisher | None = None,
    ) -> None:
        self.buckets = buckets
        self.objects = objects
        self.clock = clock
        self.functions = functions
        self.queues = queues
        self.topics = topics

    def _fields(self, params: dict[str, Any]) -> dict[str, Any]:
        return object_fields(params)

    def _digests(self, params: dict[str, Any], data: bytes) -> dict[str, str]:
        return check_digests(params, data)

    # Buckets ----------------------------------------------------------------------------
    async def ListBuckets(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "Buckets": [
                {"Name": b.name, "CreationDate": moment(b.created), "BucketRegion": b.region}
                for b in self.buckets.owned_by(ctx.account)
            ],
            "Owner": owner(ctx.account),
        }

    async def CreateBucket(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        constraint = (params.get("CreateBucketConfiguration") or {}).get("LocationConstraint")
        region = ctx.region
        if constraint == "us-east-1":
            raise errors.s3_error(
                "InvalidLocationConstraint", "The specified location-constraint is not valid"
            )
        if (constraint or "us-east-1") != region:
            shown = constraint or "unspecified"
            raise errors.s3_error(
                "IllegalLocationConstraintException",
                f"The {shown} location constraint is incompatible for the region specific "
                "endpoint this request was sent to.",
            )
        bucket = self.buckets.create(ctx, params["Bucket"], region, self.clock.wall())
        return {"Location": f"/{bucket.name}", "BucketArn": bucket.arn}

    async def DeleteBucket(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        self.buckets.delete(self.buckets.get(ctx, params["Bucket"]))
        return {}

    async def HeadBucket(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket = self.buckets.get(ctx, params["Bucket"])
        return {"BucketRegion": bucket.region, "BucketArn": bucket.arn}

    async def GetBucketLocation(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        bucket = self.buckets.get(ctx, params["Bucket"])
        return {"LocationConstraint": None if bucket.region == "us-east-1" else bucket.region}

    # Notifications ------------------------------------------------------------------------
    async def PutBucketNotificationConfiguration(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        bucket = self.buckets.get(ctx, params["Bucket"])
        configuration = notifications.normalize(params.get("NotificationConfiguration") or {})
        skip = params.get("SkipDestinationValidation")
        for kind, arn in notifications.targets(configuration):
            if not skip and not await self._reachable(bucket, kind, arn, ctx.request_id):
                raise notifications.unable_to_validate(arn)
        self.buckets.set_notification(bucket, configuration)
        return {}

    async def _reachable(self, bucket: Bucket, kind: str, arn: str, request_id: str) -> bool:
        """Whether S3 may deliver to the target: a function's policy is checked, a queue
        or topic is sent S3's test event, as AWS does."""
        service, source, account = notifications.SERVICE, bucket.arn, bucket.account
        test = notifications.test_event(bucket.name, request_id, self.clock.wall())
        if kind == "lambda" and self.functions is not None:
            found = self.functions.may_deliver(
                arn, service=service, source_arn=source, source_account=account
            )
            return found is Delivery.ACCEPTED
        if kind == "sqs" and self.queues is not None:
            sent = self.queues.send_as_service(
                arn, test, service=service, source_arn=source, source_account=account
            )
            return sent is Delivery.ACCEPTED
        if kind == "sns" and self.topics is not None:
            sent = await self.topics.publish_as_service(
                arn,
                test,
                subject="Amazon S3 Notification",
                service=service,
                source_arn=source,
                source_account=account,
            )
            return sent is Delivery.ACCEPTED
        return False

    async def GetBucketNotificationConfiguration(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        return dict(self.buckets.get(ctx, params["Bucket"]).notification)

    # Objects ------------------------------------------------------------------------------
    async def PutObject(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket = self.buckets.get(ctx, params["Bucket"])
        key = params["Key"]
        data = bytes(params.get("Body") or b"")
        self._check_write_conditions(bucket, key, params)
        checksums = check_digests(params, data)
        fields = {**object_fields(params), "checksums": checksums}
        record = await self.objects.put(ctx, bucket, key, data, fields)
        return {"ETag": quoted(record["etag"]), **checksums}

    def _check_write_conditions(self, bucket: Bucket, key: str, params: dict[str, Any]) -> None:
        if_none, if_match = params.get("IfNoneMatch"), params.get("IfMatch")
        if not (if_none or if_match):
            return
        current = self.objects.store.get_object(bucket.name, key)
        if if_none == "*" and current is not None:
            raise errors.precondition_failed("If-None-Match")
        if if_match:
            if current is None:
                raise errors.no_such_key(key)
            if if_match.strip('"') != current["etag"] and if_match != "*":
                raise errors.precondition_failed("If-Match")

    def _read_conditions(self, record: dict[str, Any], params: dict[str, Any]) -> int | None:
        """412 (raised) or 304 (returned) when the request's conditions say so."""
        etag = record["etag"]
        modified = moment(record["modified"])
        if_match = params.get("IfMatch")
        if if_match and if_match.strip('"') != etag and if_match != "*":
            raise errors.precondition_failed("If-Match")
        since = params.get("IfUnmodifiedSince")
        if not if_match and isinstance(since, dt.datetime) and modified > since:
            raise errors.precondition_failed("If-Unmodified-Since")
        if_none = params.get("IfNoneMatch")
        if if_none and (if_none.strip('"') == etag or if_none == "*"):
            return 304
        since = params.get("IfModifiedSince")
        if not if_none and isinstance(since, dt.datetime) and modified <= since:
            return 304
        return None

    def _head(self, record: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {
            "ContentLength": record["size"],
            "ContentType": record.get("content_type") or DEFAULT_TYPE,
            "ETag": quoted(record["etag"]),
            "LastModified": moment(record["modified"]),
            "AcceptRanges": "bytes",
        }
        if record.get("metadata"):
            result["Metadata"] = record["metadata"]
        headers = record.get("headers") or {}
        for name in HEADER_FIELDS:
            if headers.get(name):
                result[name] = headers[name]
        if headers.get("Expires"):
            result["Expires"] = dt.datetime.fromtimestamp(headers["Expires"], dt.UTC)
        if params.get("ChecksumMode") == "ENABLED":
            result.update(record.get("checksums") or {})
        if record.get("parts") and params.get("PartNumber"):
            result["PartsCount"] = record["parts"]
        for override, member in (
            ("ResponseContentType", "ContentType"),
            ("ResponseContentDisposition", "ContentDisposition"),
            ("ResponseContentEncoding", "ContentEncoding"),
            ("ResponseContentLanguage", "ContentLanguage"),
            ("ResponseCacheControl", "CacheControl"),
        ):
            if params.get(override):
                result[member] = params[override]
        return result

    async def HeadObject(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket = self.buckets.get(ctx, params["Bucket"])
        record = self.objects.record(bucket, params["Key"])
        check_version(params)
        status = self._read_conditions(record, params)
        if status == 304:
            return {STATUS: 304, "ETag": quoted(record["etag"])}
        result = self._head(record, params)
        if params.get("Range"):
            span = _range(params["Range"], record["size"])
            if span is not None:
                result[STATUS] = 206
                result["ContentLength"] = span[1] - span[0] + 1
                result["ContentRange"] = f"bytes {span[0]}-{span[1]}/{record['size']}"
        return result

    async def GetObject(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket = self.buckets.get(ctx, params["Bucket"])
        record = self.objects.record(bucket, params["Key"])
        check_version(params)
        status = self._read_conditions(record, params)
        if status == 304:
            return {STATUS: 304, "ETag": quoted(record["etag"])}
        result = self._head(record, params)
        span = _range(params["Range"], record["size"]) if params.get("Range") else None
        if span is None:
            result["Body"] = await self.objects.read(record)
            return result
        first, last = span
        result[STATUS] = 206
        result["ContentLength"] = last - first + 1
        result["ContentRange"] = f"bytes {first}-{last}/{record['size']}"
        for member in list(CHECKSUMS) + list(OTHER_CHECKSUMS):
            result.pop(member, None)  # a part's bytes do not have the object's checksum
        result["Body"] = await self.objects.read(record, first, last - first + 1)
        return result

    async def DeleteObject(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket = self.buckets.get(ctx, params["Bucket"])
        self.objects.delete(ctx, bucket, params["Key"])
        return {}

    async def DeleteObjects(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket = self.buckets.get(ctx, params["Bucket"])
        request = params.get("Delete") or {}
        listed = request.get("Objects") or []
        if len(listed) > 1000:
            raise errors.s3_error(
                "MalformedXML",
                "The XML you provided was not well-formed or did not validate against our "
                "published schema",
            )
        deleted = []
        for item in listed:
            self.objects.delete(ctx, bucket, item["Key"])
            deleted.append({"Key": item["Key"]})
        return {} if request.get("Quiet") else {"Deleted": deleted}

    async def CopyObject(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket = self.buckets.get(ctx, params["Bucket"])
        key = params["Key"]
        check_key(key)
        source_bucket, source_key = self._source(params["CopySource"])
        source = self.objects.record(self.buckets.get(ctx, source_bucket), source_key)
        directive = params.get("MetadataDirective") or "COPY"
        if directive == "REPLACE":
            fields = {**object_fields(params), "checksums": dict(source.get("checksums") or {})}
        else:
            if (source_bucket, source_key) == (bucket.name, key):
                raise errors.invalid_request(
                    "This copy request is illegal because it is trying to copy an object to "
                    "itself without changing the object's metadata, storage class, website "
                    "redirect location or encryption attributes."
                )
            fields = {
                name: source[name]
                for name in ("content_type", "metadata", "headers", "checksums")
                if name in source
            }
        record = await self.objects.copy(ctx, source, bucket, key, fields)
        return {
            "CopyObjectResult": {
                "ETag": quoted(record["etag"]),
                "LastModified": moment(record["modified"]),
            }
        }

    def _source(self, text: str) -> tuple[str, str]:
        path = unquote(text.split("?", 1)[0]).lstrip("/")
        bucket, _, key = path.partition("/")
        if not bucket or not key:
            raise errors.invalid_argument(
                "Invalid copy source object key", "x-amz-copy-source", text
            )
        return bucket, key

    # Listing ------------------------------------------------------------------------------
    def _listing(
        self, bucket: Bucket, params: dict[str, Any], after: str
    ) -> tuple[Any, int, str, str]:
        prefix = params.get("Prefix") or ""
        delimiter = params.get("Delimiter") or ""
        max_keys = params.get("MaxKeys")
        max_keys = MAX_KEYS if max_keys is None else max(0, min(int(max_keys), MAX_KEYS))
        listing = self.objects.listing(bucket, prefix, delimiter, after, max_keys)
        return listing, max_keys, prefix, delimiter

    @staticmethod
    def _entries(
        listing: Any, encode: bool, with_owner: bool, account: str
    ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        def shown(text: str) -> str:
            return quote(text, safe="/") if encode else text

        contents, prefixes = [], []
        for key, record in listing.entries:
            if record is None:
                prefixes.append({"Prefix": shown(key)})
                continue
            item: dict[str, Any] = {
                "Key": shown(key),
                "LastModified": moment(record["modified"]),
                "ETag": quoted(record["etag"]),
                "Size": record["size"],
                "StorageClass": "STANDARD",
            }
            if with_owner:
                item["Owner"] = owner(account)
            contents.append(item)
        return contents, prefixes

    async def ListObjectsV2(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket = self.buckets.get(ctx, params["Bucket"])
        token = params.get("ContinuationToken")
        after = _cursor(token) if token else (params.get("StartAfter") or "")
        listing, max_keys, prefix, delimiter = self._listing(bucket, params, after)
        encode = params.get("EncodingType") == "url"
        contents, prefixes = self._entries(
            listing, encode, bool(params.get("FetchOwner")), bucket.account
        )

        def shown(text: str) -> str:
            return quote(text, safe="/") if encode else text

        result: dict[str, Any] = {
            "IsTruncated": listing.truncated,
            "Contents": contents or None,
            "Name": bucket.name,
            "Prefix": shown(prefix),
            "Delimiter": shown(delimiter) if delimiter else None,
            "MaxKeys": max_keys,
            "CommonPrefixes": prefixes or None,
            "EncodingType": "url" if encode else None,
            "KeyCount": len(listing.entries),
            "ContinuationToken": token,
            "NextContinuationToken": _token(listing.cursor) if listing.truncated else None,
            "StartAfter": shown(params["StartAfter"]) if params.get("StartAfter") else None,
        }
        return result

    async def ListObjectVersions(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        """An unversioned bucket's objects, each its only version, `null` (as S3 lists them)."""
        bucket = self.buckets.get(ctx, params["Bucket"])
        marker = params.get("KeyMarker") or ""
        delimiter = params.get("Delimiter") or ""
        after = marker + LAST if delimiter and marker.endswith(delimiter) else marker
        listing, max_keys, prefix, _ = self._listing(bucket, params, after)
        encode = params.get("EncodingType") == "url"
        contents, prefixes = self._entries(listing, encode, True, bucket.account)
        versions = [{**item, "VersionId": "null", "IsLatest": True} for item in contents]
        last = listing.entries[-1][0] if listing.entries else ""
        return {
            "IsTruncated": listing.truncated,
            "KeyMarker": marker,
            "VersionIdMarker": params.get("VersionIdMarker") or "",
            "NextKeyMarker": last if listing.truncated else None,
            "NextVersionIdMarker": "null" if listing.truncated else None,
            "Versions": versions or None,
            "Name": bucket.name,
            "Prefix": prefix,
            "Delimiter": delimiter or None,
            "MaxKeys": max_keys,
            "CommonPrefixes": prefixes or None,
            "EncodingType": "url" if encode else None,
        }

    async def ListObjects(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket = self.buckets.get(ctx, params["Bucket"])
        marker = params.get("Marker") or ""
        delimiter = params.get("Delimiter") or ""
        after = marker
        if delimiter and marker.endswith(delimiter):
            after = marker + LAST
        listing, max_keys, prefix, _ = self._listing(bucket, params, after)
        encode = params.get("EncodingType") == "url"
        contents, prefixes = self._entries(listing, encode, True, bucket.account)
        last = listing.entries[-1][0] if listing.entries else ""
        return {
            "IsTruncated": listing.truncated,
            "Marker": marker,
            "NextMarker": last if listing.truncated and delimiter else None,
            "Contents": contents or None,
            "Name": bucket.name,
            "Prefix": prefix,
            "Delimiter": delimiter or None,
            "MaxKeys": max_keys,
            "CommonPrefixes": prefixes or None,
            "EncodingType": "url" if encode else None,
        }
