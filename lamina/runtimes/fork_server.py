"""Lamina's fork server: an interpreter with the Python runtime already imported that forks
new execution environments on request, so a cold start costs a fork, not an interpreter.

Runs as a plain script with the standard library only (like python_bootstrap.py, which it
imports), started by lamina/sandbox/forkserver.py with one end of a SOCK_SEQPACKET socket
pair as its first argument and the pid of the Lamina server as its second.

Protocol (one JSON document per packet):
  Lamina → here   {"id": n, "env": {...}, "cwd": "..."} with the output pipe's write end
                  attached (SCM_RIGHTS): fork an environment.
  Lamina → here   {"prepare": k, "sandbox": {...}}     start an init ahead (no descriptor):
                                                        see "Prepared inits" below
  here → Lamina   {"ready": pid}                       once, when imports are done
                  {"id": n, "pid": pid}                 the environment exists, leads its
                                                        own session, has its death signal
                  {"id": n, "error": "..."}             it could not be forked
                  {"exit": pid, "code": c}              it ended: exit status, or -signal
End of file on the socket (Lamina closed it or died) ends the fork server; its
environments then die of their parent-death signal.

A forked environment starts as `python -u python_bootstrap.py` would: a session of its
own, SIGKILL when the fork server dies (and the fork server gets SIGKILL when Lamina
dies), stdin from /dev/null, stdout and stderr into its output pipe, no other descriptor,
exactly the environment variables it was given, cwd = its code directory, a reseeded
`random`, no event loop, signal dispositions as a fresh interpreter has them, and none of
the function's modules imported: the handler module is imported after the fork.

A request may carry a sandbox (lamina/runtimes/isolate.py): with namespaces, the child is
forked as PID 1 of a new PID namespace, sets the sandbox up and forks the runtime, which
goes on as above as the unprivileged user (or, when the request has an "argv", execs it
with exactly the request's variables: isolated environments of other programs start
here too, sparing them an interpreter's start for their init); the init stays, reaps, and
reports the runtime's exit status:
  init → Lamina   {"api": n} with a listening socket    a private network's Runtime API
                  {"status": n, "code": c}              the runtime ended: its status
With rlimits only (the process backend), the child sets them and goes on as above.

Prepared inits: `{"prepare": k, "sandbox": {cgroups, netns, net, api_port, root, files}}`
forks an init (PID 1 of a new PID namespace) that does, ahead of any cold start, what
depends on no function (isolate.early: joining its cgroups, which with cgroup v1 waits for
an RCU grace period, entering its network namespace, unsharing, the Runtime API's socket,
the base of the root), then waits:
  here → Lamina   {"prepare": k, "pid": pid}            forked (at once)
  init → Lamina   {"early": k} or {"early": k, "error"} its early setup is done (or failed)
A later fork request whose sandbox has "prepared": k is handed to that init, which goes on
from there (builds the root, forks the runtime) as any other; if it is gone, the request
is forked as usual.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import gc
import json
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable

import isolate  # namespaces, mounts, cgroups for isolated environments
import python_bootstrap  # the runtime and everything it imports, loaded once, here

PR_SET_PDEATHSIG = 1
MAX_PACKET = 1 << 20
BOOTSTRAP = os.path.abspath(python_bootstrap.__file__)

_libc = ctypes.CDLL(None, use_errno=True)


def parent_death_signal(expected_parent: int) -> None:
    """SIGKILL this process when its parent dies; exit now if it already has."""
    if _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != expected_parent:
        os._exit(1)


def send(sock: socket.socket, message: dict[str, object]) -> None:
    sock.sendall(json.dumps(message).encode())


def reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        for key, (waiting, _, _) in list(_prepared.items()):
            if waiting == pid:
                _drop(key)
        send(sock, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})


def _drop(key: int) -> None:
    _, channel, ready = _prepared.pop(key)
    channel.close()
    os.close(ready)


def prepare_environment(sock: socket.socket, request: dict[str, object]) -> None:
    """Fork an init that does the early, function-independent part of an environment's
    setup now and waits for the environment's request (see "Prepared inits")."""
    key = request["prepare"]
    sandbox = request["sandbox"]
    assert isinstance(key, int) and isinstance(sandbox, dict)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ready_r, ready_w = os.pipe()
    me = os.getpid()
    try:
        pid = _fork(request)
    except OSError as exc:
        for fd in (ready_r, ready_w):
            os.close(fd)
        ours.close()
        theirs.close()
        send(sock, {"prepare": key, "error": str(exc)})
        return
    if pid == 0:
        code = 1
        try:
            ours.close()
            os.close(ready_r)
            for other in list(_prepared):  # the other waiting inits' ends are not ours
                _drop(other)
            code = waiting(key, sandbox, theirs, ready_w, me, sock)
        except BaseException:
            traceback.print_exc()
            with contextlib.suppress(Exception):
                sys.stderr.flush()
        finally:
            os._exit(code)
    theirs.close()
    os.close(ready_w)
    _prepared[key] = (pid, ours, ready_r)
    send(sock, {"prepare": key, "pid": pid})


