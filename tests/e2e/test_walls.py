"""The walls around an environment, tested with hostile functions against a real server: the
seccomp filter, the Runtime API serving one runtime, freezing and /tmp on both launch paths;
the networks (which the launch path does not change) on the fork server's.

These run as root here (cgroup v1) and are never skipped on this machine: a server asked for
`--isolation namespaces` refuses to start where it cannot have them.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import random
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROLE, Server, command_line, make_zip, python_function

SYSCALLS = r"""
import ctypes, errno, os, socket, sqlite3, subprocess, threading, zlib

libc = ctypes.CDLL(None, use_errno=True)
SYS = {"add_key": 248, "keyctl": 250, "bpf": 321, "unshare": 272}
KEY_SPEC_USER_KEYRING = -4
KEYCTL_SEARCH, KEYCTL_READ = 10, 11

def outcome(result):
    if result == -1:
        return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
    return "ok"

def handler(event, context):
    found = {}
    found["unshare_user"] = outcome(libc.unshare(0x10000000))
    found["unshare_user_mount"] = outcome(libc.unshare(0x10000000 | 0x00020000))
    found["unshare_net"] = outcome(libc.unshare(0x40000000))
    command = subprocess.run(["unshare", "-U", "true"], capture_output=True, text=True)
    found["unshare_command"] = (command.returncode, command.stderr.strip())
    found["mount"] = outcome(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))
    found["setns"] = outcome(libc.setns(os.open("/proc/self/ns/uts", os.O_RDONLY), 0))
    if event.get("key"):
        found["add_key"] = outcome(libc.syscall(SYS["add_key"], b"user", b"shared-secret",
                                                event["key"].encode(), len(event["key"]),
                                                KEY_SPEC_USER_KEYRING))
    found["keyctl_search"] = outcome(libc.syscall(SYS["keyctl"], KEYCTL_SEARCH,
                                                  KEY_SPEC_USER_KEYRING, b"user",
                                                  b"shared-secret", 0))
    found["bpf"] = outcome(libc.syscall(SYS["bpf"], 0, None, 0))
    child = os.fork()
    if child == 0:
        import time
        time.sleep(5)
        os._exit(0)
    found["ptrace"] = outcome(libc.ptrace(16, child, None, None))  # PTRACE_ATTACH
    os.kill(child, 9)
    os.waitpid(child, 0)
    # Ordinary work is unaffected.
    results = []
    threads = [threading.Thread(target=lambda i=i: results.append(i * i)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    found["threads"] = sorted(results)
    found["subprocess"] = subprocess.run(["sh", "-c", "echo $((6 * 7))"], capture_output=True,
                                         text=True).stdout.strip()
    left, right = socket.socketpair()
    left.sendall(b"ping")
    found["socketpair"] = right.recv(4).decode()
    listener = socket.create_server(("127.0.0.1", 0))
    with socket.create_connection(listener.getsockname()) as client:
        peer, _ = listener.accept()
        client.sendall(b"tcp")
        found["tcp"] = peer.recv(3).decode()
        peer.close()
    database = sqlite3.connect(":memory:")
    found["sqlite"] = database.execute("select 40 + 2").fetchone()[0]
    found["zlib"] = zlib.decompress(zlib.compress(b"compiled")).decode()
    return found
"""

# A runtime that asks for its next event twice (the second must be refused, never take the
# first one's place) and answers for a request id it was never given.
TWO_NEXTS = r"""#!/bin/sh
API="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime"
curl -sS -D /tmp/headers -o /tmp/event "$API/invocation/next"
while true; do
  ID=$(grep -i '^Lambda-Runtime-Aws-Request-Id:' /tmp/headers | cut -d' ' -f2 | tr -d '\r')
  curl -sS -D /tmp/headers.next -o /tmp/event.next "$API/invocation/next" &
  WAITING=$!
  sleep 0.3
  SECOND=$(curl -sS -o /tmp/second -w '%{http_code}' "$API/invocation/next")
  FORGED=$(curl -sS -o /tmp/forged -w '%{http_code}' -X POST --data 'forged' \
    "$API/invocation/00000000-0000-0000-0000-000000000000/response")
  printf '{"second": %s, "second_body": %s, "forged": %s, "forged_body": %s, "event": %s}' \
    "$SECOND" "$(cat /tmp/second)" "$FORGED" "$(cat /tmp/forged)" "$(cat /tmp/event)" \
    > /tmp/response
  curl -sS -o /dev/null -X POST --data-binary @/tmp/response "$API/invocation/$ID/response"
  wait $WAITING
  mv /tmp/headers.next /tmp/headers
  mv /tmp/event.next /tmp/event
done
"""


def invoke(server: Server | Walled, name: str, event: Any = None, **extra: Any) -> dict[str, Any]:
    response: dict[str, Any] = server.client().invoke(
        FunctionName=name, Payload=json.dumps(event or {}).encode(), **extra
    )
    response["body"] = json.loads(response["Payload"].read())
    if "LogResult" in response:
        response["log"] = base64.b64decode(response["LogResult"]).decode()
    return response


def start(directory: Path, *args: str, fork: bool = True) -> Server:
    directory.mkdir(parents=True, exist_ok=True)
    env = {"LAMINA_FORK_SERVER": "1" if fork else "0"}
    return Server(directory / "data", args=list(args), env=env).start()


class Listener:
    """A TCP server on the host's loopback that records what it is sent."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                peer, _ = self.sock.accept()
            except OSError:
                continue
            with peer:
                peer.settimeout(2)
                with contextlib.suppress(OSError):
                    self.received.append(peer.recv(64))
                    peer.sendall(b"host says hi")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


class Internet:
    """A network namespace standing in for the internet: a veth to the host and an HTTP
    server inside that answers with the address it was reached from."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}{random.randrange(100):02d}"
        self.name = f"lmtest-inet-{tag}"
        self.host_link = f"lmti{tag}"
        # A /30 of 198.18.0.0/16 no one on this host uses (other test runs make theirs).
        used = {
            address.split(".")[2] for address in host_addresses() if address.startswith("198.18.")
        }
        third = random.choice([str(n) for n in range(256) if str(n) not in used])
        self.host_address, self.address = f"198.18.{third}.1", f"198.18.{third}.2"
        run = functools.partial(subprocess.run, check=True, capture_output=True, timeout=20)
        run(["ip", "netns", "add", self.name])
        run(["ip", "link", "add", self.host_link, "type", "veth", "peer", "name", "eth0",
             "netns", self.name])  # fmt: skip
        run(["ip", "addr", "add", f"{self.host_address}/30", "dev", self.host_link])
        run(["ip", "link", "set", self.host_link, "up"])
        inside = ["ip", "netns", "exec", self.name]
        run([*inside, "ip", "addr", "add", f"{self.address}/30", "dev", "eth0"])
        run([*inside, "ip", "link", "set", "eth0", "up"])
        run([*inside, "ip", "link", "set", "lo", "up"])
        run([*inside, "ip", "route", "add", "default", "via", self.host_address])
        self.port = 8080
        self.server = subprocess.Popen(
            [*inside, sys.executable, "-c", INTERNET_SERVER, self.address, str(self.port)],
            stdout=subprocess.PIPE,
        )
        assert self.server.stdout is not None
        assert self.server.stdout.readline().strip() == b"ready"

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}/"

    def close(self) -> None:
        self.server.kill()
        self.server.wait()
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, timeout=20)


INTERNET_SERVER = """
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("reached from " + self.client_address[0]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("", int(sys.argv[2])), Handler)  # every address
print("ready", flush=True)
server.serve_forever()
"""


class FakeDns:
    """A resolver on the host's loopback that answers every A query with ANSWER."""

    ANSWER = "198.51.100.7"

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.asked: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                query, peer = self.sock.recvfrom(512)
            except OSError:
                continue
            end, labels = 12, []
            while query[end]:
                labels.append(query[end + 1 : end + 1 + query[end]].decode())
                end += 1 + query[end]
            qtype = int.from_bytes(query[end + 1 : end + 3], "big")
            question = query[12 : end + 5]
            self.asked.append(".".join(labels))
            answers = 1 if qtype == 1 else 0
            reply = query[:2] + b"\x81\x80" + struct.pack(">HHHH", 1, answers, 0, 0) + question
            if answers:
                reply += b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4)
                reply += socket.inet_aton(self.ANSWER)
            self.sock.sendto(reply, peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@dataclass
class Walled:
    server: Server
    opened: Listener  # a host loopback port opened with --host-access
    closed: Listener  # one that is not
    internet: Internet
    dns: FakeDns  # the resolver environments' DNS goes to (--dns)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.server, name)


@pytest.fixture(scope="module")
def internet() -> Iterator[Internet]:
    outside = Internet()
    try:
        yield outside
    finally:
        outside.close()


@pytest.fixture(scope="module")
def walled(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, internet: Internet
) -> Iterator[Walled]:
    """A server with every wall, forking or spawning Python environments (the test's
    BOTH_PATHS or ONE_PATH says which); one host port opened to environments, one not;
    subnet-nat has a NAT."""
    opened, closed, dns = Listener(), Listener(), FakeDns()
    server = start(
        tmp_path_factory.mktemp(f"walls-{request.param}"),
        "--isolation", "namespaces", "--host-access", str(opened.port),
        "--nat-subnet", "subnet-nat", "--dns", f"127.0.0.1:{dns.port}",
        fork=request.param == "fork",
    )  # fmt: skip
    try:
        yield Walled(server, opened, closed, internet, dns)
    finally:
        server.stop()
        opened.close()
        closed.close()
        dns.close()


# What happens in an environment's processes is tested on both launch paths. Its network does
# not depend on the path: both enter the namespace Lamina made through isolate.early() (in a
# prepared init or a forked child on the fork path, in the spawned init on the other), and the
# walls are the host's rules for the namespace's veth; so the network tests run on the fork path.
BOTH_PATHS = pytest.mark.parametrize("walled", ["fork", "spawn"], indirect=True)
ONE_PATH = pytest.mark.parametrize("walled", ["fork"], indirect=True)


def unique(server: Server | Walled, name: str) -> str:
    return f"{name}-{server.port}"


@BOTH_PATHS
def test_refused_system_calls_fail_with_eperm_and_ordinary_work_goes_on(walled: Walled) -> None:
    lam = walled.client()
    first, second = unique(walled, "syscalls-a"), unique(walled, "syscalls-b")
    python_function(lam, first, SYSCALLS, Timeout=20)
    python_function(lam, second, SYSCALLS, Timeout=20)
    found = invoke(walled, first, {"key": "the first function's secret"})
    assert "FunctionError" not in found, found["body"]
    body = found["body"]
    for call in ("unshare_user", "unshare_user_mount", "unshare_net", "mount", "setns",
                 "add_key", "keyctl_search", "bpf", "ptrace"):  # fmt: skip
        assert body[call] == "EPERM", (call, body)
    code, message = body["unshare_command"]
    assert code != 0 and "Operation not permitted" in message, body["unshare_command"]
    assert body["threads"] == [i * i for i in range(8)]
    assert body["subprocess"] == "42"
    assert body["socketpair"] == "ping" and body["tcp"] == "tcp"
    assert body["sqlite"] == 42 and body["zlib"] == "compiled"
    # Another function (same unprivileged uid) cannot find a key the first one made.
    other = invoke(walled, second)["body"]
    assert other["keyctl_search"] == "EPERM"


@BOTH_PATHS
def test_doctor_and_the_start_report_every_wall(walled: Walled) -> None:
    doctor = subprocess.run(
        [sys.executable, "-m", "lamina.cli", "doctor"], capture_output=True, text=True, timeout=60
    )
    for line in (
        "ok    unprivileged user: then seccomp: ",
        "ok    freezer: environments frozen between invocations",
        "ok    ceilings: all environments together: ",
        "ok    networks: a network namespace per environment",
    ):
        assert line in doctor.stdout, doctor.stdout
    assert "refused with EPERM" in doctor.stdout
    started = walled.output()
    for text in ("seccomp: ", "frozen between invocations", "all environments together at most",
                 "a network namespace each, on 100.", f"host.lamina.internal ports "
                 f"{walled.opened.port}"):  # fmt: skip
        assert text in started, started


@BOTH_PATHS
def test_the_runtime_api_serves_one_runtime(walled: Walled) -> None:
    name = unique(walled, "two-nexts")
    walled.client().create_function(
        FunctionName=name,
        Runtime="provided.al2023",
        Role=ROLE,
        Handler="unused",
        Code={"ZipFile": make_zip({"bootstrap": TWO_NEXTS}, {"bootstrap": 0o755})},
        Timeout=10,
    )
    for index in range(3):  # warm invokes: the waiting GET took each next event
        body = invoke(walled, name, {"n": index})["body"]
        assert body["event"] == {"n": index}, body
        assert body["second"] == 403, body
        assert body["second_body"]["errorType"] == "InvalidStateTransition"
        assert body["forged"] == 400, body
        assert body["forged_body"]["errorType"] == "InvalidRequestID"


# Networks ------------------------------------------------------------------------------------
PROBE = r"""
import errno, os, select, socket, time, urllib.request

def probe(targets, timeout):
    # Parallel non-blocking connects; the (host, port)s that accepted.
    found = []
    for start in range(0, len(targets), 800):
        pending = {}
        for host, port in targets[start:start + 800]:
            sock = socket.socket()
            sock.setblocking(False)
            code = sock.connect_ex((host, port))
            if code == 0:
                found.append(f"{host}:{port}")
                sock.close()
            elif code == errno.EINPROGRESS:
                pending[sock] = f"{host}:{port}"
            else:
                sock.close()
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            _, ready, _ = select.select([], list(pending), [], deadline - time.monotonic())
            for sock in ready:
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    try:  # a connect from port P to port P meets itself: not a listener
                        if sock.getsockname() != sock.getpeername():
                            found.append(pending[sock])
                    except OSError:
                        pass
                sock.close()
                del pending[sock]
        for sock in pending:
            sock.close()
    return sorted(found)

def listeners():
    found = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(name).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                found.append(int(fields[1].rsplit(":", 1)[1], 16))
    return sorted(found)

def hijack(address):
    # Take an event, then answer for it: what the hostile review did to its neighbours.
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1) as sock:
            sock.settimeout(1)
            sock.sendall(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n")
            return sock.recv(256).decode(errors="replace").split("\r\n")[0]
    except OSError as exc:
        return type(exc).__name__

def handler(event, context):
    own = os.environ["AWS_LAMBDA_RUNTIME_API"]
    loopback = probe([("127.0.0.1", port) for port in range(1, 65536)], 2)
    hosts = probe([(host, port) for host in event["hosts"] for port in event["ports"]], 1.5)
    return {
        "own": own,
        "listeners": listeners(),
        "loopback": loopback,
        "hosts": hosts,
        "hijacked": {address: hijack(address) for address in loopback + hosts
                     if address != own},
    }
"""

VICTIM = """
import time

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"genuine": context.aws_request_id}
"""

REACH = r"""
import json, os, socket, urllib.request

os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")

def get(url):
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.read().decode()
    except OSError as exc:
        return "failed: " + type(exc).__name__

def talk(host, port, message):
    try:
        with socket.create_connection((host, port), timeout=3) as sock:
            sock.sendall(message.encode())
            sock.settimeout(3)
            return sock.recv(64).decode()
    except OSError as exc:
        return "failed: " + type(exc).__name__

def handler(event, context):
    found = {"endpoint": os.environ.get("AWS_ENDPOINT_URL")}
    if "url" in event:
        found["internet"] = get(event["url"])
    if "talk" in event:
        found["talk"] = talk(event["talk"][0], event["talk"][1], event["message"])
    if "resolve" in event:
        try:
            found["resolved"] = socket.gethostbyname(event["resolve"])
        except OSError as exc:
            found["resolved"] = "failed: " + type(exc).__name__
    if "api" in event or "listen" in event:
        import boto3  # only here: it takes a cold environment a second or two
    if "api" in event:
        lam = boto3.client("lambda")
        found["api"] = lam.get_function(FunctionName=context.function_name)[
            "Configuration"]["FunctionName"]
    if "listen" in event:
        # Listen on this environment's address, say where through the SQS API, and
        # report what peers send until told to stop (a message on the "-stop" queue, seen
        # once no connection is waiting) or the time given is over.
        sqs = boto3.client("sqs")
        server = socket.create_server(("0.0.0.0", 0))
        server.settimeout(0.5)
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.connect((event["gateway"], 9))
        address = probe.getsockname()[0]
        queue = sqs.get_queue_url(QueueName=event["listen"])["QueueUrl"]
        stop = sqs.get_queue_url(QueueName=event["listen"] + "-stop")["QueueUrl"]
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(
            [address, server.getsockname()[1]]))
        import time
        heard, deadline = [], time.monotonic() + event["seconds"]
        while time.monotonic() < deadline:
            try:
                peer, _ = server.accept()
            except OSError:
                if sqs.receive_message(QueueUrl=stop).get("Messages"):
                    break
                continue
            with peer:
                peer.settimeout(2)
                heard.append(peer.recv(64).decode())
                peer.sendall(b"peer says hi")
        found["heard"] = heard
    found["hosts"] = open("/etc/hosts").read()
    return found
"""


def host_addresses() -> list[str]:
    out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True)
    found = {line.split()[3].split("/")[0] for line in out.stdout.splitlines()}
    return sorted(found - {"127.0.0.1"})  # the loopback is scanned whole, inside


def gateway_of(walled: Walled) -> str:
    endpoint = invoke(walled, _reacher(walled))["body"]["endpoint"]
    return str(endpoint.split("//")[1].rsplit(":", 1)[0])


def _reacher(walled: Server | Walled, **config: Any) -> str:
    suffix = "-".join(config.get("VpcConfig", {}).get("SubnetIds", ["plain"]))
    name = unique(walled, f"reach-{suffix}")
    with contextlib.suppress(Exception):
        python_function(walled.client(), name, REACH, Timeout=30, **config)
    return name


def vpc(subnet: str) -> dict[str, Any]:
    return {"VpcConfig": {"SubnetIds": [subnet], "SecurityGroupIds": ["sg-1"]}}


@ONE_PATH
def test_a_hostile_function_finds_nothing_to_scan_or_hijack(walled: Walled) -> None:
    lam = walled.client()
    victim, attacker = unique(walled, "victim"), unique(walled, "attacker")
    python_function(lam, victim, VICTIM, Timeout=10)
    python_function(lam, attacker, PROBE, Timeout=60, MemorySize=512)
    # Three idle environments of the victim, each waiting in GET /next.
    with ThreadPoolExecutor(3) as pool:
        idle = list(pool.map(lambda _: invoke(walled, victim, {"sleep": 0.5}), range(3)))
    assert all("genuine" in result["body"] for result in idle)
    ports = sorted({22, 80, 2000, 3306, 5432, 6379, 9001, 9700, walled.port,
                    walled.opened.port, walled.closed.port})  # fmt: skip
    gateway = gateway_of(walled)
    scanned = host_addresses()
    found = invoke(walled, attacker, {"hosts": scanned, "ports": ports})
    assert "FunctionError" not in found, found["body"]
    body = found["body"]
    # Another suite's stand-in internet may leave the host mid-scan: its address is then
    # the outside world's, where egress rightly goes. Only the host's own addresses count.
    still = set(scanned) & set(host_addresses())
    body["hosts"] = [hit for hit in body["hosts"] if hit.rsplit(":", 1)[0] in still]
    assert body["own"] == "127.0.0.1:9001"
    assert body["listeners"] == [9001]  # its own Runtime API, nothing of anyone else's
    assert body["loopback"] == ["127.0.0.1:9001"]
    # Of every host address and port: Lamina's API and the opened port, at the gateway.
    assert body["hosts"] == sorted([f"{gateway}:{walled.port}", f"{gateway}:{walled.opened.port}"])
    assert body["hijacked"] == {
        f"{gateway}:{walled.port}": "HTTP/1.1 404 Not Found",  # Lamina's API: no such route
        f"{gateway}:{walled.opened.port}": "",  # the operator's own service
    } or all(not answer.startswith("HTTP/1.1 200") for answer in body["hijacked"].values())
    # The victim's environments were never reached: its callers get genuine answers.
    with ThreadPoolExecutor(3) as pool:
        after = list(pool.map(lambda _: invoke(walled, victim), range(3)))
    for result in after:
        assert result["body"]["genuine"] == result["ResponseMetadata"]["RequestId"]


SCAN = (
    PROBE
    + """
def scan(event, context):
    return probe([(host, port) for host in event["hosts"] for port in event["ports"]], 1.5)

def endpoint(event, context):
    return os.environ["AWS_ENDPOINT_URL"]
"""
)


def test_another_servers_network_is_walled_off_running_or_gone(
    tmp_path: Path, internet: Internet
) -> None:
    """Another isolated server on the host: its gateway (an address of the host's) is as
    closed as any other while it runs; once it stopped, that address is not the host's
    any more, and a function must not reach whatever answers there now (the stand-in
    internet, here) either: nothing of Lamina's shared space is egress."""
    for name in ("one", "other"):
        (tmp_path / name).mkdir()
    server, other = (Server(tmp_path / name / "data", args=["--isolation", "namespaces"])
                     for name in ("one", "other"))  # fmt: skip
    inside = ["ip", "netns", "exec", internet.name]
    theirs = ""
    try:
        with ThreadPoolExecutor(2) as pool:  # together, and patiently: a busy host is slow
            list(pool.map(lambda one: one.start(timeout=60), (server, other)))
        python_function(other.client(), "endpoint", SCAN, handler="app.endpoint")
        theirs = invoke(other, "endpoint")["body"].split("//")[1].rsplit(":", 1)[0]
        assert theirs in host_addresses()  # the other server's network is there
        python_function(server.client(), "scan", SCAN, handler="app.scan", Timeout=30)
        ports = [22, 80, 2000, 3306, 5432, 6379, 9001, other.port, server.port]
        assert invoke(server, "scan", {"hosts": [theirs], "ports": ports})["body"] == []

        other.stop()
        assert wait_for(lambda: theirs not in host_addresses(), 10)
        run = functools.partial(subprocess.run, check=True, capture_output=True, timeout=20)
        run([*inside, "ip", "addr", "add", f"{theirs}/32", "dev", "lo"])
        run(["ip", "route", "add", f"{theirs}/32", "via", internet.address])
        with urllib.request.urlopen(f"http://{theirs}:{internet.port}/", timeout=5) as answer:
            assert answer.read().decode() == f"reached from {internet.host_address}"  # host
        found = invoke(server, "scan", {"hosts": [internet.address, theirs], "ports": [8080]})
        assert found["body"] == [f"{internet.address}:{internet.port}"]  # the outside only
    finally:
        if theirs:
            subprocess.run(["ip", "route", "del", f"{theirs}/32"], capture_output=True, timeout=20)
            subprocess.run([*inside, "ip", "addr", "del", f"{theirs}/32", "dev", "lo"],
                           capture_output=True, timeout=20)  # fmt: skip
        server.stop()
        other.stop()


@ONE_PATH
def test_host_loopback_is_closed_but_what_the_operator_opens(walled: Walled) -> None:
    name = _reacher(walled)
    closed = invoke(walled, name, {"talk": ["127.0.0.1", walled.closed.port], "message": "x"})
    assert closed["body"]["talk"].startswith("failed"), closed["body"]
    gateway = gateway_of(walled)
    dropped = invoke(walled, name, {"talk": [gateway, walled.closed.port], "message": "x"})
    assert dropped["body"]["talk"].startswith("failed"), dropped["body"]
    assert b"x" not in walled.closed.received
    message = f"hello from {walled.port}"
    opened = invoke(
        walled, name, {"talk": ["host.lamina.internal", walled.opened.port], "message": message}
    )
    assert opened["body"]["talk"] == "host says hi", opened["body"]
    assert message.encode() in walled.opened.received
    assert f"{gateway}\thost.lamina.internal" in opened["body"]["hosts"]


@ONE_PATH
def test_egress_outside_and_from_subnets_only_with_a_nat(walled: Walled) -> None:
    url = walled.internet.url
    names = [_reacher(walled, **config) for config in ({}, vpc("subnet-a"), vpc("subnet-nat"))]
    with ThreadPoolExecutor(len(names)) as pool:  # three networks, three cold starts at once
        plain, isolated, natted = pool.map(
            lambda name: invoke(walled, name, {"url": url, "api": True})["body"], names
        )
    assert plain["internet"] == f"reached from {walled.internet.host_address}", plain  # NAT'd
    assert plain["api"] == names[0]  # AWS_ENDPOINT_URL: Lamina's API
    assert isolated["internet"].startswith("failed"), isolated
    assert isolated["api"] == names[1]
    assert natted["internet"] == f"reached from {walled.internet.host_address}", natted
    assert natted["api"] == names[2]
    assert plain["endpoint"] == isolated["endpoint"] == natted["endpoint"]


def _peers_hear(walled: Walled, listener: dict[str, Any], talkers: dict[str, str]) -> list[str]:
    """A listening function on `listener`'s network; each of `talkers` (message → function)
    tries to reach it, all at once; what the listener heard. A talker's invoke ends once its
    connection was answered or failed, so when all have ended the listener heard everything
    that reached it, and is told to stop."""
    queue_name = f"peers-{walled.port}-{random.randrange(10**6)}"
    sqs = walled.client("sqs")
    queue = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    stop = sqs.create_queue(QueueName=f"{queue_name}-stop")["QueueUrl"]
    gateway = gateway_of(walled)
    name = _reacher(walled, **listener)
    event = {"listen": queue_name, "gateway": gateway, "seconds": 20}
    with ThreadPoolExecutor(1 + len(talkers)) as pool:
        listening = pool.submit(invoke, walled, name, event)
        messages = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=10)["Messages"]
        host, port = json.loads(messages[0]["Body"])
        talked = [
            pool.submit(invoke, walled, talker, {"talk": [host, port], "message": message})
            for message, talker in talkers.items()
        ]
        for talking in talked:
            talking.result(timeout=30)
        sqs.send_message(QueueUrl=stop, MessageBody="stop")
        result = listening.result(timeout=30)
    assert "FunctionError" not in result, result["body"]
    return list(result["body"]["heard"])


