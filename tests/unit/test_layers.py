"""Imports point down the map (../shared/DESIGN.md): no package imports one above it,
and services reach Lambda only through the engine's interfaces."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import lamina

ROOT = Path(lamina.__file__).parent

# A package, and the packages it must never import.
FORBIDDEN = {
    "lamina.api": ("lamina.server",),
    "lamina.control": ("lamina.services", "lamina.api", "lamina.server"),
    "lamina.services": ("lamina.control", "lamina.api", "lamina.server"),
    "lamina.engine": ("lamina.control", "lamina.services", "lamina.api", "lamina.server"),
    "lamina.sandbox": ("lamina.engine", "lamina.control", "lamina.services", "lamina.api"),
    "lamina.runtimes": ("lamina.engine", "lamina.control", "lamina.services", "lamina.api"),
    "lamina.store": ("lamina.engine", "lamina.control", "lamina.services", "lamina.api"),
    "lamina.observe": ("lamina.engine", "lamina.control", "lamina.services", "lamina.api"),
    # The planner runs the engine's pure modules, never the processes, the control plane
    # or the server (it starts one only as a process, for --validate).
    "lamina.plan": (
        "lamina.control",
        "lamina.services",
        "lamina.api",
        "lamina.server",
        "lamina.sandbox",
        "lamina.runtimes",
        "lamina.engine.pool",
        "lamina.engine.service",
        "lamina.engine.invoker",
        "lamina.engine.async_queue",
        "lamina.engine.provisioned",
    ),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache  # each module is parsed once, however many packages it is checked against
def imported(path: Path) -> frozenset[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return frozenset(names)


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_imports_point_down_the_map() -> None:
    wrong = []
    checked = 0
    for path in sorted(ROOT.rglob("*.py")):
        module = module_name(path)
        for package, forbidden in FORBIDDEN.items():
            if not within(module, package):
                continue
            checked += 1
            for name in imported(path):
                if any(within(name, f) for f in forbidden):
                    wrong.append(f"{module} imports {name}")
    assert checked > 50
    assert wrong == []


def test_each_service_is_a_package_of_its_own() -> None:
    services = sorted(
        p.name for p in (ROOT / "services").iterdir() if (p / "__init__.py").is_file()
    )
    assert {"sqs", "kinesis", "cloudwatch", "logs", "xray"} <= set(services)
    for name in services:
        for other in services:
            if other == name:
                continue
            for path in (ROOT / "services" / name).rglob("*.py"):
                assert not any(within(i, f"lamina.services.{other}") for i in imported(path)), (
                    f"{module_name(path)} imports the {other} service"
                )


def test_no_module_is_much_over_600_lines() -> None:
    long = {
        module_name(p): n
        for p in ROOT.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 650
    }
    assert long == {}
