"""Several services in one interpreter and one event loop (`chargebus run`): the small-box mode.

Each service is still its own MQTT client, with its own status topic and last will, built from its package's
`ServiceEntry` (found by entry point, never imported by name). Failures stay inside the service: when one ends
without being asked to (its setup raised, it exited, its connection loop broke), the supervisor logs it, marks the
service `offline` with an ErrorEvent on its error topic saying why and when it restarts, and starts it again after a
capped exponential backoff, reading the config file again (as a container restart would). The others keep running.
A service that ran for `HEALTHY_AFTER_S` before it failed restarts from the shortest delay. SIGTERM/SIGINT stop them
all: each publishes `offline` and disconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from chargebus.clock import Clock
from chargebus.config import CommonConfig, ConfigError
from chargebus.mqtt import Backoff, Service, announce_down
from chargebus.runner import SERVICE_ENTRY_POINTS, ServiceEntry, release_memory_once_connected

log = logging.getLogger("chargebus.supervisor")

#: Restart delays: the first after `RESTART_INITIAL_S`, doubling up to `RESTART_CAP_S` (real time: a restart waits
#: for a disk, a broker or a person, not for simulated events).
RESTART_INITIAL_S = 1.0
RESTART_CAP_S = 60.0
#: A service that ran this long before it failed starts over from the shortest delay.
HEALTHY_AFTER_S = 60.0
#: How long the stop waits for every service to say `offline` and disconnect.
#: Seconds the loop keeps running after every service has stopped.
SETTLE_S = 0.2
STOP_TIMEOUT_S = 10.0


class EntryError(Exception):
    """A service's entry point is missing or does not name a ServiceEntry."""


def load_entries(names: Sequence[str]) -> list[ServiceEntry[Any]]:
    """The ServiceEntry of each named service, from the `chargebus.services` entry points (importing its package)."""
    points = {point.name: point for point in entry_points(group=SERVICE_ENTRY_POINTS)}
    entries: list[ServiceEntry[Any]] = []
    for name in names:
        if name not in points:
            raise EntryError(f"unknown service {name}; installed: {', '.join(sorted(points)) or 'none'}")
        entry = points[name].load()
        if not isinstance(entry, ServiceEntry):
            raise EntryError(f"service {name}: entry point {points[name].value} is not a chargebus ServiceEntry")
        entries.append(entry)
    return entries


@dataclass
class Supervised:
    """One service under supervision: its entry, the config it last started with, the running instance."""

    entry: ServiceEntry[Any]
    config: CommonConfig
    service: Service | None = None
    crashes: int = 0
    backoff: Backoff = field(default_factory=lambda: Backoff(initial_s=RESTART_INITIAL_S, cap_s=RESTART_CAP_S))


class Supervisor:
    """Start with `await run()`; `stop()` (or SIGTERM/SIGINT with `handle_signals`) ends it."""

    def __init__(
        self,
        services: Sequence[tuple[ServiceEntry[Any], CommonConfig]],
        *,
        config_path: str | None,
        clock: Clock,
    ) -> None:
        self.supervised = [Supervised(entry, config) for entry, config in services]
        self.config_path = config_path
        self.clock = clock
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()
        for supervised in self.supervised:
            if supervised.service is not None:
                supervised.service.request_stop()

    async def run(self, *, handle_signals: bool = True) -> None:
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
        for sig in signals:
            loop.add_signal_handler(sig, self.stop)
        names = [supervised.entry.name for supervised in self.supervised]
        log.info(f"event=supervisor_starting services={','.join(names)}")
        tasks = [
            asyncio.create_task(self._keep_running(supervised), name=f"supervise-{supervised.entry.name}")
            for supervised in self.supervised
        ]
        try:
            await self._stopping.wait()
        finally:
            self.stop()
            _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # Database drivers answer from their own threads (aiosqlite): let a close they are finishing land on this
            # loop before it ends, or the thread reports "Event loop is closed" on the way out.
            await asyncio.sleep(SETTLE_S)
            for sig in signals:
                loop.remove_signal_handler(sig)
            log.info(f"event=supervisor_stopped services={','.join(names)}")

    async def _keep_running(self, supervised: Supervised) -> None:
        name = supervised.entry.name
        first = True
        while not self._stopping.is_set():
            started = time.monotonic()
            reason = await self._run_once(supervised, reload_config=not first)
            first = False
            if reason is None:
                return  # asked to stop
            if time.monotonic() - started >= HEALTHY_AFTER_S:
                supervised.backoff.reset()
            delay = supervised.backoff.next_delay()
            supervised.crashes += 1
            log.error(
                f"service={name} event=service_crashed reason={reason!r} crashes={supervised.crashes} "
                f"restart_in_s={delay:.1f}"
            )
            await announce_down(
                name, supervised.config.mqtt, f"service crashed ({reason}); restarting in {delay:.1f} s"
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if not self._stopping.is_set():
                log.info(f"service={name} event=service_restarting crashes={supervised.crashes}")

    async def _run_once(self, supervised: Supervised, *, reload_config: bool) -> str | None:
        """Build and run the service once; None when it ended because it was asked to, else why it ended."""
        entry = supervised.entry
        try:
            if reload_config:
                supervised.config = entry.load_config(self.config_path)
            service = Service(entry.name, supervised.config.mqtt, clock=self.clock)
            supervised.service = service
            await entry.setup(service, supervised.config)
            if self._stopping.is_set():
                return None
            log.info(
                f"service={entry.name} event=starting broker={supervised.config.mqtt.redacted_url} "
                f"prefix={supervised.config.mqtt.prefix}"
            )
            trim = release_memory_once_connected(service)
            try:
                await service.run(handle_signals=False)
            finally:
                trim.cancel()
        except asyncio.CancelledError:
            raise
        except ConfigError as exc:
            return "; ".join(exc.problems)
        except SystemExit as exc:  # what ends a service's own process ends only the service here
            return f"exited with code {exc.code}"
        except Exception as exc:
            log.exception(f"service={entry.name} event=service_failed")
            return f"{type(exc).__name__}: {exc}"
        finally:
            supervised.service = None
        if self._stopping.is_set():
            return None
        return "stopped by itself"
