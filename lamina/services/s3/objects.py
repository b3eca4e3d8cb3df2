"""Objects and multipart uploads: bytes in files, metadata rows, ETags as S3 computes
them (the MD5 of the bytes; for a multipart object the MD5 of its parts' MD5s, then `-N`),
and the notifications each change makes, written with the change (store.py)."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import secrets
from dataclasses import dataclass
from typing import Any

from lamina.clock import Clock
from lamina.context import RequestContext
from lamina.services.s3 import errors, notifications
from lamina.services.s3.buckets import Bucket, canonical_id
from lamina.services.s3.store import ObjectStore

MIN_PART = 5 * 1024 * 1024
SMALL = 64 * 1024  # objects this small are written and read on the event loop
MAX_PART_NUMBER = 10_000
LAST = "\U0010ffff"  # sorts after every character a key may hold


@dataclass
class Listing:
    entries: list[tuple[str, dict[str, Any] | None]]  # (key, record) or (common prefix, None)
    truncated: bool
    cursor: str  # where the next page starts (after it)


def principal_id(ctx: RequestContext) -> str:
    """How an event record names who made the change."""
    if ctx.principal and ":assumed-role/" in ctx.principal:
        return "AWS:" + ctx.principal.split(":assumed-role/", 1)[1].replace("/", ":")
    return canonical_id(ctx.account)[:14].upper()


class Objects:
    def __init__(self, store: ObjectStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._sequence = itertools.count(1)

    # Notifications ----------------------------------------------------------------------
    def _sequencer(self) -> str:
        return f"{int(self.clock.wall() * 1000):012X}{next(self._sequence) % 0xFFFF:04X}"

    def _outgoing(
        self,
        ctx: RequestContext,
        bucket: Bucket,
        event: str,
        key: str,
        record: dict[str, Any] | None,
    ) -> list[dict[str, Any]]:
        if not bucket.notification:
            return []
        change = notifications.Change(
            event,
            bucket.name,
            key,
            region=bucket.region,
            owner=canonical_id(bucket.account)[:14].upper(),
            principal=principal_id(ctx),
            source_ip=ctx.client or "127.0.0.1",
            request_id=ctx.request_id,
            when=self.clock.wall(),
            sequencer=self._sequencer(),
            size=record["size"] if record is not None else None,
            etag=record["etag"] if record is not None else None,
        )
        return notifications.outgoing(bucket.notification, change, bucket.account)

    # Objects ----------------------------------------------------------------------------
    def record(self, bucket: Bucket, key: str) -> dict[str, Any]:
        found = self.store.get_object(bucket.name, key)
        if found is None:
            raise errors.no_such_key(key)
        return found

    async def put(
        self,
        ctx: RequestContext,
        bucket: Bucket,
        key: str,
        data: bytes,
        fields: dict[str, Any],
        event: str = "ObjectCreated:Put",
    ) -> dict[str, Any]:
        """Store `data` as the object `key`; `fields`: content type, metadata, headers,
        checksums. The object's record."""
        etag = hashlib.md5(data, usedforsecurity=False).hexdigest()
        name = await self._write(data)
        record = {**fields, "file": name, "size": len(data), "etag": etag}
        return await self._commit(ctx, bucket, key, record, event)

    async def _commit(
        self,
        ctx: RequestContext,
        bucket: Bucket,
        key: str,
        record: dict[str, Any],
        event: str,
        upload_id: str | None = None,
    ) -> dict[str, Any]:
        record["modified"] = self.clock.wall()
        outgoing = self._outgoing(ctx, bucket, event, key, record)
        if upload_id is None:
            old = self.store.put_object(bucket.name, key, record, outgoing)
        else:
            old = self.store.complete_upload(upload_id, bucket.name, key, record, outgoing)
        if old is not None and old["file"] != record["file"]:
            self.store.remove_files([old["file"]])
        return record

    async def _write(self, data: bytes) -> str:
        """The bytes in a new file: a small one on the loop (cheaper than a thread's hop),
        a larger one off it."""
        if len(data) <= SMALL:
            return self.store.write_file(data)
        return await asyncio.to_thread(self.store.write_file, data)

    async def read(
        self, record: dict[str, Any], start: int = 0, length: int | None = None
    ) -> bytes:
        if record["size"] == 0:
            return b""
        if record["size"] <= SMALL:
            return self.store.read_file(record["file"], start, length)
        return await asyncio.to_thread(self.store.read_file, record["file"], start, length)

    def delete(self, ctx: RequestContext, bucket: Bucket, key: str) -> bool:
        """Whether there was such an object."""
        current = self.store.get_object(bucket.name, key)
        if current is None:
            return False
        outgoing = self._outgoing(ctx, bucket, "ObjectRemoved:Delete", key, None)
        old = self.store.delete_object(bucket.name, key, outgoing)
        if old is not None:
            self.store.remove_files([old["file"]])
        return old is not None

    async def copy(
        self,
        ctx: RequestContext,
        source: dict[str, Any],
        bucket: Bucket,
        key: str,
        fields: dict[str, Any],
    ) -> dict[str, Any]:
        name = await asyncio.to_thread(self.store.copy_file, source["file"])
        record = {**fields, "file": name, "size": source["size"], "etag": source["etag"]}
        return await self._commit(ctx, bucket, key, record, "ObjectCreated:Copy")

    def listing(
        self, bucket: Bucket, prefix: str, delimiter: str, after: str, max_keys: int
    ) -> Listing:
        """Keys under `prefix` after `after`, in order, keys that share a part up to the
        delimiter rolled into one common prefix; at most `max_keys` entries."""
        entries: list[tuple[str, dict[str, Any] | None]] = []
        cursor = after
        while len(entries) < max_keys:
            rows = self.store.list_objects(bucket.name, prefix, cursor, max_keys - len(entries))
            if not rows:
                return Listing(entries, False, cursor)
            for key, record in rows:
                if delimiter:
                    at = key.find(delimiter, len(prefix))
                    if at >= 0:
                        common = key[: at + len(delimiter)]
                        entries.append((common, None))
                        cursor = common + LAST
                        break
                entries.append((key, record))
                cursor = key
        more = self.store.list_objects(bucket.name, prefix, cursor, 1)
        return Listing(entries, bool(more), cursor)

    # Multipart uploads --------------------------------------------------------------------
    def create_upload(
        self, ctx: RequestContext, bucket: Bucket, key: str, fields: dict[str, Any]
    ) -> str:
        upload_id = secrets.token_urlsafe(48)
        record = {**fields, "initiated": self.clock.wall(), "account": ctx.account}
        self.store.put_upload(upload_id, bucket.name, key, record)
        return upload_id

    def upload(self, bucket: Bucket, key: str, upload_id: str) -> dict[str, Any]:
        found = self.store.get_upload(upload_id)
        if found is None or found[0] != bucket.name or found[1] != key:
            raise errors.no_such_upload(upload_id)
        return found[2]

    async def upload_part(
        self, bucket: Bucket, key: str, upload_id: str, number: int, data: bytes
    ) -> dict[str, Any]:
        self.upload(bucket, key, upload_id)
        if not 1 <= number <= MAX_PART_NUMBER:
            raise errors.invalid_argument(
                "Part number must be an integer between 1 and 10000, inclusive",
                "partNumber",
                str(number),
            )
        etag = hashlib.md5(data, usedforsecurity=False).hexdigest()
        name = await self._write(data)
        record = {"file": name, "size": len(data), "etag": etag, "modified": self.clock.wall()}
        if self.store.get_upload(upload_id) is None:  # aborted while the part was written
            self.store.remove_files([name])
            raise errors.no_such_upload(upload_id)
        replaced = self.store.put_part(upload_id, number, record)
        if replaced is not None:
            self.store.remove_files([replaced])
        return record

    def parts(self, upload_id: str) -> list[tuple[int, dict[str, Any]]]:
        return self.store.parts(upload_id)

    async def complete(
        self,
        ctx: RequestContext,
        bucket: Bucket,
        key: str,
        upload_id: str,
        chosen: list[tuple[int, str]],
    ) -> dict[str, Any]:
        """The object made of the chosen (part number, ETag) parts, in order."""
        upload = self.upload(bucket, key, upload_id)
        if not chosen:
            raise errors.s3_error(
                "MalformedXML",
                "The XML you provided was not well-formed or did not validate against our "
                "published schema",
            )
        stored = dict(self.store.parts(upload_id))
        numbers = [number for number, _ in chosen]
        if numbers != sorted(numbers) or len(set(numbers)) != len(numbers):
            raise errors.invalid_part_order(upload_id)
        files, digests, size = [], [], 0
        for index, (number, etag) in enumerate(chosen):
            part = stored.get(number)
            if part is None or etag.strip('"') != part["etag"]:
                raise errors.invalid_part(upload_id, number, etag)
            if index < len(chosen) - 1 and part["size"] < MIN_PART:
                raise errors.entity_too_small(part["size"], number, etag)
            files.append(part["file"])
            digests.append(bytes.fromhex(part["etag"]))
            size += part["size"]
        name = await asyncio.to_thread(self.store.join_files, files)
        etag = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()
        fields = {k: v for k, v in upload.items() if k not in ("initiated", "account")}
        record = {
            **fields,
            "file": name,
            "size": size,
            "etag": f"{etag}-{len(chosen)}",
            "parts": len(chosen),
        }
        try:
            done = await self._commit(
                ctx, bucket, key, record, "ObjectCreated:CompleteMultipartUpload", upload_id
            )
        except BaseException:
            self.store.remove_files([name])
            raise
        self.store.remove_files([part["file"] for part in stored.values()])
        return done

    def abort(self, bucket: Bucket, key: str, upload_id: str) -> None:
        self.upload(bucket, key, upload_id)
        files = [part["file"] for _, part in self.store.parts(upload_id)]
        self.store.end_upload(upload_id)
        self.store.remove_files(files)
