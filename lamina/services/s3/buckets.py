"""Every bucket: one namespace for all accounts (as S3's), each bucket owned by one account
and living in one region, with its notification configuration. Kept in memory, written
through to the store."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from lamina.context import RequestContext
from lamina.services.s3 import errors
from lamina.services.s3.store import ObjectStore

BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
IP_LIKE = re.compile(r"\d+\.\d+\.\d+\.\d+")


def canonical_id(account: str) -> str:
    """The account's canonical user id (64 hex digits), as S3 names owners."""
    return hashlib.sha256(f"lamina-canonical-{account}".encode()).hexdigest()


def owner(account: str) -> dict[str, str]:
    return {"DisplayName": account, "ID": canonical_id(account)}


def check_name(name: str) -> None:
    if (
        not BUCKET_NAME.fullmatch(name)
        or ".." in name
        or IP_LIKE.fullmatch(name)
        or name.startswith("xn--")
        or name.endswith("-s3alias")
    ):
        raise errors.invalid_bucket_name(name)


@dataclass
class Bucket:
    name: str
    account: str
    region: str
    created: float
    notification: dict[str, Any] = field(default_factory=dict)

    @property
    def arn(self) -> str:
        return f"arn:aws:s3:::{self.name}"

    def record(self) -> dict[str, Any]:
        return {"created": self.created, "notification": self.notification}


class Buckets:
    """Read through to the store on every request: another node's new bucket or
    notification configuration counts at once."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def find(self, name: str) -> Bucket | None:
        found = self.store.bucket(name)
        if found is None:
            return None
        account, region, record = found
        return Bucket(name, account, region, record["created"], record.get("notification") or {})

    def get(self, ctx: RequestContext, name: str) -> Bucket:
        """The caller's bucket `name`: NoSuchBucket, or AccessDenied if another's."""
        bucket = self.find(name)
        if bucket is None:
            raise errors.no_such_bucket(name)
        if bucket.account != ctx.account:
            raise errors.access_denied()
        return bucket

    def create(self, ctx: RequestContext, name: str, region: str, now: float) -> Bucket:
        check_name(name)
        bucket = Bucket(name, ctx.account, region, now)
        if self.store.insert_bucket(name, ctx.account, region, bucket.record()):
            return bucket
        found = self.find(name)
        if found is None:  # deleted meanwhile: try once more
            return self.create(ctx, name, region, now)
        if found.account != ctx.account:
            raise errors.already_exists(name)
        if region == "us-east-1" and found.region == "us-east-1":
            return found  # us-east-1 answers 200 to its owner, as S3 does
        raise errors.already_owned(name)

    def delete(self, bucket: Bucket) -> None:
        if not self.store.delete_bucket(bucket.name):
            raise errors.not_empty(bucket.name)

    def owned_by(self, account: str) -> list[Bucket]:
        return [
            Bucket(name, account, region, record["created"], record.get("notification") or {})
            for name, region, record in self.store.buckets_of(account)
        ]

    def set_notification(self, bucket: Bucket, configuration: dict[str, Any]) -> None:
        bucket.notification = configuration
        self.store.update_bucket(bucket.name, bucket.record())
