"""S3's multipart upload operations: Create, UploadPart, Complete, Abort, ListParts,
ListMultipartUploads (the provider's, with the same buckets and objects)."""

from __future__ import annotations

import datetime as dt
import re
from abc import ABC, abstractmethod
from typing import Any

from lamina.context import RequestContext
from lamina.services.s3 import errors
from lamina.services.s3.buckets import Buckets, owner
from lamina.services.s3.objects import Objects

MAX_PARTS = 1000
COPY_RANGE = re.compile(r"bytes=(\d+)-(\d+)")


def _moment(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(epoch), dt.UTC)


class MultipartOperations(ABC):
    """Mixed into the S3 provider, which supplies the request helpers below."""

    buckets: Buckets
    objects: Objects

    @abstractmethod
    def _fields(self, params: dict[str, Any]) -> dict[str, Any]:
        """The provider's own."""

    async def CreateMultipartUpload(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        bucket = self.buckets.get(ctx, params["Bucket"])
        fields = self._fields(params)
        if params.get("ChecksumAlgorithm"):
            fields["checksum_algorithm"] = params["ChecksumAlgorithm"]
        upload_id = self.objects.create_upload(ctx, bucket, params["Key"], fields)
        result = {"Bucket": bucket.name, "Key": params["Key"], "UploadId": upload_id}
        if params.get("ChecksumAlgorithm"):
            result["ChecksumAlgorithm"] = params["ChecksumAlgorithm"]
        return result

    async def UploadPart(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket = self.buckets.get(ctx, params["Bucket"])
        data = bytes(params.get("Body") or b"")
        checksums = self._digests(params, data)
        record = await self.objects.upload_part(
            bucket, params["Key"], params["UploadId"], int(params["PartNumber"]), data
        )
        return {"ETag": f'"{record["etag"]}"', **checksums}

    @abstractmethod
    def _digests(self, params: dict[str, Any], data: bytes) -> dict[str, str]:
        """The provider's own."""

    @abstractmethod
    def _source(self, text: str) -> tuple[str, str]:
        """The provider's own."""

    async def UploadPartCopy(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """A part made of (a range of) another object: how clients copy large objects."""
        bucket = self.buckets.get(ctx, params["Bucket"])
        source_bucket, source_key = self._source(params["CopySource"])
        source = self.objects.record(self.buckets.get(ctx, source_bucket), source_key)
        first, last = 0, source["size"] - 1
        text = params.get("CopySourceRange")
        if text:
            found = COPY_RANGE.fullmatch(text.strip())
            if found is None:
                raise errors.invalid_argument(
                    "The x-amz-copy-source-range value must be of the form bytes=first-last "
                    "where first and last are the zero-based offsets of the first and last "
                    "bytes to copy",
                    "x-amz-copy-source-range",
                    text,
                )
            first, last = int(found[1]), int(found[2])
            if first > last or last >= source["size"]:
                raise errors.invalid_argument(
                    f"Range specified is not valid for source object of size: {source['size']}",
                    "x-amz-copy-source-range",
                    text,
                )
        data = await self.objects.read(source, first, last - first + 1) if last >= first else b""
        record = await self.objects.upload_part(
            bucket, params["Key"], params["UploadId"], int(params["PartNumber"]), data
        )
        return {
            "CopyPartResult": {
                "ETag": f'"{record["etag"]}"',
                "LastModified": _moment(record["modified"]),
            }
        }

    async def CompleteMultipartUpload(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        bucket = self.buckets.get(ctx, params["Bucket"])
        key = params["Key"]
        listed = (params.get("MultipartUpload") or {}).get("Parts") or []
        chosen = [(int(p.get("PartNumber", 0)), str(p.get("ETag", ""))) for p in listed]
        record = await self.objects.complete(ctx, bucket, key, params["UploadId"], chosen)
        return {
            "Location": f"{ctx.endpoint}/{bucket.name}/{key}",
            "Bucket": bucket.name,
            "Key": key,
            "ETag": f'"{record["etag"]}"',
        }

    async def AbortMultipartUpload(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        bucket = self.buckets.get(ctx, params["Bucket"])
        self.objects.abort(bucket, params["Key"], params["UploadId"])
        return {}

    async def ListParts(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket = self.buckets.get(ctx, params["Bucket"])
        upload = self.objects.upload(bucket, params["Key"], params["UploadId"])
        marker = int(params.get("PartNumberMarker") or 0)
        limit = max(0, min(int(params.get("MaxParts") or MAX_PARTS), MAX_PARTS))
        parts = [(n, p) for n, p in self.objects.parts(params["UploadId"]) if n > marker]
        shown = parts[:limit]
        result: dict[str, Any] = {
            "Bucket": bucket.name,
            "Key": params["Key"],
            "UploadId": params["UploadId"],
            "PartNumberMarker": marker,
            "MaxParts": limit,
            "IsTruncated": len(parts) > limit,
            "Parts": [
                {
                    "PartNumber": n,
                    "LastModified": _moment(p["modified"]),
                    "ETag": f'"{p["etag"]}"',
                    "Size": p["size"],
                }
                for n, p in shown
            ]
            or None,
            "Initiator": owner(upload["account"]),
            "Owner": owner(upload["account"]),
            "StorageClass": "STANDARD",
        }
        if shown:
            result["NextPartNumberMarker"] = shown[-1][0]
        return result

    async def ListMultipartUploads(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        bucket = self.buckets.get(ctx, params["Bucket"])
        prefix = params.get("Prefix") or ""
        uploads = [
            {
                "UploadId": upload_id,
                "Key": key,
                "Initiated": _moment(record["initiated"]),
                "StorageClass": "STANDARD",
                "Owner": owner(record["account"]),
                "Initiator": owner(record["account"]),
            }
            for upload_id, key, record in self.objects.store.uploads(bucket.name)
            if key.startswith(prefix)
        ]
        return {
            "Bucket": bucket.name,
            "KeyMarker": params.get("KeyMarker") or "",
            "UploadIdMarker": params.get("UploadIdMarker") or "",
            "Prefix": prefix or None,
            "MaxUploads": MAX_PARTS,
            "IsTruncated": False,
            "Uploads": uploads or None,
        }
