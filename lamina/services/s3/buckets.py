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
    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.buckets: dict[str, Bucket] = {}
        for name, account, region, record in store.buckets():
            self.buckets[name] = Bucket(
                name, account, region, record["created"], record.get("notification") or {}
            )

    def get(self, ctx: RequestContext, name: str) -> Bucket:
        """The caller's bucket `name`: NoSuchBucket, or AccessDenied if another's."""
        bucket = self.buckets.get(name)
        if bucket is None:
            raise errors.no_such_bucket(name)
        if bucket.account != ctx.account:
            raise errors.access_denied()
        return bucket

    def create(self, ctx: RequestContext, name: str, region: str, now: float) -> Bucket:
        check_name(name)
        found = self.buckets.get(name)
        if found is not None:
            if found.account != ctx.account:
                raise errors.already_exists(name)
            if region == "us-east-1" and found.region == "us-east-1":
                return found  # us-east-1 answers 200 to its owner, as S3 does
            raise errors.already_owned(name)
        bucket = Bucket(name, ctx.account, region, now)
        self.store.put_bucket(name, ctx.account, region, bucket.record())
        self.buckets[name] = bucket
        return bucket

    def delete(self, bucket: Bucket) -> None:
        if not self.store.bucket_is_empty(bucket.name):
            raise errors.not_empty(bucket.name)
        self.store.delete_bucket(bucket.name)
        self.buckets.pop(bucket.name, None)

    def owned_by(self, account: str) -> list[Bucket]:
        return sorted(
            (b for b in self.buckets.values() if b.account == account), key=lambda b: b.name
        )

    def set_notification(self, bucket: Bucket, configuration: dict[str, Any]) -> None:
        bucket.notification = configuration
        self.store.put_bucket(bucket.name, bucket.account, bucket.region, bucket.record())
