from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.postgres_server import PostgresServer, fresh_database
from tests.helpers import Server


def pytest_configure(config: pytest.Config) -> None:
    """Every server and CLI the tests start is a Python process importing Lamina: where
    PYTHONDONTWRITEBYTECODE keeps bytecode out of the tree, each compiled its ~200 modules
    again (0.7 s of CPU a server start). They share a bytecode cache of the run's instead,
    outside the tree. (Environments are not concerned: Lamina starts them with variables
    of its own.)"""
    if os.environ.get("PYTHONDONTWRITEBYTECODE") and not os.environ.get("PYTHONPYCACHEPREFIX"):
        cache = tempfile.mkdtemp(prefix="lamina-test-bytecode-")
        os.environ["PYTHONPYCACHEPREFIX"] = cache
        del os.environ["PYTHONDONTWRITEBYTECODE"]
        config.add_cleanup(lambda: shutil.rmtree(cache, ignore_errors=True))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real `lamina serve` per test module, on a free loopback port."""
    data_dir: Path = tmp_path_factory.mktemp("lamina") / "data"
    running = Server(data_dir).start()
    yield running
    running.stop()


@pytest.fixture
def lam(server: Server):  # type: ignore[no-untyped-def]
    """A boto3 Lambda client for the module's server, with retries off."""
    return server.client()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the suite's own (initdb in a temporary directory, a free
    loopback port), started when a test first asks for it."""
    running = PostgresServer().start()
    yield running
    running.remove()


@pytest.fixture
def database_url(postgres: PostgresServer) -> str:
    """An empty database of the suite's PostgreSQL, this test's own."""
    return fresh_database(postgres)
