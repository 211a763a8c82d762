"""The four services as child processes, started the way a user starts them (`python -m <package>`).

Used by `chargebus demo` and the end-to-end tests. Each service gets the world's `chargebus.toml`, the clock scale in
`CHARGEBUS_TIME_SCALE` and a log file of its own; every other `CHARGEBUS_*` variable of the caller's environment is
dropped, so a user's `CHARGEBUS_MQTT_URL` cannot point the demo's services at their real broker. `stop()` sends
SIGTERM (each service then publishes `offline` and disconnects), waits, and kills what is left: no orphans.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from chargebus.cli import installed_services

#: The allocator first: a service's accelerated clock starts when the service starts, so the ones started later run
#: slightly behind, and setpoints (stamped by the allocator) then never look expired to a bridge.
START_ORDER = ("allocator", "history", "twc-bridge", "tesla-bridge")
STOP_TIMEOUT_S = 10.0


def ordered_services(available: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """(name, module) of every installed service, in `START_ORDER`, unknown ones last."""
    services = dict(installed_services() if available is None else available)
    rank = {name: index for index, name in enumerate(START_ORDER)}
    return sorted(services.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0]))


def runnable_module(module: str) -> str:
    """`python -m` target of a service: its package when it has a `__main__` (docs/contract.md §1: "each also runs as
    `python -m <package>`"), which imports the whole service module before `main()` runs; else the module itself."""
    package = module.split(".", 1)[0]
    try:
        found = importlib.util.find_spec(f"{package}.__main__") is not None
    except ModuleNotFoundError:
        found = False
    return package if found else module


def child_environment(
    config: Path, time_scale: float, extra: Mapping[str, str] | None = None, *, time_origin: float | None = None
) -> dict[str, str]:
    """One origin for every child: a service started (or restarted) later agrees on the accelerated time."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CHARGEBUS_")}
    origin = time.time() if time_origin is None else time_origin
    env |= {
        "CHARGEBUS_CONFIG": str(config),
        "CHARGEBUS_TIME_SCALE": repr(float(time_scale)),
        "CHARGEBUS_TIME_ORIGIN": repr(origin),
    }
    return env | dict(extra or {})


@dataclass
class ServiceSet:
    """Start with `start()`, stop with `stop()`; `logs` has one file per service."""

    config: Path
    time_scale: float
    log_dir: Path
    log_level: str = "info"
    env: Mapping[str, str] = field(default_factory=dict)
    only: Sequence[str] | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    time_origin: float = field(default_factory=time.time)

    def start(self) -> list[str]:
        """Start every installed service (or `only` these); returns their names in start order."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = child_environment(self.config, self.time_scale, self.env, time_origin=self.time_origin)
        for name, module in ordered_services():
            if self.only is not None and name not in self.only:
                continue
            command = [
                sys.executable,
                "-m",
                runnable_module(module),
                "--config",
                str(self.config),
                "--log-level",
                self.log_level,
            ]
            with self.log_path(name).open("ab") as log:
                self.processes[name] = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
                    command, env=env, stdout=log, stderr=subprocess.STDOUT
                )
        return list(self.processes)

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def log(self, name: str) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace") if path.exists() else ""

    def alive(self) -> dict[str, bool]:
        return {name: process.poll() is None for name, process in self.processes.items()}

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> dict[str, int]:
        """SIGTERM every child, wait up to `timeout_s` in all, SIGKILL the rest; returns the exit codes."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        codes: dict[str, int] = {}
        for name, process in self.processes.items():
            try:
                codes[name] = process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = process.wait()
        self.processes = {}
        return codes
