"""What may import what: the contract package (`chargebus`) imports no service and no simulator; a service imports
`chargebus` and never another service; the simulators import no service (they check the services' code, so they must
not borrow it; tests may use a service to drive a simulator). Read from the source (every module's syntax tree,
imports inside functions included), not from what happens to be imported at run time, so a lazy import cannot hide."""

from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONTRACT = "chargebus"
SIMULATOR = "chargebus_sim"


@dataclass(frozen=True)
class Package:
    name: str  # the import name, e.g. chargebus_twc
    source: Path  # the package's folder of modules
    project: Path  # its pyproject.toml


def _package(src: Path) -> Package:
    (folder,) = (path for path in src.iterdir() if (path / "__init__.py").exists())
    return Package(folder.name, folder, src.parent / "pyproject.toml")


SERVICES = sorted((_package(src) for src in ROOT.glob("services/*/src")), key=lambda package: package.name)
SERVICE_NAMES = frozenset(package.name for package in SERVICES)
SHARED = _package(ROOT / "shared" / "src")
SIM = _package(ROOT / "sim" / "src")


def imported_packages(source: str) -> set[str]:
    """Top-level package of every absolute import in `source`: `import a.b`, `from a.b import c`, and
    `importlib.import_module("a.b")` / `__import__("a")` with a literal name; relative imports stay inside."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".", 1)[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".", 1)[0])
        elif isinstance(node, ast.Call) and node.args:
            function = node.func
            name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
            first = node.args[0]
            literal = first.value if isinstance(first, ast.Constant) else None
            if name in {"import_module", "__import__"} and isinstance(literal, str):
                found.add(literal.split(".", 1)[0])
    return found


def offending_imports(package: Package, forbidden: frozenset[str]) -> list[str]:
    """`module.py: imports x` for every forbidden package imported anywhere in `package`."""
    return [
        f"{module.relative_to(ROOT)}: imports {name}"
        for module in sorted(package.source.rglob("*.py"))
        for name in sorted(imported_packages(module.read_text(encoding="utf-8")) & forbidden)
    ]


def declared_dependencies(project: Path) -> set[str]:
    """Distribution names a pyproject depends on (extras and version bounds stripped), as import names."""
    data = tomllib.loads(project.read_text(encoding="utf-8"))
    names = set()
    for requirement in data["project"].get("dependencies", []):
        name = requirement.split(";", 1)[0]
        for stop in "[<>=!~ ":
            name = name.split(stop, 1)[0]
        names.add(name.strip().lower())
    return names


def _distribution(package: Package) -> str:
    return str(tomllib.loads(package.project.read_text(encoding="utf-8"))["project"]["name"]).lower()


def test_the_walker_sees_every_kind_of_import() -> None:
    source = """
import os, chargebus_twc.codec
from chargebus_sim.demo import run_demo
from . import sibling

def later():
    from chargebus_history import store
    importlib.import_module("chargebus_tesla.fleet")
    __import__("chargebus_allocator")
    importlib.import_module(name_from_somewhere)
"""
    assert imported_packages(source) == {
        "os",
        "chargebus_twc",
        "chargebus_sim",
        "chargebus_history",
        "chargebus_tesla",
        "chargebus_allocator",
    }


def test_there_is_something_to_check() -> None:
    assert SHARED.name == CONTRACT
    assert SIM.name == SIMULATOR
    assert {"chargebus_twc", "chargebus_tesla", "chargebus_allocator", "chargebus_history"} <= SERVICE_NAMES


def test_the_contract_package_imports_no_service_and_no_simulator() -> None:
    assert offending_imports(SHARED, SERVICE_NAMES | {SIMULATOR}) == []
    dependencies = declared_dependencies(SHARED.project)
    assert not dependencies & {_distribution(package) for package in [*SERVICES, SIM]}


@pytest.mark.parametrize("service", SERVICES, ids=lambda package: package.name)
def test_a_service_imports_no_other_service_and_no_simulator(service: Package) -> None:
    assert offending_imports(service, (SERVICE_NAMES - {service.name}) | {SIMULATOR}) == []
    others = {_distribution(package) for package in [*SERVICES, SIM] if package != service}
    assert not declared_dependencies(service.project) & others


def test_the_simulator_imports_no_service() -> None:
    """The simulated TWC slaves check the twc-bridge's bytes with a codec and deny list of their own."""
    assert offending_imports(SIM, SERVICE_NAMES) == []
    assert not declared_dependencies(SIM.project) & {_distribution(package) for package in SERVICES}