@ONE_PATH
def test_a_subnet_is_a_network_and_the_default_network_is_not(walled: Walled) -> None:
    same = _reacher(walled, **vpc("subnet-a"))
    other = _reacher(walled, **vpc("subnet-b"))
    plain = _reacher(walled)
    heard = _peers_hear(walled, vpc("subnet-a"), {"same": same, "other": other, "plain": plain})
    assert heard == ["same"]
    heard = _peers_hear(walled, {}, {"plain": plain, "same": same})
    assert heard == []  # environments without VPC reach no one but the outside world


# Frozen between invocations ---------------------------------------------------------------
COUNTER = """
import os, subprocess, threading, time

count = [0]
daemon = []

def spin():
    while True:  # about a thousand a second, while it runs
        count[0] += 1
        time.sleep(0.001)

def handler(event, context):
    if event.get("start"):
        threading.Thread(target=spin, daemon=True).start()
        # A daemon that double-forks into a session of its own, writing to /tmp.
        subprocess.run(["sh", "-c", "setsid sh -c 'while :; do echo x >> /tmp/ticks; "
                        f"sleep 0.05; done; : {event['start']}' > /dev/null 2>&1 &"], check=True)
        time.sleep(0.2)
    ticks = os.path.getsize("/tmp/ticks") // 2 if os.path.exists("/tmp/ticks") else 0
    return {"count": count[0], "ticks": ticks}
"""


