"""Function code from a bucket (CreateFunction / UpdateFunctionCode with S3Bucket, S3Key),
read as Lambda reads it: with the caller's access, answered in Lambda's words."""

from __future__ import annotations

from lamina.context import RequestContext
from lamina.errors import AwsError, invalid_parameter
from lamina.services.s3.buckets import Buckets
from lamina.services.s3.objects import Objects


class CodeObjects:
    """control.functions.CodeSource over Lamina's S3."""

    def __init__(self, buckets: Buckets, objects: Objects) -> None:
        self.buckets = buckets
        self.objects = objects

    async def code_object(
        self, ctx: RequestContext, bucket: str, key: str, version: str | None
    ) -> bytes:
        try:
            found = self.buckets.get(ctx, bucket)
            if version not in (None, "", "null"):
                raise AwsError("NoSuchVersion", "The specified version does not exist.", 404)
            record = self.objects.record(found, key)
        except AwsError as error:
            if error.code == "AccessDenied":
                raise invalid_parameter(
                    "Your access has been denied by S3, please make sure your request "
                    f"credentials have permission to GetObject for {bucket}/{key}. S3 Error "
                    f"Code: AccessDenied. S3 Error Message: {error.message}"
                ) from None
            raise invalid_parameter(
                f"Error occurred while GetObject. S3 Error Code: {error.code}. S3 Error "
                f"Message: {error.message}"
            ) from None
        if found.region != ctx.region:
            raise invalid_parameter(
                "Error occurred while GetObject. S3 Error Code: PermanentRedirect. S3 Error "
                f"Message: The bucket is in this region: {found.region}. Please use this "
                "region to retry the request"
            )
        return await self.objects.read(record)