def waiting(
    key: int,
    sandbox: dict[str, object],
    channel: socket.socket,
    ready: int,
    fork_server: int,
    control: socket.socket,
) -> int:
    """A prepared init: the early setup, then the environment it is given (or nothing: its
    channel closed)."""
    os.setsid()
    if _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    try:
        prepared = isolate.early(sandbox)
        ahead = runtime_ahead(sandbox) if sandbox.get("uid") is not None else None
    except Exception as exc:  # reported to Lamina, which does not use this init
        send(control, {"early": key, "error": f"{type(exc).__name__}: {exc}"})
        return 1
    send(control, {"early": key})
    data, fds, _, _ = socket.recv_fds(channel, MAX_PACKET, 1)
    channel.close()
    if not data or len(fds) != 1:
        return 0
    request = json.loads(data)
    given = request.get("sandbox")
    if ahead is not None and not (
        isinstance(given, dict) and all(given.get(k) == sandbox.get(k) for k in AS_USER)
    ):
        ahead.cancel()  # another user, limits or filter: the init forks its own
        ahead = None
    if ahead is not None and not ahead.send(data, fds[0]):
        ahead = None
    return environment(request, fds[0], ready, fork_server, control, prepared, ahead)


# What a runtime forked ahead has applied already: a request must ask for the same.
AS_USER = ("uid", "gid", "rlimits", "seccomp")


class Ahead:
    """A prepared init's runtime, forked ahead (PID 2): it has dropped to the unprivileged
    user, with its rlimits and seccomp filter, and waits for its environment's request."""

    def __init__(self, pid: int, channel: socket.socket) -> None:
        self.pid = pid
        self.channel = channel

    def send(self, data: bytes, output: int) -> bool:
        """The request and output, as the init starts building the root: the runtime
        takes its variables meanwhile. False if it is gone (the init then forks one)."""
        try:
            socket.send_fds(self.channel, [data], [output])
        except OSError:
            self.cancel()
            return False
        return True

    def go(self) -> int:
        """The root is built: the runtime starts. Its pid, or 0 if it is gone."""
        try:
            self.channel.send(b"1")
        except OSError:
            self.cancel()
            return 0
        self.channel.close()
        return self.pid

    def cancel(self) -> None:
        self.channel.close()  # it exits when it reads the end
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def runtime_ahead(sandbox: dict[str, object]) -> Ahead:
    """In a prepared init, after the early setup: fork the runtime now, off the cold
    start's path (a fork and dropping privileges cost milliseconds). It keeps nothing of
    the init's descriptors, becomes the unprivileged user, then waits; what it is given
    comes after the init has built the root and pivoted into it, which moves the
    runtime's root too. Returns in the init only."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid:
        theirs.close()
        return Ahead(pid, ours)
    code = 1
    try:
        ours.close()
        keep = theirs.fileno()
        for name in os.listdir("/proc/self/fd"):  # the init's sockets and pipes
            if int(name) > 2 and int(name) != keep:
                with contextlib.suppress(OSError):
                    os.close(int(name))
        isolate.become_user(sandbox, cwd=None)
        data, fds, _, _ = socket.recv_fds(theirs, MAX_PACKET, 1)
        if data and len(fds) == 1:  # else the environment was not started: init is going
            code = runtime(json.loads(data), fds[0], go=lambda: theirs.recv(1) == b"1")
        else:
            code = 0
    except BaseException:
        traceback.print_exc()
        with contextlib.suppress(Exception):
            sys.stderr.flush()
    finally:
        os._exit(code)


_pid_namespace: isolate.PidNamespace | None = None
# Prepared inits waiting for an environment: key → (pid, socket to it, its ready pipe).
_prepared: dict[int, tuple[int, socket.socket, int]] = {}


def _fork(request: dict[str, object]) -> int:
    """fork(); an isolated environment's child is PID 1 of a new PID namespace."""
    global _pid_namespace
    sandbox = request.get("sandbox")
    if not (isinstance(sandbox, dict) and (sandbox.get("root") or "prepare" in request)):
        return os.fork()
    if _pid_namespace is None:
        _pid_namespace = isolate.PidNamespace()
    with _pid_namespace:
        return os.fork()


