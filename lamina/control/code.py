"""Deployment packages: checked and extracted without trusting the zip's own headers."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import zipfile
import zlib
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from lamina.context import RequestContext
from lamina.errors import AwsError, invalid_parameter

ZIPPED_LIMIT = 52_428_800
UNZIPPED_LIMIT = 262_144_000
CHUNK = 1 << 20

UNZIP_FAILED = "Could not unzip uploaded file. Please check your file, then try to upload again."


@dataclass(frozen=True)
class Package:
    digest_hex: str
    code_sha256: str  # base64 of the SHA-256, as AWS reports it
    zipped_size: int
    unzipped_size: int


def digest(blob: bytes) -> tuple[str, str]:
    sha = hashlib.sha256(blob)
    return sha.hexdigest(), base64.b64encode(sha.digest()).decode()


def check_zipped_size(blob: bytes) -> None:
    if len(blob) > ZIPPED_LIMIT:
        raise AwsError(
            "RequestEntityTooLargeException",
            f"Zipped size must be smaller than {ZIPPED_LIMIT} bytes",
            413,
        )


def _safe_relative(name: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise invalid_parameter(f"{UNZIP_FAILED} The entry '{name}' points outside the task root.")
    return path


def _within(root: Path, path: str) -> bool:
    return path == str(root) or path.startswith(str(root) + os.sep)


def _inside(root: Path, link_dir: Path, target: str) -> bool:
    if target.startswith("/"):
        return False
    return _within(root, os.path.normpath(os.path.join(link_dir, target)))


def _escaping_link(root: Path) -> str | None:
    """A symlink of the tree that resolves outside it, once every link is in place.

    Each link may look harmless on its own (`a -> .`, `up -> a/..`) and still escape
    through the others, whatever their order in the zip.
    """
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            if os.path.islink(path) and not _within(root, os.path.realpath(path)):
                return os.path.relpath(path, root)
    return None


def extract(blob: bytes, dest: Path) -> int:
    """Extract `blob` into the empty directory `dest`; return the bytes written.

    Sizes are counted while decompressing, so a zip that lies in its headers (a zip bomb)
    stops at the limit. Entries that would land outside `dest` are refused.
    """
    try:
        archive = zipfile.ZipFile(BytesIO(blob))
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, NotImplementedError) as exc:
        raise invalid_parameter(UNZIP_FAILED) from exc
    written = 0
    root = dest.resolve()
    with archive:
        for info in archive.infolist():
            relative = _safe_relative(info.filename)
            if not relative.parts:
                continue
            target = root.joinpath(*relative.parts)
            if not _within(root, os.path.realpath(target)):  # through a link extracted before
                raise invalid_parameter(
                    f"{UNZIP_FAILED} The entry '{info.filename}' points outside the task root."
                )
            mode = info.external_attr >> 16
            try:
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as source:
                    if stat.S_ISLNK(mode):
                        link = source.read(4096).decode()
                        if not _inside(root, target.parent, link):
                            raise invalid_parameter(
                                f"{UNZIP_FAILED} The symbolic link '{info.filename}' points "
                                "outside the task root."
                            )
                        os.symlink(link, target)
                        continue
                    with open(target, "wb") as out:
                        while chunk := source.read(CHUNK):
                            written += len(chunk)
                            if written > UNZIPPED_LIMIT:
                                raise invalid_parameter(
                                    f"Unzipped size must be smaller than {UNZIPPED_LIMIT} bytes",
                                    user=False,
                                )
                            out.write(chunk)
            except AwsError:
                raise
            except (
                zipfile.BadZipFile,
                zipfile.LargeZipFile,
                zlib.error,
                OSError,
                EOFError,
                NotImplementedError,
                RuntimeError,
                ValueError,
            ) as exc:
                raise invalid_parameter(UNZIP_FAILED) from exc
            # Keep the execute bits (a `bootstrap` needs them), never setuid/setgid; all may read.
            permissions = (stat.S_IMODE(mode) & 0o777) or 0o644
            os.chmod(target, permissions | 0o444)
    escaping = _escaping_link(root)
    if escaping is not None:
        raise invalid_parameter(
            f"{UNZIP_FAILED} The symbolic link '{escaping}' points outside the task root."
        )
    return written


class CodeSource(Protocol):
    """Where code named by S3Bucket / S3Key comes from (services/s3/code.py)."""

    async def code_object(
        self, ctx: RequestContext, bucket: str, key: str, version: str | None
    ) -> bytes: ...


async def zip_from(
    ctx: RequestContext, code: dict[str, Any], source: CodeSource | None = None
) -> bytes:
    """The package a request names: its ZipFile, or the object S3Bucket / S3Key name."""
    if code.get("ImageUri"):
        raise invalid_parameter("Lamina accepts code as ZipFile or from S3, not as an image.")
    if code.get("S3Bucket") or code.get("S3Key"):
        if code.get("ZipFile"):
            raise invalid_parameter(
                "Please do not provide other FunctionCode parameters when providing a ZipFile."
            )
        if not (code.get("S3Bucket") and code.get("S3Key")):
            raise invalid_parameter("Please provide both S3Bucket and S3Key.")
        if source is None:
            raise invalid_parameter("Code from S3 is not available on this server.")
        return await source.code_object(
            ctx, code["S3Bucket"], code["S3Key"], code.get("S3ObjectVersion")
        )
    blob = code.get("ZipFile")
    if blob is None:
        raise invalid_parameter("Please provide a source for function code.")
    return bytes(blob)
