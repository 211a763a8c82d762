"""The fuzz tests' figures (payloads sent, time, seed) at the end of the pytest run."""

from __future__ import annotations

import pytest

from tests.fuzz.fuzz_harness import REPORT


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORT:
        terminalreporter.section("fuzzing")
        for line in REPORT:
            terminalreporter.write_line(line)