def hand_over(sock: socket.socket, request: dict[str, object], output: int) -> bool:
    """Give the request to the prepared init it names; False if there is none (gone)."""
    sandbox = request.get("sandbox")
    key = sandbox.get("prepared") if isinstance(sandbox, dict) else None
    if not isinstance(key, int) or key not in _prepared:
        return False
    pid, channel, ready = _prepared[key]
    try:
        socket.send_fds(channel, [json.dumps(request).encode()], [output])
    except OSError:  # it ended before it was needed
        _drop(key)
        return False
    _prepared.pop(key)
    channel.close()
    answer = os.read(ready, 1)
    os.close(ready)
    if answer:
        send(sock, {"id": request["id"], "pid": pid})
    elif _killed(pid):  # from outside, as it took the request: start the whole way
        return False
    else:
        send(sock, {"id": request["id"], "error": "the environment's init ended during setup"})
    return True


def _killed(pid: int) -> bool:
    """Whether a child that is exiting was killed by a signal (not reaped: reap() says so)."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    except ChildProcessError:
        return False
    return info is not None and info.si_code == os.CLD_KILLED


def fork_environment(sock: socket.socket, request: dict[str, object], output: int) -> None:
    if hand_over(sock, request, output):
        return
    ready_r, ready_w = os.pipe()
    me = os.getpid()
    try:
        pid = _fork(request)
    except OSError as exc:
        os.close(ready_r)
        os.close(ready_w)
        send(sock, {"id": request["id"], "error": str(exc)})
        return
    if pid == 0:
        code = 1
        try:
            code = environment(request, output, ready_w, me, sock)
        except BaseException:
            traceback.print_exc()  # e.g. its code directory is gone: say why it exits
            with contextlib.suppress(Exception):
                sys.stderr.flush()
        finally:
            os._exit(code)  # never back into the fork server's loop
    os.close(ready_w)
    # The environment says when it leads its session and has its death signal: from then
    # on Lamina may kill its process group, and nothing it starts can outlive it.
    os.read(ready_r, 1)
    os.close(ready_r)
    send(sock, {"id": request["id"], "pid": pid})


def environment(
    request: dict[str, object],
    output: int,
    ready: int,
    fork_server: int,
    control: socket.socket,
    prepared: tuple[socket.socket | None, str] | None = None,
    ahead: Ahead | None = None,
) -> int:
    """The forked child: become a fresh environment, then run the runtime. `prepared`: a
    prepared init's early setup is done, with this result; `ahead`: its runtime, forked
    ahead and given the request, to start once the root is built."""
    if prepared is None:
        os.setsid()
    sandbox = request.get("sandbox")
    assert sandbox is None or isinstance(sandbox, dict)
    if sandbox and sandbox.get("root"):
        # Returns in the runtime it forks; not at all with a runtime forked ahead.
        start = None if ahead is None else ahead.go
        isolated(request, sandbox, output, ready, control, prepared, start)
    else:
        parent_death_signal(fork_server)
        os.write(ready, b"1")
        if sandbox and sandbox.get("rlimits"):
            isolate.apply_rlimits(sandbox["rlimits"])
            if sandbox.get("data"):
                isolate.limit_data(int(sandbox["data"]))
    return runtime(request, output)


def runtime(request: dict[str, object], output: int, go: Callable[[], bool] | None = None) -> int:
    """The runtime's process, set up (isolated or not): a fresh interpreter's state, the
    environment's variables and output, then the Python runtime (or exec its argv).
    `go()`: a runtime forked ahead waits there (in memory only so far: no file opened)
    until its root is built; False: it is not."""
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.dup2(output, 1)
    os.dup2(output, 2)
    env = request["env"]
    assert isinstance(env, dict)
    argv = request.get("argv")
    if not isinstance(argv, list):
        os.environ.clear()
        os.environ.update(env)
        for name, value in STARTUP_ADDED.items():  # as the interpreter's startup adds them
            os.environ.setdefault(name, value)
        sys.argv[:] = [BOOTSTRAP]
        atexit._clear()  # the function's own exit handlers only
        for module, reset in _RESETS:
            if module in sys.modules:
                reset(sys.modules[module])
    if go is not None and not go():
        return 0
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for name in os.listdir("/proc/self/fd"):  # nothing of the fork server's stays open
        if int(name) > 2:
            with contextlib.suppress(OSError):
                os.close(int(name))
    if isinstance(argv, list):  # an isolated environment of another program: exec it
        return execute([str(arg) for arg in argv], env, str(request["cwd"]))
    time.tzset()
    cwd = request["cwd"]
    assert isinstance(cwd, str)
    os.chdir(cwd)
    try:
        python_bootstrap.main()
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except BaseException:
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    return code


def execute(argv: list[str], env: dict[str, str], cwd: str) -> int:
    """Become `argv` as a spawn would start it: the signals this interpreter ignores back
    to their defaults, exactly the variables given."""
    for signum in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(signum, signal.SIG_DFL)
    try:
        os.chdir(cwd)
        os.execve(argv[0], argv, env)
    except OSError as exc:
        print(f"cannot start the runtime {argv[0]}: {exc.strerror}", file=sys.stderr, flush=True)
    return 127


def isolated(
    request: dict[str, object],
    sandbox: dict[str, object],
    output: int,
    ready: int,
    control: socket.socket,
    prepared: tuple[socket.socket | None, str] | None = None,
    start: Callable[[], int] | None = None,
) -> None:
    """PID 1 of the environment's namespace: set the sandbox up, then fork the runtime,
    which returns from here (or `start` a runtime forked ahead); this process stays as
    its init and never returns."""
    if _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    os.dup2(output, 1)  # what goes wrong from here is the environment's to say
    os.dup2(output, 2)
    request_id = request["id"]

    def announce(api: socket.socket | None) -> isolate.Report:
        if api is not None:
            socket.send_fds(control, [json.dumps({"api": request_id}).encode()], [api.fileno()])
        os.write(ready, b"1")  # fails if the fork server is gone: its death signal came late
        os.close(ready)

        def report(code: int) -> None:
            with contextlib.suppress(OSError):
                send(control, {"status": request_id, "code": code})

        return report

    isolate.enter(sandbox, announce, keep=(control.fileno(),), prepared=prepared, start=start)


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _reseed(module: object) -> None:
    module.seed()  # type: ignore[attr-defined]


def _forget_tempdir(module: object) -> None:
    module.tempdir = None  # type: ignore[attr-defined]  # TMPDIR is read again


_RESETS = (("random", _reseed), ("tempfile", _forget_tempdir))


def _startup_added() -> dict[str, str]:
    """Variables the interpreter set at its own startup (C locale coercion sets LC_CTYPE):
    what os.environ has beyond the environment this process was executed with."""
    try:
        with open("/proc/self/environ", "rb") as given:
            names = {item.split(b"=", 1)[0] for item in given.read().split(b"\0") if item}
    except OSError:
        return {}
    return {k: v for k, v in os.environ.items() if os.fsencode(k) not in names}


# Lamina forks only environments whose startup-sensitive variables (PYTHON*, LC_*, LANG,
# LD_*, ...) equal this process's, so their interpreter would have added the same.
STARTUP_ADDED = _startup_added()


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    parent_death_signal(int(sys.argv[2]))
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Lamina decides when this process ends
    with contextlib.suppress(OSError):
        socket.getaddrinfo("localhost", None)  # the resolver's modules, loaded once, here
    # The compiler makes its AST node types on first use (1.5 ms): here, once, not in
    # every environment whose code has no bytecode cache it can read or write (/var/task
    # is read-only to the runtime's user).
    compile("def handler(event, context):\n    return event\n", "<warm>", "exec")
    gc.collect()
    gc.freeze()  # what is here now is shared with every environment: keep gc off its pages
    send(control, {"ready": os.getpid()})
    while True:
        readable, _, _ = select.select([control.fileno(), wake_r], [], [])
        if wake_r in readable:
            try:
                while os.read(wake_r, 512):
                    pass
            except BlockingIOError:
                pass
            reap(control)
        if control.fileno() in readable:
            data, fds, _, _ = socket.recv_fds(control, MAX_PACKET, 4)
            if not data:
                return  # Lamina is gone or done with us
            request = json.loads(data)
            if "prepare" in request:
                for fd in fds:
                    os.close(fd)
                prepare_environment(control, request)
                continue
            if len(fds) != 1:
                for fd in fds:
                    os.close(fd)
                send(control, {"id": request.get("id"), "error": "expected one descriptor"})
                continue
            try:
                fork_environment(control, request, fds[0])
            finally:
                os.close(fds[0])
            reap(control)


if __name__ == "__main__":
    main()