@pytest.fixture(scope="module")
def unfrozen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start(tmp_path_factory.mktemp("unfrozen"), "--isolation", "namespaces", "--no-freeze")
    try:
        yield server
    finally:
        server.stop()


def _advance(server: Server | Walled, name: str) -> tuple[int, int]:
    """How far a background thread and a daemon got in two idle seconds."""
    first = invoke(server, name, {"start": f"daemon-{name}"})["body"]
    time.sleep(2)
    second = invoke(server, name)["body"]
    return second["count"] - first["count"], second["ticks"] - first["ticks"]


@BOTH_PATHS
def test_an_environment_is_frozen_between_invocations(walled: Walled, unfrozen: Server) -> None:
    name = unique(walled, "counter")  # on both servers (one unfrozen for both launch paths)
    for server in (walled, unfrozen):
        python_function(server.client(), name, COUNTER, Timeout=10)
    frozen_count, frozen_ticks = _advance(walled, name)
    free_count, free_ticks = _advance(unfrozen, name)
    print(
        f"idle 2 s: counter +{frozen_count} frozen, +{free_count} not; daemon ticks "
        f"+{frozen_ticks} / +{free_ticks}"
    )
    assert free_count > 500 and free_ticks >= 10  # they do run when not frozen
    assert frozen_count < 0.01 * free_count
    assert frozen_ticks <= 1  # the double-forked daemon was frozen too
    # It dies with its environment.
    marker = f"daemon-{name}"
    unfrozen.client().delete_function(FunctionName=name)
    assert any(marker in command_line(pid) for pid in all_pids())
    walled.client().delete_function(FunctionName=name)
    assert wait_for(lambda: not any(marker in command_line(pid) for pid in all_pids()), 10)


