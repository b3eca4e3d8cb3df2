"""`lamina serve | invoke | logs | top | doctor | plan | trace | accounts | db`."""

from __future__ import annotations

import argparse
import base64
import os
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

from lamina.config import Settings, env_default, env_flag


def _serve_parser(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="run the Lamina server")
    serve.add_argument("--host", default=env_default("HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(env_default("PORT", "9700")))
    serve.add_argument("--data-dir", type=Path, default=Path(env_default("DATA_DIR", ".lamina")))
    _cluster_args(serve)
    serve.add_argument(
        "--database",
        default=env_default("DATABASE_URL", ""),
        metavar="postgresql://...",
        help="cluster mode: keep every durable record in this PostgreSQL database, shared "
        "by every node (default: SQLite files in the data directory)",
    )
    serve.add_argument(
        "--s3-objects",
        default=env_default("S3_OBJECTS", ""),
        metavar="DIR",
        help="where S3 keeps object bytes (default: s3/objects in the data directory); with "
        "--database, a directory every node shares",
    )
    serve.add_argument(
        "--keep-alive",
        type=float,
        default=float(env_default("KEEP_ALIVE", "600")),
        help="seconds an idle execution environment is kept (default 600)",
    )
    serve.add_argument(
        "--time-scale",
        type=float,
        default=float(env_default("TIME_SCALE", "1")),
        help="multiply every platform delay by this factor (tests, demos)",
    )
    serve.add_argument(
        "--account-concurrency", type=int, default=int(env_default("ACCOUNT_CONCURRENCY", "1000"))
    )
    serve.add_argument(
        "--unreserved-floor", type=int, default=int(env_default("UNRESERVED_FLOOR", "100"))
    )
    serve.add_argument(
        "--burst",
        type=int,
        default=int(env_default("BURST", "1000")),
        help="new execution environments a function may add per burst window (default 1000)",
    )
    serve.add_argument(
        "--burst-window",
        type=float,
        default=float(env_default("BURST_WINDOW", "10")),
        help="seconds over which the burst refills (default 10)",
    )
    serve.add_argument(
        "--request-rate",
        type=float,
        default=float(env_default("REQUEST_RATE", "10")),
        help="sync invokes per second per unit of concurrency (default 10; 0 turns it off)",
    )
    serve.add_argument(
        "--python",
        default=env_default("PYTHON", ""),
        help="interpreter for python3.x functions (default: the one running Lamina)",
    )
    _runtime_arg(serve)
    serve.add_argument(
        "--fork-server",
        action=argparse.BooleanOptionalAction,
        default=env_flag("FORK_SERVER", True),
        help="fork python3.x environments from a process that has the runtime imported "
        "(fast cold starts; default on); --no-fork-server starts a new interpreter for each",
    )
    serve.add_argument(
        "--xray-port",
        type=int,
        default=int(env_default("XRAY_PORT", "2000")),
        help="UDP port of the X-Ray daemon endpoint on 127.0.0.1 that functions send "
        "segments to (AWS_XRAY_DAEMON_ADDRESS; default 2000; 0 picks a free one)",
    )
    serve.add_argument(
        "--max-connections",
        type=int,
        default=int(env_default("MAX_CONNECTIONS", "0")),
        help="client connections served at once; more are answered 503 at once (default: "
        "as many as the descriptor limit, raised to its hard limit, allows, at most 10,000)",
    )
    serve.add_argument(
        "--header-timeout",
        type=float,
        default=float(env_default("HEADER_TIMEOUT", "10")),
        help="seconds a request's headers may take to arrive (then 408; default 10)",
    )
    serve.add_argument(
        "--body-timeout",
        type=float,
        default=float(env_default("BODY_TIMEOUT", "30")),
        help="longest pause, in seconds, inside a request body (then closed; default 30)",
    )
    serve.add_argument(
        "--isolation",
        choices=("auto", "namespaces", "process", "none"),
        default=env_default("ISOLATION", "auto"),
        help="how environments are contained: namespaces + cgroups, process (rlimits only), "
        "none; auto (default) takes namespaces where the host allows (see lamina doctor)",
    )
    serve.add_argument(
        "--host-access",
        default=env_default("HOST_ACCESS", ""),
        help="PORT[,PORT...] of the host's loopback that environments reach at "
        "host.lamina.internal (a database on your machine, say); none by default",
    )
    serve.add_argument(
        "--nat-subnet",
        action="append",
        default=[s for s in env_default("NAT_SUBNET", "").split(",") if s],
        help="a VPC subnet id (subnet-...) whose environments may reach the outside world, "
        "as through a NAT gateway; repeatable. Other subnets reach only their peers",
    )
    serve.add_argument(
        "--dns",
        default=env_default("DNS", ""),
        help="ADDRESS[:PORT] of the resolver environments' DNS queries go to, through their "
        "gateway (default: the host's first nameserver)",
    )
    serve.add_argument(
        "--freeze",
        action=argparse.BooleanOptionalAction,
        default=env_flag("FREEZE", True),
        help="freeze an environment's processes between invocations, as Lambda does "
        "(default on); --no-freeze lets them run",
    )
    serve.add_argument(
        "--max-pids",
        type=int,
        default=int(env_default("MAX_PIDS", "0")),
        help="processes and threads of all environments together (default: half the host's "
        "pid_max)",
    )
    serve.add_argument(
        "--max-memory",
        type=int,
        default=int(env_default("MAX_MEMORY", "0")),
        help="MB of memory for all environments together (default: the host's memory less "
        "a quarter, at most 4 GB kept back)",
    )
    _auth_args(serve)


def _cluster_args(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--redis",
        default=env_default("REDIS_URL", ""),
        help="redis://HOST:PORT/DB: count concurrency with the other nodes of a cluster there "
        "(default: this process counts alone)",
    )
    serve.add_argument(
        "--node-name",
        default=env_default("NODE_NAME", ""),
        help="this node's name in the cluster (default HOST:PORT)",
    )
    serve.add_argument(
        "--advertise",
        default=env_default("ADVERTISE", ""),
        help="the URL other nodes reach this one at (default http://HOST:PORT)",
    )
    serve.add_argument(
        "--heartbeat",
        type=float,
        default=float(env_default("HEARTBEAT", "2")),
        help="seconds between a node's heartbeats in the cluster (default 2)",
    )
    serve.add_argument(
        "--lease-expiry",
        type=float,
        default=float(env_default("LEASE_EXPIRY", "6")),
        help="seconds a node's leases outlive its last heartbeat (default 6)",
    )


def _auth_args(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--auth",
        choices=("on", "off", "auto"),
        default=env_default("AUTH", "auto"),
        help="on: every request's SigV4 signature is verified; off: nothing is, the access "
        "key id names the account; auto (default): off on a loopback address, on otherwise",
    )
    serve.add_argument(
        "--regions",
        default=env_default("REGIONS", ""),
        help="comma-separated regions served (default: every region AWS has)",
    )
    serve.add_argument(
        "--max-account-concurrency",
        type=int,
        default=int(env_default("MAX_ACCOUNT_CONCURRENCY", "10000")),
        help="quota increase requests up to this are approved and applied at once; larger "
        "ones wait for `lamina accounts approve` (default 10000)",
    )
    serve.add_argument(
        "--credential-lifetime",
        type=float,
        default=float(env_default("CREDENTIAL_LIFETIME", "21600")),
        help="seconds the temporary credentials of an environment's execution role are "
        "valid; an environment is not reused past them (default 21600)",
    )


def _runtime_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runtime",
        action="append",
        metavar="NAME=PATH",
        default=[item for item in env_default("RUNTIMES", "").split(",") if item.strip()],
        help="the interpreter of a runtime, e.g. nodejs22.x=/opt/node22/bin/node or "
        "python3.12=/usr/bin/python3.12 (repeatable; LAMINA_RUNTIMES takes a comma-separated "
        "list); default: found on PATH or in pyenv's versions",
    )


def _client_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", default=env_default("ENDPOINT", "http://127.0.0.1:9700"))
    parser.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lamina", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _serve_parser(commands)
    invoke = commands.add_parser("invoke", help="invoke a function and print its answer")
    invoke.add_argument("name")
    invoke.add_argument("--payload", default="{}", help="the event, as JSON")
    _client_args(invoke)
    logs = commands.add_parser("logs", help="print a function's logs")
    logs.add_argument("name")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new lines")
    _client_args(logs)
    top = commands.add_parser(
        "top", help="live view of concurrency per function, throttles and cold starts"
    )
    top.add_argument("--interval", type=float, default=1.0, help="seconds between frames")
    top.add_argument("--once", action="store_true", help="print one frame and exit")
    top.add_argument("--iterations", type=int, default=0, help="stop after this many frames")
    top.add_argument(
        "--account",
        default="",
        help="the account shown (default: the one of the AWS credentials found, as boto3 "
        "finds them; without any, 000000000000)",
    )
    _client_args(top)
    doctor = commands.add_parser(
        "doctor", help="which isolation backend this host allows, and why (or why not)"
    )
    doctor.add_argument("--python", default=env_default("PYTHON", ""))
    _runtime_arg(doctor)
    from lamina.plan.arguments import add_parser as add_plan
    from lamina.plan.export import add_parser as add_trace

    add_plan(commands)
    add_trace(commands)
    from lamina.accounts_cli import add_parser as accounts_parser

    accounts_parser(commands)
    from lamina.cluster.cli import add_parser as cluster_parser

    cluster_parser(commands)
    from lamina.db_cli import add_parser as db_parser

    db_parser(commands)
    return parser


def doctor(args: argparse.Namespace) -> int:
    from lamina.sandbox.diagnosis import diagnose
    from lamina.sandbox.isolation import PROCESS_CANNOT

    found = diagnose(args.python or sys.executable)
    for name, ok, detail in found.checks:
        print(f"  {'ok  ' if ok else 'FAIL'}  {name}" + (f": {detail}" if detail else ""))
    from lamina.sandbox import runtimes

    for line in runtimes.report(runtimes.configured(args.python, args.runtime)):
        print(line)
    if found.namespaces_ok:
        print("isolation: namespaces (what `lamina serve` uses by default here)")
        return 0
    print(f"isolation: process, the fallback ({found.why_not})")
    print("  not enforced by it:")
    for item in PROCESS_CANNOT:
        print(f"    - {item}")
    return 1


def invoke(args: argparse.Namespace) -> int:
    from lamina.client_auth import headers

    url = f"{args.endpoint}/2015-03-31/functions/{quote(args.name, safe='')}/invocations"
    body = args.payload.encode()
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "X-Amz-Log-Type": "Tail",
            "Content-Type": "application/json",
            **headers("POST", url, args.region, body),
        },
    )
    try:
        with urllib.request.urlopen(request) as response:
            body = response.read()
            tail = response.headers.get("X-Amz-Log-Result")
            error = response.headers.get("X-Amz-Function-Error")
    except urllib.error.HTTPError as exc:
        print(exc.read().decode(errors="replace"), file=sys.stderr)
        return 1
    except urllib.error.URLError as exc:
        print(f"cannot reach Lamina at {args.endpoint}: {exc.reason}", file=sys.stderr)
        return 1
    if tail:
        sys.stderr.write(base64.b64decode(tail).decode(errors="replace"))
    print(body.decode(errors="replace"))
    return 1 if error else 0


