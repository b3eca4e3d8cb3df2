"""Code uploads that cannot take the server down: large bodies spooled and parsed one at a
time off the loop (eight 70 MB CreateFunction requests cost the memory of one and do not
stall other requests), a zip of many files extracting without holding up other
functions' operations, and code of deleted functions and replaced versions removed."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import threading
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import PYTHON_RUNTIME, ROLE, Server, make_zip, python_function

HANDLER = "def handler(event, context):\n    return 'v{}'\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("uploads") / "data", ["--isolation", "none"]).start()
    yield running
    running.stop()


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def big_zip(size: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("app.py", HANDLER.format("big"))
        archive.writestr("blob.bin", os.urandom(size))
    return buffer.getvalue()


def create_body(name: str, blob_b64: bytes) -> bytes:
    head = json.dumps(
        {"FunctionName": name, "Runtime": PYTHON_RUNTIME, "Role": ROLE, "Handler": "app.handler"}
    ).encode()[:-1]
    return head + b',"Code":{"ZipFile":"' + blob_b64 + b'"}}'


def send(port: int, body: bytes, out: list[int]) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(
            b"POST /2015-03-31/functions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        view = memoryview(body)
        for start in range(0, len(body), 1 << 20):
            sock.sendall(view[start : start + (1 << 20)])
        reply = b""
        while b"\r\n" not in reply:
            reply += sock.recv(4096)
        out.append(int(reply.split()[1]))


def test_eight_large_uploads_cost_one_and_stall_nobody(server: Server) -> None:
    assert server.process is not None
    blob = base64.b64encode(big_zip(48 * 1024 * 1024))  # a 48 MB zip: a ~64 MB request
    bodies = [create_body(f"big-{n}", blob) for n in range(8)]
    del blob
    for _ in range(20):  # the server's own working set first
        urllib.request.urlopen(f"{server.endpoint}/_lamina/health", timeout=10).read()
    before = peak_rss_mb(server.process.pid)
    statuses: list[int] = []
    senders = [threading.Thread(target=send, args=(server.port, b, statuses)) for b in bodies]
    health: list[float] = []
    for sender in senders:
        sender.start()
    while any(sender.is_alive() for sender in senders):
        started = time.perf_counter()
        urllib.request.urlopen(f"{server.endpoint}/_lamina/health", timeout=30).read()
        health.append(time.perf_counter() - started)
        time.sleep(0.02)
    for sender in senders:
        sender.join()
    grown = peak_rss_mb(server.process.pid) - before
    print(
        f"\npeak RSS grew {grown:.0f} MB; health p50 {sorted(health)[len(health) // 2]:.4f} s,"
        f" max {max(health):.3f} s over {len(health)}"
    )
    assert statuses == [201] * 8
    assert grown < 450, f"eight ~64 MB uploads grew the server by {grown:.0f} MB"
    assert max(health) < 0.8, f"the health check waited {max(health):.2f} s"
    lam = server.client()
    assert json.loads(lam.invoke(FunctionName="big-7")["Payload"].read()) == "vbig"


def many_files_zip(count: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("app.py", HANDLER.format("many"))
        for n in range(count):
            archive.writestr(f"d{n % 100}/f{n}.txt", b"")
    return buffer.getvalue()


def test_a_slow_extraction_holds_up_no_other_function(server: Server) -> None:
    lam = server.client()
    heavy = many_files_zip(15_000)
    done: dict[str, float] = {}

    def create_heavy() -> None:
        server.client().create_function(
            FunctionName="many-files",
            Runtime=PYTHON_RUNTIME,
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": heavy},
        )
        done["heavy"] = time.monotonic()

    thread = threading.Thread(target=create_heavy)
    started = time.monotonic()
    thread.start()
    time.sleep(0.5)  # the heavy one is extracting
    python_function(lam, "light", HANDLER.format("light"))
    done["light"] = time.monotonic()
    thread.join(120)
    print(f"\nlight {done['light'] - started:.2f} s, heavy {done['heavy'] - started:.2f} s")
    assert done["light"] < done["heavy"], "the small function waited for the large extraction"
    assert done["light"] - started < 0.5 + 2.0
    assert json.loads(lam.invoke(FunctionName="light")["Payload"].read()) == "vlight"
    assert json.loads(lam.invoke(FunctionName="many-files")["Payload"].read()) == "vmany"


def code_entries(server: Server) -> set[str]:
    return {p.name for p in (server.data_dir / "code").iterdir() if not p.name.startswith(".")}


def wait_for(predicate: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return bool(predicate())  # type: ignore[operator]


def digest(blob: bytes) -> str:
    import hashlib

    return hashlib.sha256(blob).hexdigest()


def test_code_of_deleted_functions_and_replaced_versions_leaves_the_disk(server: Server) -> None:
    lam = server.client()
    first, second, third = (make_zip({"app.py": HANDLER.format(n)}) for n in (1, 2, 3))
    lam.create_function(
        FunctionName="gc", Runtime=PYTHON_RUNTIME, Role=ROLE, Handler="app.handler",
        Code={"ZipFile": first},
    )  # fmt: skip
    assert {digest(first), digest(first) + ".zip"} <= code_entries(server)
    lam.update_function_code(FunctionName="gc", ZipFile=second)  # $LATEST replaced
    assert wait_for(lambda: digest(first) not in code_entries(server))
    assert digest(first) + ".zip" not in code_entries(server)
    version = lam.publish_version(FunctionName="gc")["Version"]  # version 1 is `second`
    lam.update_function_code(FunctionName="gc", ZipFile=third)
    time.sleep(0.3)
    assert digest(second) in code_entries(server)  # a published version still uses it
    assert json.loads(lam.invoke(FunctionName="gc", Qualifier=version)["Payload"].read()) == "v2"
    lam.delete_function(FunctionName="gc", Qualifier=version)
    assert wait_for(lambda: digest(second) not in code_entries(server))
    # The same zip shared by two functions stays until the last one goes.
    lam.create_function(
        FunctionName="gc-twin", Runtime=PYTHON_RUNTIME, Role=ROLE, Handler="app.handler",
        Code={"ZipFile": third},
    )  # fmt: skip
    lam.delete_function(FunctionName="gc")
    time.sleep(0.3)
    assert digest(third) in code_entries(server)
    lam.delete_function(FunctionName="gc-twin")
    assert wait_for(lambda: digest(third) not in code_entries(server))
    code = server.data_dir / "code"
    assert wait_for(lambda: not [p for p in code.iterdir() if p.name.startswith(".trash")])


def test_code_survives_a_restart_and_is_collected_after_it(tmp_path: Path) -> None:
    running = Server(tmp_path / "data", ["--isolation", "none"]).start()
    try:
        lam = running.client()
        kept, gone = make_zip({"app.py": HANDLER.format("a")}), make_zip({"app.py": "x = 1\n"})
        for name, blob in (("kept", kept), ("gone", gone)):
            lam.create_function(
                FunctionName=name, Runtime=PYTHON_RUNTIME, Role=ROLE, Handler="app.handler",
                Code={"ZipFile": blob},
            )  # fmt: skip
        running.stop()
        running.start()
        lam = running.client()
        assert json.loads(lam.invoke(FunctionName="kept")["Payload"].read()) == "va"
        lam.delete_function(FunctionName="gone")
        assert wait_for(lambda: digest(gone) not in code_entries(running))
        assert digest(kept) in code_entries(running)
    finally:
        running.stop()