def test_a_frozen_environment_is_reclaimed_with_what_it_started(tmp_path: Path) -> None:
    """Keep-alive reclaims an idle, frozen environment: its background thread's process,
    its double-forked daemon and its cgroup go."""
    server = start(tmp_path, "--isolation", "namespaces", "--keep-alive", "1")
    try:
        python_function(server.client(), "counter", COUNTER, Timeout=10)
        marker = f"daemon-reclaimed-{server.port}"
        invoke(server, "counter", {"start": marker})
        daemons = [pid for pid in all_pids() if marker in command_line(pid)]
        assert daemons
        cgroup = _memory_cgroup(daemons[0])
        assert cgroup.is_dir() and cgroup.parent == _memory_base(server)
        state = _memory_cgroup(daemons[0], "freezer") / "freezer.state"
        assert wait_for(lambda: state.read_text().strip() == "FROZEN", 2)  # idle: frozen
        assert wait_for(lambda: not any(marker in command_line(pid) for pid in all_pids()), 15)
        assert wait_for(lambda: not cgroup.exists(), 5), cgroup
    finally:
        server.stop()


def wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


# Ceilings for all environments together ------------------------------------------------------
FORKS = """
import errno, os, time

def handler(event, context):
    forked, failure = 0, None
    for _ in range(event["at_most"]):
        try:
            pid = os.fork()
        except OSError as exc:
            failure = errno.errorcode.get(exc.errno)
            break
        if pid == 0:
            try:
                os.execv("/bin/sleep", ["sleep", str(event["sleep"])])
            finally:
                os._exit(0)
        forked += 1
    return {"forked": forked, "error": failure}
"""


