"""A PostgreSQL server of the test's own: `initdb` in a temporary directory, `postgres` on
a free loopback port with its socket in that directory, stopped by its pid.

Debian's server binaries live in /usr/lib/postgresql/<major>/bin (not on PATH). PostgreSQL
refuses to run as root: when the tests run as root, the cluster directory is handed to
`nobody` and both programs run as that user (setpriv, from util-linux). The machine's own
PostgreSQL, if any, is never touched.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from tests.helpers import free_port

NOBODY = 65534


def server_bin(name: str) -> str:
    """The newest installed major's `name` (initdb, postgres)."""
    found = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (make system-packages)")
    return on_path


def _as_owner() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]


class PostgresServer:
    """One cluster: start(), url(database), create_database(), stop(); restartable."""

    def __init__(self, durable: bool = False) -> None:
        self.durable = durable  # fsync on (benchmarks); tests never crash the server itself
        self.root = Path(tempfile.mkdtemp(prefix="lamina-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        if os.geteuid() == 0:
            os.chown(self.root, NOBODY, NOBODY)
        done = subprocess.run(
            [*_as_owner(), server_bin("initdb"), "-D", str(self.data), "-U", "postgres",
             "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stdout}{done.stderr}")

    def start(self, timeout: float = 30.0) -> PostgresServer:
        """Start it; on a port another process took since it was chosen, on another one."""
        for _ in range(3):
            if self._start(timeout):
                return self
            self.port = free_port()
        raise RuntimeError(f"postgres found each port it was given taken: {self.log()}")

    def _start(self, timeout: float) -> bool:
        """True once this server answers; False if its port was taken."""
        log = open(self.root / "postgres.log", "ab")  # noqa: SIM115 (the server's, kept open)
        self.process = subprocess.Popen(
            [*_as_owner(), server_bin("postgres"), "-D", str(self.data),
             "-p", str(self.port), "-k", str(self.root), "-c", "listen_addresses=127.0.0.1",
             "-c", "max_connections=200",
             *([] if self.durable else ["-c", "fsync=off", "-c", "full_page_writes=off"])],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if "could not bind" in self.log() or "could not create any TCP" in self.log():
                    return False
                raise RuntimeError(f"postgres exited: {self.log()}")
            try:
                # Whoever answers on the port must be this server, not another run's.
                with psycopg.connect(self.url("postgres"), connect_timeout=1) as conn:
                    found = conn.execute("SHOW data_directory").fetchone()
                if found is not None and Path(found[0]) == self.data:
                    return True
            except psycopg.OperationalError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"postgres did not answer in {timeout}s: {self.log()}")

    def log(self) -> str:
        path = self.root / "postgres.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self, timeout: float = 20.0) -> None:
        """Fast shutdown (SIGINT: connections cut, the cluster left consistent)."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


_made = 0


def fresh_database(server: PostgresServer) -> str:
    """An empty database of one test's own: a schema of its own in the database `lamina`
    (CREATE DATABASE takes a second on a busy machine, CREATE SCHEMA milliseconds); the
    URL names it as the connections' search_path."""
    global _made
    _made += 1
    name = f"t{os.getpid()}_{_made}"
    with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname='lamina'").fetchone() is None:
            conn.execute("CREATE DATABASE lamina")
    with psycopg.connect(server.url("lamina"), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    return server.url("lamina") + f"?options=-csearch_path%3D{name}"
