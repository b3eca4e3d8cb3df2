"""Fast cold starts: Python environments forked from a fork server instead of started.

`lamina/runtimes/fork_server.py` is an interpreter that has imported the Python runtime
and forks a new environment per request (about a millisecond, against tens of
milliseconds for a new interpreter). `ForkServer` is Lamina's side of it: it starts the
process, asks it for environments over a SOCK_SEQPACKET socket pair (passing each one's
output pipe as SCM_RIGHTS), and hears their exit statuses, since the fork server, not
Lamina, is their parent. `ForkLauncher` is the Launcher that uses it for `python3.x`
environments and hands everything else (custom runtimes, interpreters other than the
fork server's, variables an interpreter reads only at startup) to a SpawnLauncher, but
for isolated ones: the fork server sets their sandbox up and execs their command.

Lifetimes: the fork server leads its own session and dies with Lamina (parent-death
signal); each environment leads its own session and dies with the fork server (its
parent-death signal, set before Lamina learns its pid). So a SIGKILL of Lamina takes
everything down, a timeout's killpg() takes an environment's whole tree, and `close()`
after the engine has stopped its environments leaves nothing behind. If the fork server
dies on its own, its environments die with it (reported as killed) and the next cold
start starts a new one.

What a fork shares with its siblings and a spawn would not: the interpreter's hash seed
(`PYTHONHASHSEED`) and whatever the runtime imported before the fork (standard library
modules only; the function's modules are always imported after it).

Isolation: a request carries the environment's sandbox spec (sandbox/isolation.py). For
the namespaces backend the fork server forks the child as PID 1 of a new PID namespace; it
joins its cgroup, takes its other namespaces, builds its root and forks the runtime as PID
2, which drops to the unprivileged user before the function's code is imported
(lamina/runtimes/isolate.py). Lamina still learns a pid (the init's) only once all of that
is in place. The init reports the runtime's exit status over this socket (`{"status": id,
"code": c}`), and for a private network first passes the Runtime API's listening socket
made inside it (`{"api": id}` with the descriptor). The process backend's rlimits are set
in the child before it runs anything of the function.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lamina.sandbox import inits, isolation, mounts
from lamina.sandbox.launch import (
    CUSTOM_RUNTIMES,
    LD_LIBRARY_PATH,
    FunctionImage,
    Launch,
    Launcher,
    ProcessHandle,
    SpawnedProcess,
    SpawnLauncher,
    is_node,
    spawn_process,
)

log = logging.getLogger("lamina.sandbox")

FORK_SERVER = Path(__file__).resolve().parent.parent / "runtimes" / "fork_server.py"
START_LIMIT_S = 10.0
RETRY_AFTER_S = 10.0  # after a failed start, spawn for this long before trying again
MAX_PACKET = 1 << 20
# The fork server's own variables: an environment whose startup-sensitive variables
# differ from these (PYTHON*, LD_*, locale, malloc tuning) is spawned, not forked.
BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin:/opt/bin",
    "LANG": "en_US.UTF-8",
    "TZ": ":UTC",
    "LD_LIBRARY_PATH": LD_LIBRARY_PATH,
}
STARTUP_PREFIXES = ("PYTHON", "LD_", "LC_", "MALLOC_")
STARTUP_NAMES = frozenset({"LANG", "LANGUAGE", "GLIBC_TUNABLES"})


class ForkServerUnavailable(Exception):
    """The fork server could not be started or went away."""


def startup_sensitive(name: str) -> bool:
    return name in STARTUP_NAMES or name.startswith(STARTUP_PREFIXES)


class ForkedProcess:
    """An environment forked by the fork server; its exit status arrives from there (for an
    isolated one, the runtime's status as its init reported it)."""

    def __init__(self, pid: int, loop: asyncio.AbstractEventLoop) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.api_socket: socket.socket | None = None
        self.request_id = 0
        self._status: int | None = None
        self._exited: asyncio.Future[int] = loop.create_future()

    def _exit(self, code: int) -> None:
        if self.returncode is None:
            if self._status is not None:
                code = self._status
            self.returncode = code
            self._exited.set_result(code)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)