def _p50(server: Server, name: str, count: int) -> float:
    client = server.client()
    took = []
    for _ in range(count):
        started = time.perf_counter()
        client.invoke(FunctionName=name, Payload=b"{}")["Payload"].read()
        took.append((time.perf_counter() - started) * 1000)
    return statistics.median(took)


def test_fork_bombs_in_many_environments_stop_at_the_ceiling(tmp_path: Path) -> None:
    ceiling = 1500
    server = start(tmp_path, "--isolation", "namespaces", "--max-pids", str(ceiling),
                   "--request-rate", "0")  # fmt: skip
    try:
        lam = server.client()
        python_function(lam, "quiet", "def handler(event, context):\n    return 1\n")
        bombs = [f"bomb-{index}" for index in range(4)]
        for name in bombs:
            python_function(lam, name, FORKS, Timeout=60, MemorySize=1024)
        _p50(server, "quiet", 30)  # warm
        quiet = _p50(server, "quiet", 60)
        with ThreadPoolExecutor(len(bombs)) as pool:
            results = list(pool.map(
                lambda name: invoke(server, name, {"at_most": 3000, "sleep": 20})["body"], bombs
            ))  # fmt: skip
        # While the ceiling's processes are all there (for 20 s): measured again, at most
        # three times, when the host's own load moved the figure; bombs without a ceiling
        # (3,100 tasks) took it from 1.2 to 7 ms every time.
        loaded = [_p50(server, "quiet", 60)]
        while len(loaded) < 3 and min(loaded) > 2 * quiet:
            loaded.append(_p50(server, "quiet", 60))
        assert all(result["error"] == "EAGAIN" for result in results), results
        forked = sum(result["forked"] for result in results)
        # Each stopped before its own 1,024: together they met the server's ceiling.
        assert all(result["forked"] < 1000 for result in results), results
        assert ceiling - 4 * 8 <= forked <= ceiling, results
        print(
            f"4 fork bombs: {forked} processes in all (ceiling {ceiling}); quiet p50 "
            f"{quiet:.2f} ms, under them {', '.join(f'{p50:.2f}' for p50 in loaded)} ms"
        )
        assert min(loaded) <= 2 * quiet
    finally:
        server.stop()


