"""The `main()` every service shares: arguments, config (exit 2 on problems), logging, clock, run.

A service package describes itself once, as a `ServiceEntry` (name, config class, setup), and names it in its
`chargebus.services` entry point. Called, the entry is the service's own `main()` (one process per service); the
`chargebus run` supervisor (`chargebus.supervisor`) builds several from the same entries in one event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic

from chargebus.clock import Clock, clock_from_env
from chargebus.config import ConfigT, load_config, load_or_exit
from chargebus.memory import release_unused_memory
from chargebus.mqtt import Service

#: Services announce themselves with an entry point in this group: name = "package.module:main", where `main` is the
#: package's `ServiceEntry`.
SERVICE_ENTRY_POINTS = "chargebus.services"

#: Builds a service: registers handlers, tasks and connect hooks on the Service. May be async.
Setup = Callable[[Service, ConfigT], Awaitable[None]]

LOG_FORMAT = "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=sys.stderr, force=True)
    # aiomqtt/paho log at DEBUG only; keep third-party chatter out of INFO.
    logging.getLogger("aiomqtt").setLevel(max(logging.INFO, logging.getLogger().level))


def parse_args(name: str, argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"chargebus-{name}", description=f"chargebus {name} service")
    parser.add_argument("--config", help="path of chargebus.toml (default: $CHARGEBUS_CONFIG, else ./chargebus.toml)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser.parse_args(argv)


def run_service(name: str, config_cls: type[ConfigT], setup: Setup[ConfigT], argv: Sequence[str] | None = None) -> int:
    """Load config (exit 2 with one line per problem), build the service, run it until SIGTERM/SIGINT."""
    args = parse_args(name, argv)
    config = load_or_exit(config_cls, args.config)
    setup_logging(args.log_level)
    try:
        clock = clock_from_env()
    except ValueError as exc:
        print(f"config: {exc}", file=sys.stderr)  # noqa: T201 - the user's terminal is the audience
        return 2

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(log_loop_error)
        service = Service(name, config.mqtt, clock=clock)
        await setup(service, config)
        logging.getLogger("chargebus").info(
            f"service={name} event=starting broker={config.mqtt.redacted_url} prefix={config.mqtt.prefix}"
        )
        trim = release_memory_once_connected(service)
        try:
            await service.run()
        finally:
            trim.cancel()

    asyncio.run(main())
    return 0


def release_memory_once_connected(service: Service) -> asyncio.Task[None]:
    """Once `service` is up (its first connect), return what start-up freed to the system (`chargebus.memory`)."""

    async def release() -> None:
        await service.connected.wait()
        release_unused_memory()

    return asyncio.create_task(release(), name=f"{service.name}-release-memory")


@dataclass(frozen=True)
class ServiceEntry(Generic[ConfigT]):
    """How to start one service: what `chargebus run` and the service's own command both use."""

    name: str
    config_cls: type[ConfigT]
    setup: Setup[ConfigT]

    def __call__(self, argv: Sequence[str] | None = None) -> int:
        """The service's `main()`: its own process, until SIGTERM/SIGINT."""
        return run_service(self.name, self.config_cls, self.setup, argv)

    def load_config(self, path: str | None) -> ConfigT:
        """The sections this service reads; ConfigError with one line per problem."""
        return load_config(self.config_cls, path)

    async def build(self, config: ConfigT, clock: Clock) -> Service:
        """A Service with everything the service does registered on it, ready to `run()`."""
        service = Service(self.name, config.mqtt, clock=clock)
        await self.setup(service, config)
        return service


def log_loop_error(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """One line per event, also for what asyncio reports itself (a serial device vanishing mid-write): the service
    handles the loss; a traceback in its log would only look like a crash."""
    error = context.get("exception")
    logging.getLogger("chargebus").error(f"event=loop_error message={context.get('message', '')!r} error={error!r}")
