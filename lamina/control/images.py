"""What the engine needs to start environments of a function version (FunctionImage),
made once per revision of the version: every change of its configuration or code gives it
a new RevisionId, so an image is looked up, not rebuilt, on the invoke path."""

from __future__ import annotations

from typing import Any

from lamina.control import code as packages
from lamina.control.layers import merge
from lamina.keys import FunctionKey
from lamina.sandbox import runtimes
from lamina.sandbox.launch import FunctionImage
from lamina.store.sqlite import SqliteStore

IMAGE_CACHE_LIMIT = 4096


class Images:
    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self._images: dict[tuple[FunctionKey, str, str, str], FunctionImage] = {}

    def image(self, key: FunctionKey, record: dict[str, Any]) -> FunctionImage:
        """What the engine needs to start environments of one version (`record` holds its
        "config" and "code", as a Target's view does). Made once per revision: every
        change of a version's configuration or code gives it a new RevisionId."""
        config = record["config"]
        # The code's digest too: an image is never reused for other code (no Path to read).
        cache_key = (key, config["Version"], config["RevisionId"], record["code"]["digest"])
        found = self._images.get(cache_key)
        if found is not None:
            return found
        if self.store.shared:
            self._fetch(record["code"])
        image = self._make(key, record)
        if not image.unavailable:
            if len(self._images) >= IMAGE_CACHE_LIMIT:
                del self._images[next(iter(self._images))]
            self._images[cache_key] = image
        return image

    def _fetch(self, code: dict[str, Any]) -> None:
        """Cluster mode: code (and layers) another node added are brought from the
        database the first time this node makes an image of them."""
        self.store.fetch_code(code["digest"], packages.extract)
        opt = code.get("opt")
        if opt and not self.store.opt_dir(opt).is_dir():
            digests = [layer["digest"] for layer in code.get("layers") or []]
            if all(self.store.fetch_code(d, packages.extract) for d in digests):
                merge(self.store, digests)

    def _make(self, key: FunctionKey, record: dict[str, Any]) -> FunctionImage:
        config = record["config"]
        interpreter, unavailable = "", ""
        try:
            interpreter = runtimes.current().find(config["Runtime"]).executable
        except runtimes.RuntimeUnavailable as exc:
            unavailable = str(exc)
        layers = record["code"].get("opt")
        return FunctionImage(
            interpreter=interpreter,
            unavailable=unavailable,
            opt_dir=self.store.opt_dir(layers) if layers else None,
            name=key.name,
            arn=key.arn,
            version=config["Version"],
            region=key.region,
            runtime=config["Runtime"],
            handler=config["Handler"],
            code_dir=self.store.code_dir(record["code"]["digest"]),
            memory_mb=config["MemorySize"],
            timeout_s=config["Timeout"],
            ephemeral_mb=config["EphemeralStorage"]["Size"],
            variables=dict(config.get("Environment", {}).get("Variables", {})),
            revision=config["RevisionId"],
            tracing=(config.get("TracingConfig") or {}).get("Mode", "PassThrough"),
            vpc_subnets=tuple((config.get("VpcConfig") or {}).get("SubnetIds") or ()),
            role=config.get("Role", ""),
            log_format=(config.get("LoggingConfig") or {}).get("LogFormat", "Text"),
            log_level=(config.get("LoggingConfig") or {}).get("ApplicationLogLevel", ""),
        )
