"""What a bucket's and an object's settings are, for the tools that read them before they
upload (deployment tools check a bucket's versioning, policy, tags, ACL): Lamina's
buckets have none of these set, and say so as S3 says it."""

from __future__ import annotations

from typing import Any

from lamina.context import RequestContext
from lamina.services.s3 import errors
from lamina.services.s3.buckets import Buckets, owner
from lamina.services.s3.objects import Objects


class BucketSettings:
    buckets: Buckets
    objects: Objects

    async def GetBucketVersioning(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        self.buckets.get(ctx, params["Bucket"])
        return {}  # never enabled: no Status, as S3 answers for such a bucket

    async def GetBucketPolicy(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        self.buckets.get(ctx, params["Bucket"])
        raise errors.s3_error(
            "NoSuchBucketPolicy", "The bucket policy does not exist", 404,
            BucketName=params["Bucket"],
        )  # fmt: skip

    async def GetBucketTagging(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        self.buckets.get(ctx, params["Bucket"])
        raise errors.s3_error(
            "NoSuchTagSet", "The TagSet does not exist", 404, BucketName=params["Bucket"]
        )

    async def GetBucketCors(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        self.buckets.get(ctx, params["Bucket"])
        raise errors.s3_error(
            "NoSuchCORSConfiguration", "The CORS configuration does not exist", 404,
            BucketName=params["Bucket"],
        )  # fmt: skip

    async def GetBucketAcl(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket = self.buckets.get(ctx, params["Bucket"])
        return _acl(bucket.account)

    async def GetObjectAcl(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket = self.buckets.get(ctx, params["Bucket"])
        self.objects.record(bucket, params["Key"])
        return _acl(bucket.account)

    async def GetObjectTagging(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket = self.buckets.get(ctx, params["Bucket"])
        self.objects.record(bucket, params["Key"])
        return {"TagSet": []}


def _acl(account: str) -> dict[str, Any]:
    """The owner's full control, the only grant a bucket or object here has."""
    grantee = {**owner(account), "Type": "CanonicalUser"}
    return {"Owner": owner(account), "Grants": [{"Grantee": grantee, "Permission": "FULL_CONTROL"}]}
