"""Two `lamina serve --database` nodes on one PostgreSQL of the suite's own: code no
function of either node uses any more leaves the database once its grace has passed
(60 platform seconds: 3 s at the nodes' time scale), and code another node's function
still uses stays."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import psycopg
import pytest

from tests.cluster.postgres_server import PostgresServer, fresh_database
from tests.cluster.test_shared_store import node
from tests.helpers import Server, make_zip, python_function


@pytest.fixture(scope="module")
def cluster(
    postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server, str]]:
    url = fresh_database(postgres)
    root = tmp_path_factory.mktemp("blobs")
    a = node(root, "a", url)
    b = node(root, "b", url, first=a)
    yield a, b, url
    for server in (a, b):
        server.stop()


def blobs(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {row[0] for row in conn.execute("SELECT digest FROM code_blobs")}


def test_unused_code_leaves_the_database(cluster: tuple[Server, Server, str]) -> None:
    a, b, url = cluster
    first = "def handler(e, c):\n    return 1\n"
    second = "def handler(e, c):\n    return 2\n"
    old = hashlib.sha256(make_zip({"app.py": first})).hexdigest()
    new = hashlib.sha256(make_zip({"app.py": second})).hexdigest()
    python_function(a.client(), "mine", first)
    python_function(b.client(), "twin", first)  # the same code, through the other node
    assert old in blobs(url)
    a.client().update_function_code(FunctionName="mine", ZipFile=make_zip({"app.py": second}))
    time.sleep(4.5)  # past the grace: the code stays, "twin" on B uses it
    assert {old, new} <= blobs(url)
    b.client().delete_function(FunctionName="twin")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and old in blobs(url):
        time.sleep(0.2)
    assert old not in blobs(url)
    assert new in blobs(url)
    assert b.client().invoke(FunctionName="mine")["Payload"].read() == b"2"