# Prepared inits ------------------------------------------------------------------------------
ALLOCATE = """
def handler(event, context):
    block = bytearray(event["mb"] * 1024 * 1024)  # touched: resident
    return len(block) // (1024 * 1024)
"""


def _memory_cgroup(pid: int, controller: str = "memory") -> Path:
    """A process's cgroup in a hierarchy (cgroup v1, as on this machine)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return Path("/sys/fs/cgroup") / controller / path.lstrip("/")
    raise AssertionError(f"no {controller} cgroup")


def _memory_base(server: Server) -> Path:
    """The server's base cgroup in the memory hierarchy."""
    return _memory_cgroup(server.process.pid) / f"lamina-{server.process.pid}"


RUNTIME = """
import os

def handler(event, context):
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
    ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
    return {"ids": [os.getpid(), os.getppid(), os.getuid()], "cwd": os.getcwd(),
            "code": os.listdir("."), "host": os.path.exists(event["host"]),
            "cgroupfs": " - cgroup " in open("/proc/self/mountinfo").read(),
            "walls": [status["Seccomp"].strip(), status["NoNewPrivs"].strip()],
            "started": ticks / os.sysconf("SC_CLK_TCK")}
"""


def _uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def test_a_cold_start_takes_a_prepared_init_with_its_functions_limits(tmp_path: Path) -> None:
    """Inits wait ahead in cgroups of their own (the smallest limits); the cold start that
    takes one gets its function's limits: 1,024 MB hold 400 MB, 128 MB do not. Their
    runtime is forked ahead too (started before the invoke), already the unprivileged
    user with its filter, and runs in the function's root (pivoted into ahead, its code
    moved in as a clone)."""
    server = start(tmp_path, "--isolation", "namespaces")
    try:
        base = _memory_base(server)
        assert wait_for(lambda: len(list(base.glob("init-*"))) >= 2, 10), list(base.iterdir())
        lam = server.client()
        python_function(lam, "big", ALLOCATE, MemorySize=1024)
        python_function(lam, "small", ALLOCATE, MemorySize=128)
        python_function(lam, "runtime", RUNTIME)
        found = invoke(server, "big", {"mb": 400}, LogType="Tail")
        assert found["body"] == 400, found
        used = int(found["log"].split("Max Memory Used: ")[1].split()[0])
        assert 400 <= used <= 1024, found["log"]
        before = _uptime()  # boot time, as a process's start time is counted
        ran = invoke(server, "runtime", {"host": str(tmp_path)})["body"]
        assert ran["started"] < before, (ran, before)  # forked ahead of this cold start
        assert ran["ids"] == [2, 1, 993] and ran["walls"] == ["2", "1"], ran
        assert ran["cwd"] == "/var/task" and ran["code"] == ["app.py"], ran
        assert not ran["host"], ran  # the test's directory, on the host's /tmp
        assert not ran["cgroupfs"], ran  # none of the host's mounts: its root was detached
        limits = {
            int((cgroup / "memory.limit_in_bytes").read_text()) // 2**20
            for cgroup in base.glob("init-*")
            if (cgroup / "cgroup.procs").read_text().split()
        }
        assert 1024 in limits, limits  # the environment's, in a prepared init's cgroup
        killed = invoke(server, "small", {"mb": 400})
        assert killed["body"]["errorType"] == "Runtime.OutOfMemory", killed["body"]
        # Inits killed while they wait: cold starts go on (the pool drops them, or the fork
        # server starts the environment the whole way when the one named is gone).
        waiting = [int(pid) for cgroup in base.glob("init-*")
                   for pid in (cgroup / "cgroup.procs").read_text().split()]  # fmt: skip
        for pid in waiting:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        for index in range(4):
            python_function(lam, f"after-{index}", ALLOCATE, MemorySize=256)
            assert invoke(server, f"after-{index}", {"mb": 1})["body"] == 1
    finally:
        server.stop()


