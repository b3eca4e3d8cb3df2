"""One execution environment: a process, its Runtime API, its output, its lifecycle.

States: new → starting → ready ⇄ busy → dead. The environment serves one invocation at a
time. Its init runs once, when it starts; it then waits in `GET /next` between
invocations. Death (exit, timeout, kill) is final: a dead environment is never reused.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import enum
import json
import logging
import math
import os
import shutil
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from lamina.sandbox import isolation, launch
from lamina.sandbox.deadlines import Deadline, Deadlines, deadlines
from lamina.sandbox.runtime_api import (
    ACCEPTED,
    RESPONSE_LIMIT,
    ApiReply,
    Deliver,
    Invocation,
    RuntimeApiServer,
    error_reply,
)
from lamina.tasks import stop_task

log = logging.getLogger("lamina.sandbox")

INIT_LIMIT_S = 10.0
LINE_LIMIT = 256 * 1024  # longer lines are cut: a flood cannot grow a buffer without end
READ_SIZE = 64 * 1024
# Output kept per invocation (and for init): its first LOG_LIMIT bytes and its last
# LOG_TAIL; what lies between is dropped as it is read, and one line says how much. A
# function printing without end costs Lamina neither memory nor the function's other log
# lines, and its last lines (an error, as a rule) are still there.
LOG_LIMIT = 1024 * 1024
LOG_TAIL = 16 * 1024
SKIP_READ = 256 * 1024
MEMORY_READ_S = 0.25  # how stale a REPORT's Max Memory Used may be under load
STREAM_LIMIT = 209_715_200  # bytes a streamed response may carry (AWS's 200 MB)
FREEZE_AFTER_S = 0.003  # an environment waiting this long for its next event is frozen


class State(enum.Enum):
    NEW = "new"
    STARTING = "starting"
    READY = "ready"
    BUSY = "busy"
    DEAD = "dead"


@dataclass
class Outcome:
    """How an invocation ended. `error_type` set means a function error (Unhandled)."""

    payload: bytes
    error_type: str | None = None
    fatal: bool = False  # the environment died with it

    @staticmethod
    def error(error_type: str, message: str, request_id: str = "") -> Outcome:
        body: dict[str, object] = {"errorMessage": message, "errorType": error_type}
        if request_id:
            body = {
                "errorMessage": message,
                "errorType": error_type,
                "requestId": request_id,
                "stackTrace": [],
            }
        return Outcome(json.dumps(body).encode(), error_type)


LineSink = Callable[[str], None]


class Environment:
    def __init__(
        self,
        image: launch.FunctionImage,
        scratch_root: Path,
        *,
        python: str,
        init_type: str = "on-demand",
        output: LineSink,
        launcher: launch.Launcher | None = None,
        identity: tuple[dict[str, str], float | None] = ({}, None),
    ) -> None:
        self.id = uuid.uuid4().hex
        self.credentials, self.expires = identity  # its role's, and when they expire
        self.image = image
        self.scratch = scratch_root / self.id  # the environment's own directory
        self.python = python
        self.init_type = init_type
        self.output = output  # where the process's lines go
        self.launcher = launcher  # None: the one installed for the server (launch.current())
        self.log_stream = time.strftime("%Y/%m/%d/", time.gmtime()) + f"[{image.version}]{self.id}"
        self.state = State.NEW
        self.init_duration_ms = 0.0
        self.invocations = 0
        self.last_used = 0.0
        self.process: launch.ProcessHandle | None = None
        self.sandbox: isolation.Sandbox | None = None
        self._api = RuntimeApiServer(self)
        self._ready: asyncio.Future[Outcome | None] | None = None
        self._deliver: Deliver | None = None  # the runtime waits in GET /next
        self._pending: Invocation | None = None
        self._current: Invocation | None = None
        self._outcome: asyncio.Future[Outcome] | None = None
        self._exit_watch: asyncio.Task[None] | None = None
        self._read_fd = -1
        self._status_fd = -1  # /proc/<pid>/status, kept open: read for REPORT lines
        self._memory_mb = 0
        self._memory_read_at = -MEMORY_READ_S
        self._partial = b""
        self._log_room = LOG_LIMIT
        self._log_skipped = 0  # bytes read past the limit
        self._log_tail = bytearray()  # the last LOG_TAIL of them
        self._init_request_id = ""
        self._streamed = 0  # bytes of the current streamed response
        self._stream_buffer: bytearray | None = None  # a streamed answer to a plain Invoke
        self._freezer: Deadline | None = None  # the pending freeze of an idle environment
        self._freezes = False  # frozen between invocations (known once it is ready)
        self._deadlines: Deadlines | None = None  # its timeouts: its loop's one timer

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def max_memory_mb(self) -> int:
        """Peak memory of the environment, in MB: its cgroup's peak when it has one, else
        the peak resident memory of its process (VmHWM).

        /proc/<pid>/status costs the kernel a walk of the process's memory map: under load
        it is read at most every MEMORY_READ_S per environment, in between the last figure
        stands (a peak only grows, so it is a lower bound that lags by at most that)."""
        if self.sandbox is not None and self.sandbox.cgroup is not None:
            self._memory_mb = self.sandbox.peak_memory_mb() or self._memory_mb
            return self._memory_mb
        now = time.monotonic()
        if self._status_fd < 0 or now - self._memory_read_at < MEMORY_READ_S:
            return self._memory_mb
        self._memory_read_at = now
        try:
            status = os.pread(self._status_fd, 4096, 0)
            start = status.index(b"VmHWM:") + 6
            self._memory_mb = math.ceil(int(status[start : status.index(b"kB", start)]) / 1024)
        except (OSError, ValueError):
            pass
        return self._memory_mb

    # Lifecycle --------------------------------------------------------------------------
    async def start(self, request_id: str = "") -> Outcome | None:
        """Start the process and run init. None when ready; an Outcome when init failed.

        `request_id` is the invocation that caused this cold start: errors of init name it.
        """
        assert self.state is State.NEW
        self.state = State.STARTING
        self._init_request_id = request_id
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._deadlines = deadlines()
        self.scratch.mkdir(parents=True, exist_ok=True)
        try:
            backend = isolation.current()
            sandbox = self.sandbox = await backend.prepare(self.id, self.image, self.scratch)
        except OSError as exc:
            await self.stop()
            return Outcome.error("Runtime.Unknown", f"Could not isolate the environment: {exc}")
        if self.image.unavailable:
            await self.stop()
            return Outcome.error("Runtime.InvalidRuntime", self.image.unavailable)
        address = sandbox.runtime_api() or await self._api.start()
        plan = launch.build(
            self.image,
            python=self.python,
            runtime_api=address,
            init_type=self.init_type,
            log_stream=self.log_stream,
            scratch=self.scratch,
            task_root=sandbox.task_root,
            tmp_dir=sandbox.tmp_dir if sandbox.namespaces else None,
            sandbox=sandbox.spec,
            opt_dir=None if sandbox.namespaces else self.image.opt_dir,
            api_endpoint=sandbox.api_endpoint,
            xray_address=sandbox.xray_address,
            credentials=self.credentials,
        )
        if self.image.runtime in launch.CUSTOM_RUNTIMES and not os.access(
            self.image.code_dir / "bootstrap", os.X_OK
        ):
            await self.stop()
            return Outcome.error(
                "Runtime.InvalidEntrypoint",
                "Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]",
            )
        read_fd, write_fd = os.pipe()
        started = time.monotonic()
        launcher = self.launcher or launch.current()
        try:
            self.process = await launcher.spawn(plan, write_fd)
        except OSError as exc:
            sandbox.started()
            os.close(read_fd)
            await self.stop()
            return Outcome.error("Runtime.InvalidEntrypoint", f"Could not start the runtime: {exc}")
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)  # the process has its own copy
        sandbox.started()
        self._read_fd = read_fd
        os.set_blocking(read_fd, False)
        api_socket = getattr(self.process, "api_socket", None)
        if api_socket is not None:  # a private network: serve the API made inside it
            await self._api.start(sock=api_socket)
        with contextlib.suppress(OSError):
            self._status_fd = os.open(f"/proc/{self.process.pid}/status", os.O_RDONLY)
        loop.add_reader(read_fd, self._drain_output)
        self._exit_watch = loop.create_task(self._watch_exit())
        try:
            async with asyncio.timeout(INIT_LIMIT_S):
                failure = await asyncio.shield(self._ready)
        except TimeoutError:
            await self.stop()
            return Outcome.error(
                "Sandbox.Timedout", f"Init phase timed out after {INIT_LIMIT_S:.2f} seconds"
            )
        self.init_duration_ms = (time.monotonic() - started) * 1000
        self._drain_output()
        self._note_dropped()
        if failure is not None:
            await self.stop()
            return failure
        self.state = State.READY
        if self.sandbox is not None:
            self.sandbox.initialised(self.image.memory_mb)
            self._freezes = self.sandbox.freezes
        self._freeze_if_idle()
        return None

    def _freeze_if_idle(self) -> None:
        """Ready, and its runtime waits in GET /next: once it has waited FREEZE_AFTER_S,
        nothing of it runs until the next event (as Lambda freezes an environment between
        invocations). Back-to-back invocations do not pay for a freeze and a thaw."""
        if (
            self._freezes
            and self._freezer is None
            and self.state is State.READY
            and self._deliver is not None
        ):
            timers = self._deadlines or deadlines()
            self._freezer = timers.add(timers.loop.time() + FREEZE_AFTER_S, self._freeze)

    def _freeze(self) -> None:
        self._freezer = None
        if self.state is State.READY and self._deliver is not None and self.sandbox is not None:
            self.sandbox.freeze()

    def _thaw(self) -> None:
        if self._freezer is not None:
            self._freezer.cancel()
            self._freezer = None
        sandbox = self.sandbox
        if sandbox is not None and sandbox.cgroup is not None and sandbox.cgroup.frozen:
            sandbox.thaw()

    async def invoke(self, invocation: Invocation, timeout_s: float) -> Outcome:
        """Hand `invocation` to the runtime and wait for its answer, at most `timeout_s`."""
        assert self.state is State.READY
        self.state = State.BUSY
        self.invocations += 1
        if self._log_skipped:
            self._note_dropped()  # of what it printed while idle
        self._log_room = LOG_LIMIT
        timers = self._deadlines or deadlines()
        loop = timers.loop
        self._outcome = outcome_future = loop.create_future()
        self._current = invocation
        deliver, self._deliver = self._deliver, None
        self._thaw()
        if deliver is not None:
            deliver(invocation)
        else:
            self._pending = invocation
        deadline = timers.add(
            loop.time() + timeout_s, partial(self._time_out, invocation, timeout_s)
        )
        try:
            outcome = await outcome_future
        finally:
            deadline.cancel()
        self._drain_output()
        if self._log_skipped:
            self._note_dropped()
        if self._partial:
            self._flush_partial()  # a last line without a newline belongs to this invocation
        self._current = None
        self._pending = None
        self.last_used = time.monotonic()
        if outcome.fatal or self.state is State.DEAD:
            await self.stop()
        else:
            self.state = State.READY
            self._freeze_if_idle()
        return outcome

    def _time_out(self, invocation: Invocation, timeout_s: float) -> None:
        if self._outcome is None or self._outcome.done():
            return
        outcome = Outcome.error(
            "Sandbox.Timedout",
            f"RequestId: {invocation.request_id} Error: "
            f"Task timed out after {timeout_s:.2f} seconds",
        )
        outcome.fatal = True
        self._outcome.set_result(outcome)

    async def stop(self) -> None:
        """Kill the whole process tree and free everything. Safe to call twice."""
        already = self.state is State.DEAD
        self.state = State.DEAD
        if self._freezer is not None:
            self._freezer.cancel()
            self._freezer = None
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                self._thaw()  # a frozen process dies only once thawed (cgroup v1)
            with contextlib.suppress(ProcessLookupError):
                await self.process.wait()
        if self._exit_watch is not None and self._exit_watch is not asyncio.current_task():
            await stop_task(self._exit_watch)
        if already:
            return
        if self.sandbox is not None:
            await self.sandbox.release()  # its cgroup, once its processes are gone
        self._drain_output()
        self._close_output()
        self._api.close()
        self._settle(Outcome.error("Runtime.Unknown", "The execution environment was stopped."))
        self._deliver = None
        if self._status_fd >= 0:
            os.close(self._status_fd)
            self._status_fd = -1
        shutil.rmtree(self.scratch, ignore_errors=True)

    async def _watch_exit(self) -> None:
        assert self.process is not None
        code = await self.process.wait()
        # As AWS (Go) words it: "exit status 1", "signal: killed", "signal: segmentation fault".
        reason = f"exit status {code}" if code >= 0 else f"signal: {_signal_text(-code)}"
        request_id = self._current.request_id if self._current else self._init_request_id
        oom = self.sandbox is not None and self.sandbox.out_of_memory()
        outcome = Outcome.error(
            "Runtime.OutOfMemory" if oom else "Runtime.ExitError",
            f"RequestId: {request_id} Error: Runtime exited with error: {reason}",
        )
        outcome.fatal = True
        self.state = State.DEAD
        self._settle(outcome)

    def _settle(self, outcome: Outcome) -> None:
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(outcome)
        if self._outcome is not None and not self._outcome.done():
            self._outcome.set_result(outcome)

    # Output -----------------------------------------------------------------------------
    def _drain_output(self) -> None:
        """Read whatever the process has written, line by line, without blocking; past the
        invocation's LOG_LIMIT, keep only its last LOG_TAIL bytes."""
        if self._read_fd < 0:
            return
        while True:
            if self._log_room <= 0:
                if not self._skip():
                    return
                continue
            try:
                chunk = os.read(self._read_fd, min(READ_SIZE, self._log_room))
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self._close_output()
                return
            self._log_room -= len(chunk)
            data = self._partial + chunk
            *lines, self._partial = data.split(b"\n")
            for line in lines:
                self.output(line[:LINE_LIMIT].decode("utf-8", "replace"))
            if len(self._partial) > LINE_LIMIT:
                self.output(self._partial[:LINE_LIMIT].decode("utf-8", "replace"))
                self._partial = b""

    def _skip(self) -> bool:
        """Read past the limit, keeping the last LOG_TAIL bytes; False when nothing is left
        to read for now."""
        try:
            chunk = os.read(self._read_fd, SKIP_READ)
        except BlockingIOError:
            return False
        except OSError:
            chunk = b""
        if not chunk:
            self._close_output()
            return False
        if not self._log_skipped:
            self._flush_partial()  # the line the limit cut
        self._log_skipped += len(chunk)
        self._log_tail += chunk[-LOG_TAIL:]
        del self._log_tail[:-LOG_TAIL]
        return True

    def _note_dropped(self) -> None:
        """After an invocation went past the limit: say how much was dropped, then its last
        lines (the last one, unfinished, waits in the partial line as usual)."""
        if not self._log_skipped:
            return
        tail = bytes(self._log_tail)
        if self._log_skipped > len(tail):  # the tail starts mid-line: from its next line
            tail = tail[tail.find(b"\n") + 1 :] if b"\n" in tail else b""
        dropped = self._log_skipped - len(tail)
        self._log_skipped = 0
        self._log_tail.clear()
        self.output(
            f"[Lamina] {dropped} bytes of output dropped: more than {LOG_LIMIT} bytes in one "
            "invocation (its first ones and its last lines are kept)"
        )
        *lines, self._partial = tail.split(b"\n")
        for line in lines:
            self.output(line[:LINE_LIMIT].decode("utf-8", "replace"))

    def _flush_partial(self) -> None:
        if self._partial:
            self.output(self._partial.decode("utf-8", "replace"))
            self._partial = b""

    def _close_output(self) -> None:
        if self._read_fd < 0:
            return
        self._flush_partial()
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._read_fd)
        os.close(self._read_fd)
        self._read_fd = -1

    # Runtime API (called by RuntimeApiServer) ------------------------------------------
    def next_invocation(self, deliver: Deliver) -> ApiReply | None:
        if self._deliver is not None:  # one runtime per environment: the first one waits on
            return error_reply(
                403, "InvalidStateTransition", "A runtime is already waiting for the next event"
            )
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)  # the first /next ends init
        if self._pending is not None:
            invocation, self._pending = self._pending, None
            deliver(invocation)
        else:
            self._deliver = deliver
            self._freeze_if_idle()
        return None

    def next_abandoned(self, deliver: Deliver) -> None:
        if self._deliver == deliver:  # the same connection (bound methods compare equal)
            self._deliver = None

    def _answer(self, request_id: str, outcome: Outcome) -> ApiReply:
        if self._current is None or self._current.request_id != request_id:
            return error_reply(400, "InvalidRequestID", f"Unknown request id {request_id}")
        if self._outcome is not None and not self._outcome.done():
            self._outcome.set_result(outcome)
            return ACCEPTED
        return error_reply(400, "InvalidStateTransition", "The invocation was already answered")

    def post_response(self, request_id: str, body: bytes, oversized: bool) -> ApiReply:
        if not oversized:
            return self._answer(request_id, Outcome(body))
        message = (
            f"Response payload size exceeded maximum allowed payload size ({RESPONSE_LIMIT} bytes)."
        )
        reply = self._answer(request_id, Outcome.error("Function.ResponseSizeTooLarge", message))
        if reply is ACCEPTED:
            return error_reply(413, "RequestEntityTooLarge", message)
        return reply

    def post_error(self, request_id: str, body: bytes, error_type: str | None) -> ApiReply:
        error_type = error_type or _error_type_of(body) or "Unhandled"
        return self._answer(request_id, Outcome(body or b"{}", error_type))

    # Streamed responses: chunks go to the invocation's sink as they arrive; a plain
    # Invoke of a streaming function gets them buffered (6 MB at most, as AWS does).
    def stream_start(self, request_id: str, headers: dict[str, str]) -> ApiReply | None:
        current = self._current
        if current is None or current.request_id != request_id:
            return error_reply(400, "InvalidRequestID", f"Unknown request id {request_id}")
        if self._outcome is None or self._outcome.done():
            return error_reply(400, "InvalidStateTransition", "The invocation was already answered")
        self._streamed = 0
        if current.stream is not None:
            self._stream_buffer = None
            current.stream.start(headers.get("content-type") or "application/octet-stream")
        else:
            self._stream_buffer = bytearray()
        return None

    def stream_chunk(self, request_id: str, data: bytes) -> None:
        current = self._current
        if current is None or current.request_id != request_id:
            return  # what a timed-out invocation still writes
        self._streamed += len(data)
        if self._streamed > STREAM_LIMIT:
            return
        if current.stream is not None:
            current.stream.chunk(data)
        elif self._stream_buffer is not None and self._streamed <= RESPONSE_LIMIT:
            self._stream_buffer += data

    def stream_end(self, request_id: str, trailers: dict[str, str]) -> ApiReply:
        error_type = trailers.get("lambda-runtime-function-error-type")
        buffered, self._stream_buffer = self._stream_buffer, None
        if error_type:
            try:
                body = base64.b64decode(trailers.get("lambda-runtime-function-error-body", ""))
            except (binascii.Error, ValueError):
                body = b""
            if not body:
                body = json.dumps({"errorType": error_type, "errorMessage": ""}).encode()
            return self._answer(request_id, Outcome(body, error_type))
        limit = STREAM_LIMIT if buffered is None else RESPONSE_LIMIT
        if self._streamed > limit:
            message = (
                f"Response payload size exceeded maximum allowed payload size ({limit} bytes)."
            )
            return self._answer(request_id, Outcome.error("Function.ResponseSizeTooLarge", message))
        return self._answer(request_id, Outcome(bytes(buffered or b"")))

    def post_init_error(self, body: bytes, error_type: str | None) -> ApiReply:
        if self._ready is None or self._ready.done():
            return error_reply(403, "InvalidStateTransition", "Init error after init")
        error_type = error_type or _error_type_of(body) or "Runtime.Unknown"
        self._ready.set_result(Outcome(body or b"{}", error_type, fatal=True))
        return ACCEPTED


def _signal_text(number: int) -> str:
    try:
        text = signal.strsignal(number)
    except ValueError:
        text = None
    return (text or f"signal {number}").lower()


def _error_type_of(body: bytes) -> str | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    value = document.get("errorType") if isinstance(document, dict) else None
    return value if isinstance(value, str) else None
