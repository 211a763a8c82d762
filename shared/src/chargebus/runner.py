"""The `main()` every service shares: arguments, config (exit 2 on problems), logging, clock, run."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from chargebus.clock import clock_from_env
from chargebus.config import ConfigT, load_or_exit
from chargebus.mqtt import Service

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
        asyncio.get_running_loop().set_exception_handler(_log_loop_error)
        service = Service(name, config.mqtt, clock=clock)
        await setup(service, config)
        logging.getLogger("chargebus").info(
            f"service={name} event=starting broker={config.mqtt.redacted_url} prefix={config.mqtt.prefix}"
        )
        await service.run()

    asyncio.run(main())
    return 0


def _log_loop_error(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """One line per event, also for what asyncio reports itself (a serial device vanishing mid-write): the service
    handles the loss; a traceback in its log would only look like a crash."""
    error = context.get("exception")
    logging.getLogger("chargebus").error(f"event=loop_error message={context.get('message', '')!r} error={error!r}")
