"""The fork server on its own: which environments it takes, exits, losing it (issue 6)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

from lamina.sandbox.forkserver import BASE_ENV, ForkLauncher, ForkServer
from lamina.sandbox.launch import Launch, SpawnedProcess


def plan(tmp_path: Path, python: str | None = sys.executable, **env: str) -> Launch:
    with socket.socket() as sock:  # a port nobody listens on: the runtime cannot connect
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    variables = {**BASE_ENV, "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}", "_HANDLER": "a.b"}
    return Launch(["unused"], {**variables, **env}, tmp_path, python=python)


def read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode()


def test_which_environments_are_forked(tmp_path: Path) -> None:
    server = ForkServer(sys.executable)
    assert server.accepts(plan(tmp_path))
    assert server.accepts(plan(tmp_path, GREETING="hi", AWS_REGION="eu-west-1"))
    assert not server.accepts(plan(tmp_path, python=None))  # a custom runtime
    assert not server.accepts(plan(tmp_path, python="/usr/bin/python3.99"))
    for name in ("PYTHONPATH", "PYTHONHASHSEED", "LD_PRELOAD", "LC_ALL", "MALLOC_ARENA_MAX"):
        assert not server.accepts(plan(tmp_path, **{name: "x"})), name
    assert not server.accepts(plan(tmp_path, LANG="C"))
    assert server.accepts(plan(tmp_path, LANG=BASE_ENV["LANG"]))


def test_exit_status_output_and_close(tmp_path: Path) -> None:
    asyncio.run(exit_status_output_and_close(tmp_path))


async def exit_status_output_and_close(tmp_path: Path) -> None:
    server = ForkServer(sys.executable)
    await server.start()
    try:
        assert server.pid is not None
        read_fd, write_fd = os.pipe()
        child = await server.fork(plan(tmp_path), write_fd)
        os.close(write_fd)
        assert child.pid != server.pid
        async with asyncio.timeout(10):
            code = await child.wait()
        assert code == 1  # the runtime could not reach its Runtime API
        assert child.returncode == 1
        output = await asyncio.to_thread(read_all, read_fd)
        os.close(read_fd)
        assert "ConnectionRefusedError" in output

        # An environment that lives on until the fork server goes: reported killed.
        read_fd, write_fd = os.pipe()
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        waiting = plan(tmp_path, AWS_LAMBDA_RUNTIME_API=address)
        lingering = await server.fork(waiting, write_fd)
        os.close(write_fd)
        assert os.getsid(lingering.pid) == lingering.pid
        await server.close()
        async with asyncio.timeout(5):
            assert await lingering.wait() == -signal.SIGKILL
        os.close(read_fd)
        listener.close()
    finally:
        await server.close()


def test_a_broken_fork_server_falls_back_to_spawning(tmp_path: Path) -> None:
    asyncio.run(broken_fork_server_falls_back(tmp_path))


async def broken_fork_server_falls_back(tmp_path: Path) -> None:
    launcher = ForkLauncher(ForkServer(str(tmp_path / "no-such-python")))
    await launcher.start()  # warns, does not fail
    read_fd, write_fd = os.pipe()
    plain = Launch(["/bin/sh", "-c", "echo spawned; exit 7"], dict(BASE_ENV), tmp_path, None)
    process = await launcher.spawn(plain, write_fd)
    os.close(write_fd)
    assert isinstance(process, SpawnedProcess)
    async with asyncio.timeout(10):
        assert await process.wait() == 7
    assert (await asyncio.to_thread(read_all, read_fd)).strip() == "spawned"
    os.close(read_fd)
    await launcher.close()
