"""scripts/coverage_summary.py: the per-package line coverage `make test` prints, from a real coverage data file."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import chargebus.units
import coverage
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "coverage_summary.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chargebus_coverage_summary", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def statements_of(path: str) -> set[int]:
    _name, lines, _excluded, _missing, _text = coverage.Coverage(data_file=None).analysis2(path)
    return set(lines)


def test_package_of_reads_the_package_from_the_path() -> None:
    script = load_script()
    assert script.package_of("/x/shared/src/chargebus/units.py") == "chargebus"
    assert script.package_of("/x/services/allocator/src/chargebus_allocator/merge.py") == "chargebus_allocator"
    assert script.package_of("/usr/lib/python3/json/decoder.py") is None


def test_summary_counts_every_module_of_a_package_that_ran(tmp_path: Path) -> None:
    units = str(Path(chargebus.units.__file__).resolve())
    ran = set(sorted(statements_of(units))[:5])
    data_file = tmp_path / ".coverage"
    data = coverage.CoverageData(basename=str(data_file))
    data.add_lines({units: ran, "/usr/lib/python3/json/decoder.py": {1}})
    data.write()
    package = Path(units).parent
    total = sum(len(statements_of(str(module))) for module in package.rglob("*.py"))

    lines = load_script().summary(str(data_file))

    assert lines[0].startswith("coverage of the packages this run imported")
    percent = f"{100.0 * len(ran) / total:.1f}"
    assert lines[1].split() == ["chargebus", percent, "%", "of", str(total), "statements"]
    assert lines[2].split()[:2] == ["total", percent]
    assert len(lines) == 4  # no other package ran; the file outside the project's packages is not counted


def test_main_says_so_when_there_is_no_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert load_script().main(["coverage_summary.py", str(tmp_path / "missing")]) == 1
    assert "no data" in capsys.readouterr().err
    assert sys.modules.get("chargebus_coverage_summary") is None
