"""A stream's resource-based policy (PutResourcePolicy / GetResourcePolicy /
DeleteResourcePolicy): how another account reads or writes a stream, as IAM evaluates it
(lamina/iam.py).

Only the stream's own account manages its policy. A caller of another account names the
stream by its ARN and may perform the data operations a resource policy can share
(reading, writing, describing, listing shards) when the policy allows them; every other
operation stays the owner's. The policy is kept in the stream's record (it survives
restarts and goes with the stream).
"""

from __future__ import annotations

import json
import re
from typing import Any

from lamina import iam
from lamina.context import RequestContext
from lamina.errors import AwsError
from lamina.services.kinesis.streams import Stream, Streams, invalid_argument, kinesis_error

# What a stream's resource policy can let another account do (AWS's list for streams).
SHAREABLE = frozenset(
    {
        "DescribeStream",
        "DescribeStreamSummary",
        "GetRecords",
        "GetShardIterator",
        "ListShards",
        "PutRecord",
        "PutRecords",
    }
)
STREAM_ARN = re.compile(r"arn:aws[a-zA-Z-]*:kinesis:([^:]+):(\d{12}):stream/([a-zA-Z0-9_.-]+)")
MAX_POLICY = 20_480  # bytes, as Kinesis's


def principal(ctx: RequestContext) -> str:
    return ctx.principal or f"arn:aws:iam::{ctx.account}:root"


def denied(ctx: RequestContext, operation: str, arn: str) -> AwsError:
    action = f"kinesis:{operation}"
    return kinesis_error(
        "AccessDeniedException",
        f"User: {principal(ctx)} is not authorized to perform: {action} on resource: {arn} "
        f"because no resource-based policy allows the {action} action",
    )


def permitted(stream: Stream, ctx: RequestContext, operation: str) -> bool:
    """Whether a caller of another account may perform `operation` on `stream`."""
    if operation not in SHAREABLE:
        return False
    text = stream.record.get("policy")
    if not text:
        return False
    caller = iam.Caller(ctx.account, principal(ctx))
    return iam.allows(iam.parse(text), caller, f"kinesis:{operation}", stream.arn)


def _owned(streams: Streams, ctx: RequestContext, params: dict[str, Any], operation: str) -> Stream:
    arn = params["ResourceARN"]
    found = STREAM_ARN.fullmatch(arn)
    if found is None:
        raise invalid_argument(f"Invalid ResourceARN {arn}.")
    if found.group(2) != ctx.account:
        raise denied(ctx, operation, arn)
    stream = streams.stream_by_arn(arn)
    if stream is None or found.group(1) != ctx.region:
        raise kinesis_error(
            "ResourceNotFoundException",
            f"Stream {found.group(3)} under account {found.group(2)} not found.",
        )
    return stream


def put(streams: Streams, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    stream = _owned(streams, ctx, params, "PutResourcePolicy")
    text = params["Policy"]
    if len(text.encode()) > MAX_POLICY or iam.parse(text) is None:
        raise invalid_argument("Invalid policy document: the policy is not a valid JSON policy.")
    stream.record["policy"] = text
    streams.save(stream)
    return {}


def get(streams: Streams, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    stream = _owned(streams, ctx, params, "GetResourcePolicy")
    return {"Policy": stream.record.get("policy") or json.dumps({})}


def delete(streams: Streams, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    stream = _owned(streams, ctx, params, "DeleteResourcePolicy")
    if stream.record.pop("policy", None) is None:
        raise kinesis_error(
            "ResourceNotFoundException", f"No resource policy found for resource {stream.arn}."
        )
    streams.save(stream)
    return {}