class ForkServer:
    def __init__(self, python: str) -> None:
        self.python = python
        self.pid: int | None = None
        self._process: SpawnedProcess | None = None
        self._sock: socket.socket | None = None
        self._ready: asyncio.Future[int] | None = None
        self._starting: asyncio.Task[None] | None = None
        self._requests: dict[int, asyncio.Future[ForkedProcess]] = {}
        self._children: dict[int, ForkedProcess] = {}
        self._by_request: dict[int, ForkedProcess] = {}  # isolated ones report by request
        self._api_sockets: dict[int, socket.socket] = {}  # private networks' Runtime APIs
        self._outbox: deque[tuple[bytes, int]] = deque()  # requests not sent yet (fd or -1)
        # Prepared inits being started: key → (its pid, its early setup done).
        self._preparing: dict[int, tuple[asyncio.Future[int], asyncio.Future[None]]] = {}
        self.on_exit: Callable[[int], None] | None = None  # told of pids it did not fork
        self._writing = False  # waiting for the socket to take more
        self._ids = 0
        self._closed = False
        self._retry_at = 0.0

    @property
    def running(self) -> bool:
        return self._sock is not None and self._ready is not None and self._ready.done()

    def accepts(self, plan: Launch) -> bool:
        """Whether an environment of `plan` can be forked from this fork server."""
        if plan.python != self.python:
            return False
        names = {name for name in plan.env if startup_sensitive(name)}
        names |= {name for name in BASE_ENV if startup_sensitive(name)}
        return all(plan.env.get(name) == BASE_ENV.get(name) for name in names)

    # Lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the fork server (once at a time) and wait until it has imported."""
        if self._closed:
            raise ForkServerUnavailable("the fork server was closed")
        if self.running:
            return
        loop = asyncio.get_running_loop()
        if self._starting is None or self._starting.done():
            if loop.time() < self._retry_at:
                raise ForkServerUnavailable("the fork server failed to start recently")
            self._starting = loop.create_task(self._start())
        try:
            await asyncio.shield(self._starting)
        except ForkServerUnavailable:
            self._retry_at = loop.time() + RETRY_AFTER_S
            raise

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [self.python, "-u", str(FORK_SERVER), str(theirs.fileno()), str(os.getpid())]
        try:
            self._process = spawn_process(
                argv, env=BASE_ENV, cwd="/", output=None, pass_fds=(theirs.fileno(),)
            )
        except OSError as exc:
            ours.close()
            raise ForkServerUnavailable(f"cannot start the fork server: {exc}") from exc
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        self._ready = loop.create_future()
        loop.add_reader(ours.fileno(), self._receive)
        try:
            async with asyncio.timeout(START_LIMIT_S):
                self.pid = await asyncio.shield(self._ready)
        except (TimeoutError, ForkServerUnavailable) as exc:
            await self._stop_process()
            raise ForkServerUnavailable(f"the fork server did not start: {exc}") from exc
        log.info("fork server %d ready (%s)", self.pid, self.python)

    async def close(self) -> None:
        """Stop the fork server. Environments it forked die with it: stop them first."""
        self._closed = True
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
            with contextlib.suppress(BaseException):
                await self._starting
        await self._stop_process()

    async def _stop_process(self) -> None:
        self._lost()
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        try:
            async with asyncio.timeout(2.0):
                await process.wait()  # it exits on end of file
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            await process.wait()

    # Forking ----------------------------------------------------------------------------
    async def fork(self, plan: Launch, output: int, execute: bool = False) -> ForkedProcess:
        """An environment of `plan` (`execute`: of its argv, exec'd in its sandbox)."""
        await self.start()
        loop = asyncio.get_running_loop()
        self._ids += 1
        request_id = self._ids
        answer: asyncio.Future[ForkedProcess] = loop.create_future()
        self._requests[request_id] = answer
        request: dict[str, Any] = {"id": request_id, "env": plan.env, "cwd": str(plan.cwd)}
        if plan.sandbox:
            request["sandbox"] = plan.sandbox
        if execute:
            request["argv"] = plan.argv
        packet = json.dumps(request).encode()
        # The packet goes out in order with the others; `output` stays open meanwhile, as
        # the caller closes it only after the answer (which comes after the packet left).
        self._outbox.append((packet, output))
        if len(self._outbox) == 1:
            self._write_outbox()
        try:
            return await asyncio.shield(answer)
        except asyncio.CancelledError:
            answer.add_done_callback(_kill_unclaimed)  # nobody will stop it otherwise
            raise

    async def prepare(self, key: int, sandbox: dict[str, Any]) -> int:
        """Start an init ahead with `sandbox`'s early setup (its cgroups, its network
        namespace) done; its pid, once that is done. A fork request whose sandbox has
        `"prepared": key` then starts in it."""
        await self.start()
        loop = asyncio.get_running_loop()
        forked: asyncio.Future[int] = loop.create_future()
        done: asyncio.Future[None] = loop.create_future()
        self._preparing[key] = (forked, done)
        self._outbox.append((json.dumps({"prepare": key, "sandbox": sandbox}).encode(), -1))
        if len(self._outbox) == 1:
            self._write_outbox()
        try:
            pid = await forked
            await done
            return pid
        finally:
            self._preparing.pop(key, None)
            for future in (forked, done):  # a failure is retrieved by one of them
                if future.done() and not future.cancelled():
                    future.exception()

    def _write_outbox(self) -> None:
        """Send queued requests until the socket is full; then again when it is writable."""
        sock = self._sock
        while sock is not None and self._outbox:
            packet, fd = self._outbox[0]
            try:
                if fd >= 0:
                    socket.send_fds(sock, [packet], [fd])
                else:
                    sock.send(packet)
            except BlockingIOError:
                if not self._writing:
                    asyncio.get_running_loop().add_writer(sock.fileno(), self._write_outbox)
                    self._writing = True
                return
            except OSError:
                self._lost()
                return
            self._outbox.popleft()
        if self._writing and sock is not None:
            asyncio.get_running_loop().remove_writer(sock.fileno())
        self._writing = False

    def _receive(self) -> None:
        sock = self._sock
        while sock is not None and sock is self._sock:
            try:
                data, fds, _, _ = socket.recv_fds(sock, MAX_PACKET, 1)
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            if not data:
                for fd in fds:
                    os.close(fd)
                self._lost()
                return
            self._handle(json.loads(data), fds)

    def _handle(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        if fds and "api" in message:
            self._api_sockets[message["api"]] = socket.socket(fileno=fds.pop())
        for fd in fds or ():
            os.close(fd)
        if "exit" in message:
            child = self._children.pop(message["exit"], None)
            if child is not None:
                self._by_request.pop(child.request_id, None)
                child._exit(message["code"])
            elif self.on_exit is not None:
                self.on_exit(message["exit"])
        elif "prepare" in message or "early" in message:
            self._prepared(message)
        elif "status" in message:
            reported = self._by_request.get(message["status"])
            if reported is not None:
                reported._status = message["code"]
        elif "api" in message:
            pass
        elif "ready" in message:
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(message["ready"])
        else:
            answer = self._requests.pop(message["id"], None)
            api = self._api_sockets.pop(message["id"], None)
            if "pid" in message:
                child = ForkedProcess(message["pid"], asyncio.get_running_loop())
                child.api_socket = api
                child.request_id = message["id"]
                self._children[child.pid] = child
                self._by_request[message["id"]] = child
                if answer is not None and not answer.done():
                    answer.set_result(child)
            else:
                if api is not None:
                    api.close()
                if answer is not None and not answer.done():
                    answer.set_exception(OSError(message.get("error", "fork failed")))

    def _prepared(self, message: dict[str, Any]) -> None:
        waiting = self._preparing.get(int(message.get("prepare", message.get("early", 0))))
        if waiting is None:
            return
        forked, done = waiting
        if "error" in message:
            failure = OSError(f"a prepared init failed: {message['error']}")
            for future in waiting:
                if not future.done():
                    future.set_exception(failure)
        elif "prepare" in message:
            if not forked.done():
                forked.set_result(message["pid"])
        elif not done.done():
            done.set_result(None)

    def _lost(self) -> None:
        """The connection is gone: so is the fork server, and so are its environments."""
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(sock.fileno())
            if self._writing:
                with contextlib.suppress(Exception):
                    asyncio.get_running_loop().remove_writer(sock.fileno())
            sock.close()
        self._outbox.clear()
        self._writing = False
        gone = ForkServerUnavailable("the fork server went away")
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(gone)
            self._ready.exception()  # retrieved: start() reports it
        for answer in self._requests.values():
            if not answer.done():
                answer.set_exception(gone)
        self._requests.clear()
        for waiting in self._preparing.values():
            for future in waiting:
                if not future.done():
                    future.set_exception(gone)
        for child in self._children.values():
            child._exit(-signal.SIGKILL)  # its parent-death signal
        self._children.clear()
        self._by_request.clear()
        for api in self._api_sockets.values():
            api.close()
        self._api_sockets.clear()
        self._ready = None
        self.pid = None


def _kill_unclaimed(answer: asyncio.Future[ForkedProcess]) -> None:
    if answer.cancelled() or answer.exception() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(answer.result().pid, signal.SIGKILL)


class ForkLauncher:
    """Forks `python3.x` environments from a ForkServer of their interpreter (one per
    interpreter, started when first needed); spawns everything else."""

    def __init__(self, server: ForkServer, fallback: Launcher | None = None) -> None:
        self.server = server  # the first one's, started with the launcher
        self.servers: dict[str, ForkServer] = {server.python: server}
        self.fallback = fallback or SpawnLauncher()
        self.inits: inits.Inits | None = None  # prepared inits, with namespaces
        self._warned = False
        self._closed = False

    def server_for(self, plan: Launch) -> tuple[ForkServer, bool]:
        """The fork server for `plan` and whether it forks the runtime itself (else it
        sets an isolated environment up and execs its command)."""
        if plan.python is not None and plan.python not in self.servers and not self._closed:
            self.servers[plan.python] = ForkServer(plan.python)
        server = self.servers.get(plan.python or "")
        if server is not None and server.accepts(plan):
            return server, True
        return self.server, False

    async def start(self) -> None:
        try:
            await self.server.start()
        except ForkServerUnavailable as exc:
            log.warning("%s; environments will be spawned", exc)
            self._warned = True
        backend = isolation.current()
        if backend.name == "namespaces" and backend.cgroups is not None and not self._closed:
            root = backend.options.scratch / "init-root"  # a mount point, in their namespaces
            root.mkdir(parents=True, exist_ok=True)
            files = backend.network.files if backend.network is not None else []
            early = {"net": True, "api_port": isolation.API_PORT, "root": str(root), "files": files}
            early["binds"] = list(backend.binds)  # the interpreter's, Lamina's runtime's
            early["pivot"] = mounts.available()  # the function's directories come as clones
            early.update(backend.runtime_user())  # its runtime forked ahead, as this user
            pool = inits.Inits(
                self.server, backend.cgroups, backend.network, early, isolation.PIDS_MAX
            )
            pool.suits = self._starts_here
            self.inits = backend.inits = pool
            pool.start()

    def _starts_here(self, image: FunctionImage) -> bool:
        """Whether an environment of `image` starts from the first fork server (forked, or
        set up and exec'd), not from another interpreter's."""
        other = image.interpreter and image.interpreter != self.server.python
        return not other or image.runtime in CUSTOM_RUNTIMES or is_node(image.runtime)

    async def spawn(self, plan: Launch, output: int) -> ProcessHandle:
        # An isolated environment this server cannot run (another program, another
        # interpreter, startup variables) is still set up here, then exec'd: its init is
        # a fork, not a new interpreter.
        server, forked = self.server_for(plan)
        if forked or (plan.sandbox and plan.sandbox.get("root")):
            try:
                return await server.fork(plan, output, execute=not forked)
            except ForkServerUnavailable as exc:
                if not self._warned:
                    log.warning("%s; spawning environments until it is back", exc)
                    self._warned = True
        return await self.fallback.spawn(plan, output)

    async def close(self) -> None:
        self._closed = True
        if self.inits is not None:
            await self.inits.close()  # before its fork server goes
            if isolation.current().inits is self.inits:
                isolation.current().inits = None
        for server in list(self.servers.values()):
            await server.close()
        await self.fallback.close()
