"""S3's errors: code, status and message as S3 answers them, with the members S3 adds to
its `<Error>` (BucketName, Key, UploadId, ...)."""

from __future__ import annotations

from lamina.errors import AwsError


def s3_error(code: str, message: str, status: int = 400, **fields: object) -> AwsError:
    return AwsError(code, message, status, fields={k: v for k, v in fields.items() if v != ""})


def no_such_bucket(name: str) -> AwsError:
    return s3_error("NoSuchBucket", "The specified bucket does not exist", 404, BucketName=name)


def no_such_key(key: str) -> AwsError:
    return s3_error("NoSuchKey", "The specified key does not exist.", 404, Key=key)


def no_such_upload(upload_id: str) -> AwsError:
    return s3_error(
        "NoSuchUpload",
        "The specified upload does not exist. The upload ID may be invalid, or the upload "
        "may have been aborted or completed.",
        404,
        UploadId=upload_id,
    )


def access_denied() -> AwsError:
    return s3_error("AccessDenied", "Access Denied", 403)


def already_owned(name: str) -> AwsError:
    return s3_error(
        "BucketAlreadyOwnedByYou",
        "Your previous request to create the named bucket succeeded and you already own it.",
        409,
        BucketName=name,
    )


def already_exists(name: str) -> AwsError:
    return s3_error(
        "BucketAlreadyExists",
        "The requested bucket name is not available. The bucket namespace is shared by all "
        "users of the system. Please select a different name and try again.",
        409,
        BucketName=name,
    )


def not_empty(name: str) -> AwsError:
    return s3_error(
        "BucketNotEmpty", "The bucket you tried to delete is not empty", 409, BucketName=name
    )


def invalid_bucket_name(name: str) -> AwsError:
    return s3_error("InvalidBucketName", "The specified bucket is not valid.", 400, BucketName=name)


def invalid_range(requested: str, size: int) -> AwsError:
    return s3_error(
        "InvalidRange",
        "The requested range is not satisfiable",
        416,
        RangeRequested=requested,
        ActualObjectSize=size,
    )


def invalid_part(upload_id: str, number: int, etag: str) -> AwsError:
    return s3_error(
        "InvalidPart",
        "One or more of the specified parts could not be found.  The part may not have been "
        "uploaded, or the specified entity tag may not match the part's entity tag.",
        400,
        UploadId=upload_id,
        PartNumber=number,
        ETag=etag,
    )


def invalid_part_order(upload_id: str) -> AwsError:
    return s3_error(
        "InvalidPartOrder",
        "The list of parts was not in ascending order. Parts must be ordered by part number.",
        400,
        UploadId=upload_id,
    )


def entity_too_small(size: int, number: int, etag: str) -> AwsError:
    return s3_error(
        "EntityTooSmall",
        "Your proposed upload is smaller than the minimum allowed size",
        400,
        ProposedSize=size,
        MinSizeAllowed=5242880,
        PartNumber=number,
        ETag=etag,
    )


def bad_digest(what: str, expected: str, calculated: str) -> AwsError:
    if what == "Content-MD5":
        return s3_error(
            "BadDigest",
            "The Content-MD5 you specified did not match what we received.",
            400,
            ExpectedDigest=expected,
            CalculatedDigest=calculated,
        )
    return s3_error(
        "BadDigest", f"The {what} you specified did not match the calculated checksum.", 400
    )


def precondition_failed(condition: str) -> AwsError:
    return s3_error(
        "PreconditionFailed",
        "At least one of the pre-conditions you specified did not hold",
        412,
        Condition=condition,
    )


def invalid_request(message: str) -> AwsError:
    return s3_error("InvalidRequest", message, 400)


def invalid_argument(message: str, name: str = "", value: str = "") -> AwsError:
    return s3_error("InvalidArgument", message, 400, ArgumentName=name, ArgumentValue=value)
