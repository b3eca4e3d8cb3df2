"""AWS's durable execution conformance requirements, run against a real Lamina.

One test per suite: every requirement of the suite gets its own function (its handler
from tests/durable/handlers), is invoked as the requirement says, and is judged with the
suite's own matching rules (tests/durable/conformance.py). `pytest -s` prints the count
that pass per suite.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.durable import conformance
from tests.helpers import Server

WORKERS = 8


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Any, Any]]:
    root = tmp_path_factory.mktemp("conformance")
    # Handlers that must act differently on a later invocation keep a counter in a host
    # directory, so environments are plain processes here; scale 0.5 halves every wait.
    server = Server(root / "data", args=["--isolation", "none", "--time-scale", "0.5"]).start()
    lam = server.client(read_timeout=300)
    env = {
        "CONFORMANCE_STATE": str(root / "state"),
        "ECHO_FUNCTION": conformance.ECHO,
        "FAIL_FUNCTION": conformance.FAIL,
    }
    blob = conformance.code_zip()
    conformance.deploy_targets(lam, blob, env)
    for suite in conformance.SUITES:
        for requirement, _ in conformance.requirements(suite):
            conformance.deploy(lam, suite, requirement, blob, env)
    yield server, lam, server.client("logs")
    server.stop()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("suite", conformance.SUITES)
def test_suite(deployed: tuple[Server, Any, Any], suite: str) -> None:
    server, lam, logs = deployed
    specs = conformance.requirements(suite)
    with ThreadPoolExecutor(WORKERS) as pool:
        outcomes = list(pool.map(lambda item: conformance.run(lam, logs, *item), specs))
    passed = sum(o.passed for o in outcomes)
    report = Path(server.data_dir).parent / "conformance.txt"
    with report.open("a") as out:
        out.write(f"{suite}: {passed}/{len(outcomes)}\n")
    print(f"\nconformance {suite}: {passed}/{len(outcomes)} pass")
    failures = {o.requirement: o.errors[:3] for o in outcomes if not o.passed}
    for requirement, errors in failures.items():
        print(f"  {requirement}: {errors}")
    assert not failures, failures
