"""Function code on its way in and out: uploads unpacked off the event loop under a lock
per function and per code digest (never one for everything: a zip of 200,000 files holds up
only its own function), and code no function version uses any more removed from disk and,
in a cluster, from the database: once no function record of any node names it and its
blob is older than BLOB_GRACE_S (platform seconds; an upload that found the code already
there renews the grace, so a record on its way through another node keeps it)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from lamina.clock import Clock
from lamina.control import code as packages
from lamina.control.layers import Layers
from lamina.store.sqlite import SqliteStore

BLOB_GRACE_S = 60.0


class Uploads:
    def __init__(self, store: SqliteStore, layers: Layers | None, clock: Clock) -> None:
        self.store = store
        self.layers = layers
        self.clock = clock
        self._locks: dict[object, asyncio.Lock] = {}
        self._removals: set[asyncio.Task[None]] = set()
        self._blob_drops: set[asyncio.Task[None]] = set()
        store.on_unreferenced.append(self._unreferenced)

    @contextlib.asynccontextmanager
    async def lock(self, name: object) -> AsyncIterator[None]:
        """One writer at a time per function key or code digest (no lock for all)."""
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and self._locks.get(name) is lock:
                del self._locks[name]

    async def package(self, blob: bytes) -> packages.Package:
        packages.check_zipped_size(blob)
        digest_hex, code_sha = await asyncio.to_thread(packages.digest, blob)
        async with self.lock(("code", digest_hex)):
            known = self.store.unzipped_size(digest_hex)
            if self.store.has_code(digest_hex):
                if self.store.shared and not await asyncio.to_thread(
                    self.store.keep_blob, digest_hex
                ):
                    await asyncio.to_thread(self.store.put_blob, digest_hex, blob)
                if known is None:
                    known = await asyncio.to_thread(tree_size, self.store.code_dir(digest_hex))
                unzipped = known
            else:
                staging = self.store.staging_dir()
                try:
                    unzipped = await asyncio.to_thread(packages.extract, blob, staging)
                    await asyncio.to_thread(self.store.put_code, digest_hex, blob, staging)
                finally:
                    await asyncio.to_thread(shutil.rmtree, staging, True)
        return packages.Package(digest_hex, code_sha, len(blob), unzipped)

    def _unreferenced(self, digest: str) -> None:
        """No function version uses `digest` any more: its code leaves the disk (unless a
        layer version is the same zip)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # a write before the server runs (a setting no longer fitting) keeps code
        task = loop.create_task(self._remove_code(digest))
        self._removals.add(task)
        task.add_done_callback(self._removals.discard)

    async def _remove_code(self, digest: str) -> None:
        async with self.lock(("code", digest)):
            if self.store.references(digest) or (
                self.layers is not None and self.layers.uses_code(digest)
            ):
                return  # used again meanwhile
            trash = self.store.remove_code(digest)
        if self.store.shared:
            task = asyncio.get_running_loop().create_task(self._drop_blob(digest))
            self._blob_drops.add(task)
            task.add_done_callback(self._blob_drops.discard)
        if trash is not None:
            await asyncio.to_thread(shutil.rmtree, trash, True)

    async def _drop_blob(self, digest: str) -> None:
        """Cluster mode: the blob leaves the database once nothing names it, after its
        grace (tried now and once more when a grace has passed)."""
        grace = self.clock.platform_delay(BLOB_GRACE_S)
        for attempt in range(2):
            if attempt:
                await asyncio.sleep(grace)
            async with self.lock(("code", digest)):
                if await asyncio.to_thread(self.store.used_anywhere, digest) or (
                    self.layers is not None and self.layers.uses_code(digest)
                ):
                    return
                before = self.clock.wall() - grace
                if await asyncio.to_thread(self.store.drop_blob, digest, before):
                    return

    async def close(self) -> None:
        """Code removals under way finish."""
        if self._removals:
            await asyncio.wait(set(self._removals), timeout=30)
        for task in list(self._blob_drops):  # another node's removal deletes it later
            task.cancel()
        if self._blob_drops:
            await asyncio.wait(set(self._blob_drops))


def tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())
