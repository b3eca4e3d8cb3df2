"""Every environment in a network namespace of its own, on networks this server owns.

Addresses: the server takes a free /16 of 100.64.0.0/10 (shared address space, unused on
hosts as a rule; one at random) under a host-wide lock. Its first /17 is the *default
network*, a bridge for environments of functions without VpcConfig, whose ports cannot
reach each other (the bridge forwards nothing between them); each VPC subnet a function
names gets a /24 of the second half, on a bridge of its own, whose environments do reach
each other.

What an environment reaches:
  - its Runtime API, 127.0.0.1:9001 inside its own namespace (Lamina serves it there);
  - Lamina's API at the gateway, `http://<gateway>:<port>` (AWS_ENDPOINT_URL), and the X-Ray
    daemon endpoint, from every network, VPC or not (as a VPC endpoint would be); ports
    of the host's loopback the operator opens (`--host-access`), at `host.lamina.internal`
    (the gateway, in the environment's /etc/hosts); DNS, through the gateway to the host's
    resolver;
  - the outside world (masqueraded), from the default network and from subnets given a
    NAT (`--nat-subnet`); nothing outside from other subnets;
  - nothing else: not the host's loopback nor any of its addresses (another Lamina
    server's gateway included), not other environments (but a subnet's peers), not
    Lamina's other ports, nothing of 100.64.0.0/10 but its own networks (other servers'
    networks, or where they were a moment ago: gone, they are not the host's any more).
The rules are an nftables table of this server's (`inet lamina_<pid>`, plus a bridge
table that drops what the default bridge's ports send each other); IPv4 only (IPv6 is off in every
environment's namespace).

Namespaces are prepared ahead by a thread (a namespace, a veth pair whose host end is on
the network's bridge, the inner end `eth0`), so a cold start only enters one: its init
opens `/proc/<lamina>/fd/<n>`, calls setns() and addresses `eth0` (address, netmask, up,
default route through the gateway: a few ioctls). Names
(bridges `lm<pid>d`, `lm<pid>s<k>`, veths `lm<pid>v<n>` / `lm<pid>w<n>`, the tables,
/run/lamina-<pid>) carry the server's pid; what a killed server leaves, its janitor
removes (veths go with their namespaces).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import ipaddress
import logging
import os
import random
import shutil
import subprocess
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("lamina.sandbox")

SHARED_SPACE = ipaddress.IPv4Network("100.64.0.0/10")
LOCK = Path("/run/lamina-networks.lock")
HOSTS_NAME = "host.lamina.internal"
DEFAULT_POOL = 8  # prepared namespaces of the default network
SUBNET_POOL = 2  # of each VPC subnet, once one of its environments started
CLONE_NEWNET = 0x40000000
RETRY_S = 1.0  # after a failure, the pools are refilled again this much later
REFILL_DELAY_S = 0.05  # a pool not empty yet is refilled after this pause

_libc = ctypes.CDLL(None, use_errno=True)


class NetworkUnavailable(Exception):
    """Environments cannot have networks of their own here (the message says why)."""


@dataclass
class Lease:
    """A prepared namespace handed to one environment: its init enters `path` and gives
    its `eth0` the address (`eth0` of the spec)."""

    network: Segment
    fd: int
    address: str

    @property
    def path(self) -> str:
        return f"/proc/{os.getpid()}/fd/{self.fd}"

    @property
    def eth0(self) -> list[Any]:
        """[address, prefix length, gateway] for lamina/runtimes/isolate.py."""
        return [self.address, self.network.prefix.prefixlen, self.network.gateway]

    def handed_over(self) -> None:
        """The environment is in it now (or gone): Lamina's reference can go."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def release(self) -> None:
        """The environment is gone: its address is free again."""
        self.handed_over()
        self.network.free(self.address)


