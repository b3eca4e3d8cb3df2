"""Server settings. Every default is a command-line flag and a LAMINA_* variable."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ACCOUNT = "000000000000"
DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 9700
    data_dir: Path = Path(".lamina")
    keep_alive: float = 600.0  # seconds an idle environment is kept (a platform delay)
    time_scale: float = 1.0
    account_concurrency: int = 1000
    unreserved_floor: int = 100
    burst: int = 1000  # new environments a function may add per burst window
    burst_window: float = 10.0  # seconds (a platform delay)
    request_rate: float = 10.0  # sync invokes per second per unit of concurrency; 0 = off
    python: str = ""  # interpreter for python3.x runtimes; empty = the one running Lamina
    runtimes: tuple[str, ...] = ()  # NAME=PATH: the interpreter of a runtime
    fork_server: bool = True  # fork python3.x environments from a fork server
    xray_port: int = 2000  # UDP port of the X-Ray daemon endpoint on 127.0.0.1; 0 = any free
    isolation: str = "auto"  # auto | namespaces | process | none (sandbox/isolation.py)
    host_access: tuple[int, ...] = ()  # host loopback ports environments reach (namespaces)
    nat_subnets: tuple[str, ...] = ()  # VPC subnets with a route out (a NAT gateway)
    freeze: bool = True  # freeze environments between invocations (cgroup freezer)
    max_pids: int = 0  # processes of all environments together; 0 = derived from the host
    max_memory_mb: int = 0  # memory of all environments together; 0 = derived from the host
    dns: str = ""  # ADDRESS[:PORT] environments' DNS goes to; "" = the host's resolver
    auth: str = "auto"  # on | off | auto (off on a loopback address, on otherwise)
    regions: tuple[str, ...] = ()  # regions served; empty = every region AWS has
    max_account_concurrency: int = 10_000  # quota increases up to this are approved at once
    credential_lifetime: float = 21_600.0  # seconds an environment's credentials are valid
    max_connections: int = 0  # client connections at once; 0 = what the descriptors allow
    header_timeout: float = 10.0  # seconds a request's headers may take to arrive
    body_timeout: float = 30.0  # longest silence inside a request body
    # A cluster: counts, leases and heartbeats in Redis (empty: this process counts alone).
    redis_url: str = ""  # redis://HOST:PORT/DB
    node_name: str = ""  # this node's name in the cluster; empty = HOST:PORT
    advertise: str = ""  # the address other nodes reach it at; empty = http://HOST:PORT
    heartbeat: float = 2.0  # seconds between heartbeats (real seconds, never scaled)
    lease_expiry: float = 6.0  # seconds a node's leases outlive its last heartbeat
    database: str = ""  # postgresql://...: the cluster's shared store; "" = SQLite files
    s3_objects: str = ""  # where S3 keeps object bytes; "" = <data dir>/s3/objects


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def auth_mode(settings: Settings) -> str:
    """`on` or `off`: `auto` is off on a loopback address, on otherwise."""
    if settings.auth in ("on", "off"):
        return settings.auth
    return "off" if is_loopback(settings.host) else "on"


def env_default(name: str, default: str) -> str:
    return os.environ.get(f"LAMINA_{name}", default)


def env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(f"LAMINA_{name}")
    if value is None or not value.strip():
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")
