"""The fuzz tests' figures (payloads sent, time, seed) at the end of the pytest run.

A fuzz test's lines travel on its report's `user_properties`, so they reach the terminal summary from pytest-xdist
workers as well as from a plain run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fuzz.fuzz_harness import REPORT

PROPERTY = "fuzz_report"
_LINES: list[str] = []


@pytest.fixture(autouse=True)
def _attach_fuzz_report(request: pytest.FixtureRequest) -> Iterator[None]:
    before = len(REPORT)
    yield
    request.node.user_properties.extend((PROPERTY, line) for line in REPORT[before:])


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "teardown":
        _LINES.extend(str(value) for name, value in report.user_properties if name == PROPERTY)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _LINES:
        terminalreporter.section("fuzzing")
        for line in _LINES:
            terminalreporter.write_line(line)