@dataclass
class Segment:
    """One network: a bridge, a prefix, its addresses and its prepared namespaces."""

    name: str  # the bridge
    prefix: ipaddress.IPv4Network
    gateway: str
    target: int
    index: int = 0  # the bridge's interface index
    ready: deque[Lease] = field(default_factory=deque)
    _free: deque[str] = field(default_factory=deque)
    _next: int = 2  # host numbers handed out so far (1 is the gateway)

    def allocate(self) -> str:
        if self._free:
            return self._free.popleft()
        if self._next >= self.prefix.num_addresses - 1:
            raise NetworkUnavailable(f"network {self.prefix} is full")
        address = str(self.prefix.network_address + self._next)
        self._next += 1
        return address

    def free(self, address: str) -> None:
        self._free.append(address)  # least recently freed first: its old veth is long gone


class Network:
    """This server's networks and their rules; prepares namespaces on a thread of its own."""

    def __init__(
        self,
        api: tuple[str, int],
        host_access: tuple[int, ...] = (),
        nat_subnets: frozenset[str] = frozenset(),
        run_dir: Path | None = None,
        dns: str = "",
    ) -> None:
        self.pid = os.getpid()
        self.api = api
        self.host_access = host_access
        self.nat_subnets = nat_subnets
        self.table = f"lamina_{self.pid}"
        self.block = ipaddress.IPv4Network("100.64.0.0/16")
        self.gateway = ""
        self.default: Segment | None = None
        self.subnets: dict[str, Segment] = {}
        self.run_dir = run_dir or Path(f"/run/lamina-{self.pid}")
        self.dns = dns or _host_nameserver()  # ADDRESS[:PORT] of the resolver
        if self.dns and ":" not in self.dns:
            self.dns += ":53"
        self._lock = threading.Condition()
        self._waiters: deque[tuple[Segment, asyncio.AbstractEventLoop, asyncio.Future[Lease]]]
        self._waiters = deque()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._deferred = False
        self._counter = 0
        self._ipr: Any = None
        self._host_ns = -1
        self._udp: list[int] = []

    # Start and stop ---------------------------------------------------------------------
    def start(self) -> None:
        """Take a /16, make the default network and the rules; raise NetworkUnavailable."""
        if shutil.which("nft") is None:
            raise NetworkUnavailable("nft (nftables) is not installed")
        try:
            from pyroute2 import IPRoute
        except ImportError as exc:
            raise NetworkUnavailable(f"pyroute2 is not installed: {exc}") from exc
        self._host_ns = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._ipr = IPRoute()
        try:
            with _host_lock():
                self.block = self._free_block()
                self.gateway = str(self.block.network_address + 1)
                default = ipaddress.IPv4Network(f"{self.block.network_address}/17")
                self.default = self._segment(f"lm{self.pid}d", default, DEFAULT_POOL)
            _sysctl("net/ipv4/ip_forward", "1")
            self._rules()
        except BaseException:
            self.close()
            raise
        self._files()
        self._thread = threading.Thread(target=self._prepare_loop, name="lamina-netns", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop preparing, drop what was prepared, remove the bridges and the rules."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(5)
        for segment in self._segments():
            while segment.ready:
                segment.ready.popleft().handed_over()
        remove(self.pid)
        if self._ipr is not None:  # pyroute2 runs a loop of its own: not inside asyncio's
            closing = threading.Thread(target=self._ipr.close, name="lamina-netns-close")
            closing.start()
            closing.join(5)
            self._ipr = None
        if self._host_ns >= 0:
            os.close(self._host_ns)
            self._host_ns = -1
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def _segments(self) -> list[Segment]:
        return [s for s in (self.default, *self.subnets.values()) if s is not None]

    def _free_block(self) -> ipaddress.IPv4Network:
        used = set()
        for message in self._ipr.get_addr(family=2):
            address = ipaddress.ip_address(message.get_attr("IFA_ADDRESS"))
            if address in SHARED_SPACE:
                used.add(ipaddress.IPv4Network(f"{address}/16", strict=False))
        free = [block for block in SHARED_SPACE.subnets(new_prefix=16) if block not in used]
        if free:
            # At random: a block another server has just left is seldom taken again at
            # once, so what still travels to its old addresses finds no new environments.
            return random.choice(free)
        raise NetworkUnavailable("every /16 of 100.64.0.0/10 is in use on this host")

    def _segment(self, name: str, prefix: ipaddress.IPv4Network, target: int) -> Segment:
        gateway = str(prefix.network_address + 1)
        self._ipr.link("add", ifname=name, kind="bridge")
        index = self._ipr.link_lookup(ifname=name)[0]
        with contextlib.suppress(OSError):
            _sysctl(f"net/ipv6/conf/{name}/disable_ipv6", "1")
        _sysctl(f"net/ipv4/conf/{name}/route_localnet", "1")  # DNAT to the host's loopback
        self._ipr.addr("add", index=index, address=gateway, prefixlen=prefix.prefixlen)
        self._ipr.link("set", index=index, state="up")
        return Segment(name, prefix, gateway, target, index=index)

    def _rules(self) -> None:
        block, gateway = self.block, self.gateway
        api_host, api_port = self.api
        if api_host in ("", "0.0.0.0", "localhost"):
            api_host = "127.0.0.1"
        host_ports = ", ".join(str(port) for port in self.host_access)
        tcp = {api_port, *self.host_access}
        dns = udp_granted = ""
        if self.dns:
            dns = (
                f"ip saddr {block} ip daddr {gateway} meta l4proto {{ tcp, udp }} th dport 53 "
                f"dnat ip to {self.dns}"
            )
            tcp.add(53)
            udp_granted = "elements = { 53 }"
        tcp_granted = ", ".join(str(port) for port in sorted(tcp))
        # Granted: what reached this server's gateway at a port it opens, and was DNATed
        # (checked on the connection's original tuple, whoever did the DNAT). Everything
        # else from this server's block to any of the host's addresses is dropped in
        # input; forwarded, it may go out (egress networks) but never into the shared
        # space, where other servers' networks are, or were a moment ago: an address of a
        # server that just stopped is no longer the host's and would be routed outside.
        granted = f"ip saddr {block} ct status dnat ct original ip daddr {gateway}"
        ruleset = f"""
table inet {self.table} {{
  set egress {{ type ipv4_addr; flags interval; elements = {{ {self.default.prefix if self.default else block} }} }}
  set tcp_granted {{ type inet_service; elements = {{ {tcp_granted} }} }}
  set udp_granted {{ type inet_service; {udp_granted} }}
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    ip saddr {block} ip daddr {gateway} tcp dport {api_port} dnat ip to {api_host}:{api_port}
    {f"ip saddr {block} ip daddr {gateway} tcp dport {{ {host_ports} }} dnat ip to 127.0.0.1" if host_ports else ""}
    {dns}
  }}
  chain granted {{
    meta l4proto tcp ct original proto-dst @tcp_granted accept
    meta l4proto udp ct original proto-dst @udp_granted accept
  }}
  chain input {{
    type filter hook input priority filter; policy accept;
    {granted} jump granted
    ip saddr {block} drop
  }}
  chain peers {{
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    ip daddr {block} ct state established,related accept
    ip saddr {block} ip daddr {block} jump peers
    ip daddr {block} drop
    {granted} jump granted
    ip saddr {block} ip daddr {SHARED_SPACE} drop
    ip saddr @egress accept
    ip saddr {block} drop
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr @egress ip daddr != {block} masquerade
  }}
}}
table bridge {self.table} {{
  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname "lm{self.pid}v*" drop
  }}
}}
"""  # noqa: E501
        _nft(ruleset)

    def expose_udp(self, port: int) -> None:
        """Make the host's loopback UDP `port` reachable at the gateway (X-Ray's daemon)."""
        if port in self._udp or not self.gateway:
            return
        self._udp.append(port)
        _nft(
            f"add rule inet {self.table} prerouting ip saddr {self.block} ip daddr "
            f"{self.gateway} udp dport {port} dnat ip to 127.0.0.1:{port}\n"
            f"add element inet {self.table} udp_granted {{ {port} }}\n"
        )

    def _files(self) -> None:
        """The /etc/hosts and /etc/resolv.conf every environment sees."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.chmod(0o755)
        hosts = f"127.0.0.1\tlocalhost\n::1\tlocalhost\n{self.gateway}\t{HOSTS_NAME}\n"
        (self.run_dir / "hosts").write_text(hosts)
        resolv = f"nameserver {self.gateway}\n" if self.dns else ""
        (self.run_dir / "resolv.conf").write_text(resolv)

    @property
    def files(self) -> list[tuple[str, str]]:
        """(host file, path inside the environment) pairs to bind, read-only."""
        return [
            (str(self.run_dir / "hosts"), "/etc/hosts"),
            (str(self.run_dir / "resolv.conf"), "/etc/resolv.conf"),
        ]

    def api_endpoint(self) -> str:
        return f"http://{self.gateway}:{self.api[1]}"

    # Subnets ----------------------------------------------------------------------------
    def _subnet(self, subnet_id: str) -> Segment:
        """The network of a VPC subnet (made on first use; called on the thread)."""
        found = self.subnets.get(subnet_id)
        if found is not None:
            return found
        number = len(self.subnets)
        if number >= 127:
            raise NetworkUnavailable("this server has networks for 127 subnets already")
        base = self.block.network_address + (128 + number) * 256
        prefix = ipaddress.IPv4Network(f"{base}/24")
        segment = self._segment(f"lm{self.pid}s{number}", prefix, SUBNET_POOL)
        commands = f"add rule inet {self.table} peers ip saddr {prefix} ip daddr {prefix} accept\n"
        if subnet_id in self.nat_subnets:
            commands += f"add element inet {self.table} egress {{ {prefix} }}\n"
        _nft(commands)
        self.subnets[subnet_id] = segment
        return segment

    # Leases -----------------------------------------------------------------------------
    async def take(self, subnet_id: str | None) -> Lease:
        """A prepared namespace on the default network or on `subnet_id`'s."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Lease] = loop.create_future()
        with self._lock:
            if self._closed:
                raise NetworkUnavailable("the server is stopping")
            segment = self.default if subnet_id is None else self.subnets.get(subnet_id)
            if segment is not None and segment.ready:
                lease = segment.ready.popleft()
                self._lock.notify_all()  # make another
                return lease
            self._waiters.append((segment or _Pending(subnet_id), loop, future))  # type: ignore[arg-type]
            self._lock.notify_all()
        return await future

    def _prepare_loop(self) -> None:
        """The thread: serve waiting environments first, then fill the pools."""
        while True:
            with self._lock:
                while not self._closed and not self._waiters and not self._wanting():
                    self._lock.wait()
                if self._closed:
                    break
                if not self._waiters and self._refill_later():
                    continue
                waiter = self._waiters.popleft() if self._waiters else None
                segment = waiter[0] if waiter else self._wanting()
            try:
                if isinstance(segment, _Pending):
                    segment = self._subnet(segment.subnet_id)
                assert segment is not None
                lease = self._prepare(segment)
            except Exception as exc:  # reported to the environment that waits
                log.warning("could not prepare a network namespace: %s", exc)
                if waiter is not None:
                    _settle(waiter[1], waiter[2], exc)
                else:
                    with self._lock:  # refilling the pool: try again later, not at once
                        self._lock.wait(RETRY_S)
                continue
            if waiter is not None:
                _settle(waiter[1], waiter[2], lease)
            else:
                with self._lock:
                    segment.ready.append(lease)
        for _, loop, future in self._waiters:
            _settle(loop, future, NetworkUnavailable("the server is stopping"))

    def _refill_later(self) -> bool:
        """A pool that is short but not empty is refilled a little later (called locked),
        so that the cold start that took from it is not slowed by its refill."""
        segment = self._wanting()
        if segment is None or not segment.ready or self._deferred:
            self._deferred = False
            return False
        self._deferred = True  # once: the next turn refills
        self._lock.wait(REFILL_DELAY_S)
        return True

    def _wanting(self) -> Segment | None:
        for segment in self._segments():
            if len(segment.ready) < segment.target:
                return segment
        return None

    def _prepare(self, segment: Segment) -> Lease:
        """A namespace with `eth0` on `segment`'s bridge (thread); the environment's init
        addresses and routes it (isolate.py: ioctls there cost less than netlink here)."""
        address = segment.allocate()
        self._counter += 1
        # Ports of the default network are lm<pid>v<n> (the bridge table drops what they
        # send each other), of VPC subnets lm<pid>w<n>.
        kind = "v" if segment is self.default else "w"
        veth = f"lm{self.pid}{kind}{_base36(self._counter)}"
        if _libc.unshare(CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
        try:
            fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY)  # inherited by nothing
            os.set_inheritable(fd, False)
            for name in ("all", "default"):
                _sysctl(f"net/ipv6/conf/{name}/disable_ipv6", "1")
        finally:
            if _libc.setns(self._host_ns, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the host's network")
        try:
            self._ipr.link(
                "add",
                ifname=veth,
                kind="veth",
                peer={"ifname": "eth0", "net_ns_fd": fd},
                master=segment.index,
                state="up",
            )
        except BaseException:
            os.close(fd)
            segment.free(address)
            raise
        return Lease(segment, fd, address)


@dataclass
class _Pending:
    """A subnet whose network the thread makes first."""

    subnet_id: str


def _settle(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Lease], value: Any) -> None:
    def settle() -> None:
        if future.done():
            if isinstance(value, Lease):
                value.release()
            return
        if isinstance(value, BaseException):
            future.set_exception(value)
        else:
            future.set_result(value)

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(settle)


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
        if not number:
            return text


def _sysctl(name: str, value: str) -> None:
    with open(f"/proc/sys/{name}", "w") as out:
        out.write(value)


def _nft(commands: str) -> None:
    done = subprocess.run(
        ["nft", "-f", "-"], input=commands, capture_output=True, text=True, timeout=20
    )
    if done.returncode != 0:
        raise NetworkUnavailable(f"nft refused the rules: {done.stderr.strip()}")


def _host_nameserver() -> str:
    """The host's first IPv4 resolver (from /etc/resolv.conf), or ""."""
    with contextlib.suppress(OSError):
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                with contextlib.suppress(ValueError):
                    if ipaddress.ip_address(parts[1]).version == 4:
                        return parts[1]
    return ""


@contextlib.contextmanager
def _host_lock() -> Any:
    """One server at a time picks a /16 and makes its bridge (host-wide)."""
    with open(LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check() -> str:
    """Why environments cannot have networks with a way out here ("" if they can)."""
    if shutil.which("nft") is None:
        return "nft (nftables) is not installed: environments are offline"
    try:
        import pyroute2  # noqa: F401
    except ImportError:
        return "pyroute2 is not installed: environments are offline"
    if not os.access("/proc/sys/net/ipv4/ip_forward", os.W_OK):
        return "cannot turn on IPv4 forwarding (not root?): environments are offline"
    return ""


def remove(pid: int) -> None:
    """Remove what the server `pid` made: its tables and its bridges (veths go with their
    namespaces). Standard tools only: the janitor calls it too (through isolate.py)."""
    from lamina.runtimes.cleanup import remove_network

    remove_network(pid)


def sweep() -> None:
    """Remove networks of servers that are gone (their janitor was killed too)."""
    from lamina.runtimes.cleanup import stale_network_pids

    for pid in stale_network_pids():
        remove(pid)
