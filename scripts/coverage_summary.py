"""Print line coverage per package from a coverage data file: a summary for `make test`, not a gate.

Usage: python scripts/coverage_summary.py [.coverage]. A package counts when any of its modules ran, and then every
module of it counts (one that never ran at 0 %). Only code that ran in the pytest process is measured: services started
as child processes by the end-to-end and fault tests count where their modules are also tested in process. `uv run
coverage report` (or `coverage html`) gives the per-file details from the same data file.
"""

from __future__ import annotations

import importlib.util
import sys
from collections import defaultdict
from pathlib import Path

import coverage
from coverage.exceptions import NoDataError, NoSource, NotPython

PACKAGES = (
    "chargebus",
    "chargebus_twc",
    "chargebus_tesla",
    "chargebus_allocator",
    "chargebus_history",
    "chargebus_forecast",
    "chargebus_sim",
)


def package_of(path: str) -> str | None:
    """The project package a measured file belongs to, from its path (`…/src/<package>/…`)."""
    parts = Path(path).parts
    return next((part for part in parts if part in PACKAGES), None)


def files_to_count(measured: list[str]) -> list[str]:
    """The measured files, plus every other module of a package that was measured at all (counted as not run)."""
    files = {str(Path(path).resolve()) for path in measured if package_of(path) is not None}
    for package in {package_of(path) for path in files}:
        spec = importlib.util.find_spec(str(package))
        for location in (spec.submodule_search_locations or []) if spec else []:
            files.update(str(path.resolve()) for path in Path(location).rglob("*.py"))
    return sorted(files)


def summary(data_file: str) -> list[str]:
    cov = coverage.Coverage(data_file=data_file)
    cov.load()
    statements: dict[str, int] = defaultdict(int)
    missing: dict[str, int] = defaultdict(int)
    for path in files_to_count(list(cov.get_data().measured_files())):
        package = package_of(path)
        try:
            _name, executable, _excluded, missed_lines, _text = cov.analysis2(path)
        except (NoSource, NotPython):
            continue
        statements[str(package)] += len(executable)
        missing[str(package)] += len(missed_lines)
    if not statements:
        raise NoDataError(f"no data in {data_file}")
    rows = [(package, statements[package], missing[package]) for package in PACKAGES if statements[package]]
    rows.append(("total", sum(statements.values()), sum(missing.values())))
    lines = ["coverage of the packages this run imported (lines run in the test process; not a gate):"]
    for package, total, missed in rows:
        percent = 100.0 * (total - missed) / total if total else 100.0
        lines.append(f"  {package:<21} {percent:5.1f} %  of {total:>6} statements")
    lines.append("  per file: uv run coverage report --skip-covered")
    return lines


def main(argv: list[str]) -> int:
    data_file = argv[1] if len(argv) > 1 else ".coverage"
    try:
        print("\n".join(summary(data_file)))
    except NoDataError as exc:
        print(f"coverage: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