def logs(args: argparse.Namespace) -> int:
    from lamina.client_auth import headers

    query = f"region={args.region}" + ("&follow=1" if args.follow else "")
    url = f"{args.endpoint}/_lamina/logs/{quote(args.name, safe='')}?{query}"
    try:
        request = urllib.request.Request(url, headers=headers("GET", url, args.region))
        with urllib.request.urlopen(request) as response:
            for line in response:
                sys.stdout.write(line.decode(errors="replace"))
                sys.stdout.flush()
    except urllib.error.URLError as exc:
        print(f"cannot reach Lamina at {args.endpoint}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


def _exit_when_signalled(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _limits_problem(args: argparse.Namespace) -> str:
    if args.account_concurrency < 1:
        return "--account-concurrency must be at least 1"
    if args.max_connections < 0 or args.header_timeout <= 0 or args.body_timeout <= 0:
        return "--max-connections must not be negative, the timeouts must be positive"
    if not 0 <= args.unreserved_floor <= args.account_concurrency:
        return "--unreserved-floor must be between 0 and --account-concurrency"
    if args.burst < 1 or args.burst_window <= 0:
        return "--burst must be at least 1 and --burst-window positive"
    if args.request_rate < 0:
        return "--request-rate must not be negative (0 turns it off)"
    if not 0 <= args.xray_port <= 65535:
        return "--xray-port must be between 0 and 65535"
    try:
        from lamina.sandbox.runtimes import parse_overrides

        parse_overrides(args.runtime)
    except ValueError as exc:
        return str(exc)
    try:
        ports = _ports(args.host_access)
    except ValueError:
        return "--host-access takes PORT[,PORT...] (1-65535)"
    if args.port in ports:
        return "--host-access cannot open Lamina's own port (environments reach its API anyway)"
    if any(not subnet.startswith("subnet-") for subnet in args.nat_subnet):
        return "--nat-subnet takes a subnet id (subnet-...)"
    if args.max_pids < 0 or args.max_memory < 0:
        return "--max-pids and --max-memory must not be negative (0: derived from the host)"
    if args.redis and not args.redis.startswith(("redis://", "rediss://", "unix://")):
        return "--redis takes redis://HOST:PORT/DB"
    if not 0 < args.heartbeat < args.lease_expiry:
        return "--heartbeat must be positive and shorter than --lease-expiry"
    if args.credential_lifetime <= 0:
        return "--credential-lifetime must be positive"
    if args.max_account_concurrency < 1:
        return "--max-account-concurrency must be at least 1"
    if args.regions:
        from lamina.api.auth import known_regions

        unknown = sorted(set(_regions(args.regions)) - known_regions())
        if unknown:
            return f"--regions: AWS has no region {', '.join(unknown)}"
    return ""


def _regions(text: str) -> tuple[str, ...]:
    return tuple(r.strip() for r in text.split(",") if r.strip())


def _ports(text: str) -> tuple[int, ...]:
    ports = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    if any(not 1 <= port <= 65535 for port in ports):
        raise ValueError(text)
    return ports


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        problem = _limits_problem(args)
        if problem:
            parser.error(problem)
        from lamina.server import run

        # The server handles SIGTERM / SIGINT itself once it runs (a graceful stop, exit 0);
        # before that, one arriving during the start exits 0 too, not death by signal.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _exit_when_signalled)
        run(
            Settings(
                host=args.host,
                port=args.port,
                data_dir=args.data_dir,
                keep_alive=args.keep_alive,
                time_scale=args.time_scale,
                account_concurrency=args.account_concurrency,
                unreserved_floor=args.unreserved_floor,
                burst=args.burst,
                burst_window=args.burst_window,
                request_rate=args.request_rate,
                python=args.python,
                runtimes=tuple(args.runtime),
                fork_server=args.fork_server,
                xray_port=args.xray_port,
                isolation=args.isolation,
                host_access=_ports(args.host_access),
                nat_subnets=tuple(args.nat_subnet),
                freeze=args.freeze,
                max_pids=args.max_pids,
                max_memory_mb=args.max_memory,
                dns=args.dns,
                auth=args.auth,
                regions=_regions(args.regions),
                max_account_concurrency=args.max_account_concurrency,
                credential_lifetime=args.credential_lifetime,
                max_connections=args.max_connections,
                header_timeout=args.header_timeout,
                body_timeout=args.body_timeout,
                redis_url=args.redis,
                node_name=args.node_name,
                advertise=args.advertise,
                heartbeat=args.heartbeat,
                lease_expiry=args.lease_expiry,
                database=args.database,
                s3_objects=args.s3_objects,
            )
        )
        return 0
    if args.command == "db":
        from lamina.db_cli import run as db

        return db(args)
    if args.command == "accounts":
        from lamina.accounts_cli import run as accounts

        return accounts(args)
    if args.command == "cluster":
        from lamina.cluster.cli import run as cluster

        return cluster(args)
    if args.command == "invoke":
        return invoke(args)
    if args.command == "doctor":
        return doctor(args)
    if args.command == "plan":
        from lamina.plan.command import run as plan

        return plan(args)
    if args.command == "trace":
        from lamina.plan.export import run as export

        return export(args)
    if args.command == "top":
        from lamina.top import run as top

        return top(
            args.endpoint,
            args.region,
            args.account,
            interval=args.interval,
            once=args.once,
            iterations=args.iterations,
        )
    return logs(args)


if __name__ == "__main__":
    sys.exit(main())
