"""The AWS SDK that python3.x environments find on sys.path, as Lambda's runtimes provide it.

A directory holding boto3 and its pure-Python dependencies (botocore, s3transfer,
jmespath, python-dateutil, six, urllib3), copied from the distributions installed with
Lamina: nothing else of Lamina's site-packages, usable from the Pythons its distributions
declare (`Requires-Python`: 3.10 and later for boto3 1.44; `minimum_python`). It is made
once per installation, under `<sys.prefix>/share/lamina/python-sdk` (or the data
directory when the prefix is read-only), and rebuilt when the installed versions change.
The Python runtime puts it right after the function's code (`_LAMINA_PYTHON_SDK`), so a
boto3 bundled with the function wins.
"""

from __future__ import annotations

import contextlib
import importlib.metadata as metadata
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

log = logging.getLogger("lamina.sandbox")

ROOT_DISTRIBUTION = "boto3"
NAME = re.compile(r"^[A-Za-z0-9_.-]+")


def _closure(root: str) -> list[metadata.Distribution]:
    seen: dict[str, metadata.Distribution] = {}
    todo = [root]
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[name] = dist
        for requirement in dist.requires or []:
            if "extra ==" in requirement:
                continue
            found = NAME.match(requirement)
            if found:
                todo.append(found.group(0))
    return list(seen.values())


def _stamp(dists: list[metadata.Distribution]) -> str:
    return json.dumps(sorted(f"{d.metadata['Name']}=={d.version}" for d in dists))


def _copy(dists: list[metadata.Distribution], target: Path) -> None:
    for dist in dists:
        for file in dist.files or []:
            parts = Path(str(file)).parts
            if not parts or ".." in parts or parts[0] in ("bin", "share"):
                continue
            source = Path(str(dist.locate_file(file)))
            if not source.is_file():
                continue
            destination = target.joinpath(*parts)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)  # mtimes kept: the compiled files stay valid


def _make(where: Path, dists: list[metadata.Distribution], stamp: str) -> Path:
    final = where / "python-sdk"
    with contextlib.suppress(OSError):
        if (final / ".lamina-sdk").read_text() == stamp:
            return final
    where.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".python-sdk-", dir=where))
    try:
        _copy(dists, staging)
        (staging / ".lamina-sdk").write_text(stamp)
        for path in (staging, *staging.rglob("*")):
            path.chmod(0o755 if path.is_dir() else 0o644)  # readable by the sandbox's user
        old = where / f".python-sdk-old-{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            final.rename(old)
        try:
            staging.rename(final)
        except OSError:  # another server made it at the same moment
            shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def minimum_python() -> tuple[int, int]:
    """The oldest Python every distribution of the SDK declares it runs on."""
    found = (3, 0)
    for dist in _closure(ROOT_DISTRIBUTION):
        declared = (dist.metadata.get_all("Requires-Python") or [""])[0]
        wanted = re.search(r">=\s*3\.(\d+)", declared)
        if wanted:
            found = max(found, (3, int(wanted.group(1))))
    return found


def python_sdk_dir(fallback: Path) -> Path | None:
    """The SDK directory (made if it is missing or stale), or None without boto3."""
    dists = _closure(ROOT_DISTRIBUTION)
    if not any(d.metadata["Name"].lower() == ROOT_DISTRIBUTION for d in dists):
        log.warning("boto3 is not installed with Lamina: python3.x functions get no SDK")
        return None
    stamp = _stamp(dists)
    for where in (Path(sys.prefix) / "share" / "lamina", fallback):
        try:
            return _make(where, dists, stamp)
        except OSError as exc:
            log.info("no SDK directory under %s (%s)", where, exc)
    return None