# /tmp on disk --------------------------------------------------------------------------------
FILL = """
import errno, os

def handler(event, context):
    path = "/tmp/fill"
    chunk = b"x" * (1024 * 1024)
    written, failure = 0, None
    try:
        with open(path, "wb") as out:
            for _ in range(event["mb"]):
                out.write(chunk)
                out.flush()
                written += 1
            os.fsync(out.fileno())
    except OSError as exc:
        failure = errno.errorcode.get(exc.errno)
    if os.path.exists(path):
        os.unlink(path)
    size = os.statvfs("/tmp")
    return {"written_mb": written, "error": failure,
            "free_mb": size.f_bavail * size.f_frsize // 2**20}
"""


@pytest.mark.parametrize("memory", [1024, 128])
@BOTH_PATHS
def test_tmp_is_disk_of_ephemeral_storage_not_memory(walled: Walled, memory: int) -> None:
    name = unique(walled, f"fill-{memory}")
    python_function(walled.client(), name, FILL, MemorySize=memory, Timeout=60)
    result = invoke(walled, name, {"mb": 600}, LogType="Tail")
    assert "FunctionError" not in result, result["body"]  # not killed for memory
    assert result["body"]["error"] == "ENOSPC", result["body"]
    assert 508 <= result["body"]["written_mb"] <= 512, result["body"]
    assert 508 <= result["body"]["free_mb"] <= 512  # empty again once the file is gone


@BOTH_PATHS
def test_ten_gigabytes_of_ephemeral_storage_hold_two(walled: Walled) -> None:
    name = unique(walled, "fill-big")
    python_function(
        walled.client(), name, FILL, MemorySize=256, Timeout=120, EphemeralStorage={"Size": 10240}
    )
    result = invoke(walled, name, {"mb": 2048})
    assert "FunctionError" not in result, result["body"]
    assert result["body"] == {"written_mb": 2048, "error": None,
                              "free_mb": result["body"]["free_mb"]}  # fmt: skip
    assert 10200 <= result["body"]["free_mb"] <= 10240


@ONE_PATH
def test_dns_goes_through_the_gateway_from_every_network(walled: Walled) -> None:
    for config in ({}, vpc("subnet-a")):  # a VPC subnet without a NAT resolves too
        name = f"db-{random.randrange(10**6)}.example.internal"
        found = invoke(walled, _reacher(walled, **config), {"resolve": name})["body"]
        assert found["resolved"] == FakeDns.ANSWER, found
        assert name in walled.dns.asked
