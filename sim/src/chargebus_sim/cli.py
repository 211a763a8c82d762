"""`chargebus sim <simulator> …`: run one simulator in the foreground, for manual tests against real services and
for the docker compose `sim` profile (each simulator is a container running `chargebus sim …`).

The simulators themselves live in their modules; this file holds the table of names and the command lines of the
simulators whose module has none (the fake Fleet API with its TeslaMate feed, the TeslaMate publisher alone, the
house with PV). Every long-running command stops cleanly on SIGINT and SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import aiomqtt
from chargebus.clock import SystemClock, clock_from_env, iso_utc

log = logging.getLogger("chargebus_sim")


@dataclass(frozen=True)
class Simulator:
    """`run` and `check` are "module:function"; `run(argv)` runs it, `check(argv)` only parses the arguments
    (SystemExit 2 when they are wrong), so a compose file's commands can be checked without starting anything."""

    run: str
    check: str | None = None
    help: str = ""


#: Simulator name → how to run it.
SIMULATORS = {
    "twc": Simulator(
        "chargebus_sim.twc_slave:main", "chargebus_sim.twc_slave:specs_from_args", "Gen2 TWC slaves on a pty"
    ),
    "twc-tcp": Simulator(
        "chargebus_sim.twc_tcp:main", "chargebus_sim.twc_tcp:parse_args", "Gen2 TWC slaves behind a TCP port"
    ),
    "fleet-api": Simulator(
        "chargebus_sim.cli:fleet_api_main", "chargebus_sim.cli:fleet_api_args", "fake Fleet API (+ TeslaMate feed)"
    ),
    "teslamate": Simulator(
        "chargebus_sim.cli:teslamate_main", "chargebus_sim.cli:teslamate_args", "TeslaMate publisher alone"
    ),
    "house": Simulator("chargebus_sim.cli:house_main", "chargebus_sim.cli:house_args", "house + PV meters on MQTT"),
    "gen3": Simulator("chargebus_sim.gen3:main", None, "Gen3 Wall Connector local API"),
    "ocpp": Simulator(
        "chargebus_sim.ocpp_cp:main", "chargebus_sim.ocpp_cp:parse_args", "OCPP 1.6J / 2.0.1 wallboxes with cars"
    ),
}


def _load(target: str) -> Callable[..., Any]:
    module, _, name = target.partition(":")
    return cast("Callable[..., Any]", getattr(importlib.import_module(module), name))


def check_arguments(name: str, argv: Sequence[str]) -> None:
    """Parse a simulator's arguments without running it: SystemExit(2) (and a usage line) when they are wrong."""
    if name not in SIMULATORS:
        raise SystemExit(2)
    check = SIMULATORS[name].check
    if check is not None:
        _load(check)(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help") or args[0] not in SIMULATORS:
        asked = bool(args) and args[0] in ("-h", "--help")
        names = ", ".join(SIMULATORS)
        usage = f"usage: chargebus sim <{names}> [--help | options]"
        lines = [usage, *(f"  {name:10} {sim.help}" for name, sim in SIMULATORS.items())] if asked else [usage]
        print("\n".join(lines), file=sys.stdout if asked else sys.stderr)
        return 0 if asked else 2
    run = _load(SIMULATORS[args[0]].run)
    code = cast("int | None", run(args[1:]))
    return code or 0


# ----- shared pieces of the command lines ------------------------------------------------------------------------


def add_time_scale(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--time-scale",
        type=float,
        default=None,
        help="simulated seconds per second (default $CHARGEBUS_TIME_SCALE, else 1)",
    )


def resolve_time_scale(parser: argparse.ArgumentParser, value: float | None) -> float:
    """`--time-scale` if given, else `$CHARGEBUS_TIME_SCALE`, else 1; a usage error when not positive."""
    if value is not None:
        if not value > 0:
            parser.error("--time-scale must be positive")
        return value
    try:
        return clock_from_env().scale
    except ValueError as error:
        parser.error(str(error))


def _mqtt_url(parser: argparse.ArgumentParser, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "mqtt" or not parts.hostname:
        parser.error(f"{_shown(url)!r}: expected mqtt://[user:password@]host[:port]")
    return url


def _mqtt_client(url: str) -> aiomqtt.Client:
    parts = urlsplit(url)
    return aiomqtt.Client(
        parts.hostname or "127.0.0.1",
        parts.port or 1883,
        username=parts.username,
        password=parts.password,
        protocol=aiomqtt.ProtocolVersion.V311,
    )


def _shown(url: str) -> str:
    """A URL for a log line: never its password."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 1883}"


async def _until_signalled(work: Awaitable[object]) -> None:
    """Run `work` until it ends or SIGINT/SIGTERM arrives (a container's `docker stop`)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.ensure_future(work)
    waiter = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, waiter):
            pending.cancel()
        await asyncio.gather(task, waiter, return_exceptions=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise cast("BaseException", task.exception())


async def _forever_connected(name: str, url: str, session: Callable[[], Awaitable[None]]) -> None:
    """Run an MQTT session; when the broker goes away (a restart), connect again after a short pause."""
    while True:
        try:
            await session()
        except aiomqtt.MqttError as error:
            log.warning(f"event=mqtt_lost sim={name} broker={_shown(url)} error={error!s} retry_in_s=2")
        await asyncio.sleep(2.0)


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s", stream=sys.stderr)


# ----- the fake Fleet API (and the TeslaMate feed of its cars) ------------------------------------------------------

DEFAULT_VIN = "5YJ3E1EA8KF000001"
#: Issued tokens end with this, so a token file written by the simulator is recognisable as one.
SIM_TOKEN_TAG = "-chargebus-sim"  # noqa: S105 - a marker in fake tokens, not a secret
CHARGING_STATES = ("Disconnected", "Stopped", "Charging")


def _add_car_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--car", action="append", metavar="VIN", help=f"a car (repeat; default {DEFAULT_VIN})")
    parser.add_argument("--state", choices=("online", "asleep"), default="online", help="every car's first state")
    parser.add_argument(
        "--charging-state", choices=CHARGING_STATES, default="Stopped", help="Stopped = plugged in, not charging"
    )
    parser.add_argument("--battery", type=float, default=50.0, help="state of charge in %%")
    parser.add_argument("--lat", type=float, default=52.52, help="where the cars are (default: the example's home)")
    parser.add_argument("--lon", type=float, default=13.40)


def _add_teslamate_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--teslamate" if not required else "--url",
        dest="teslamate",
        required=required,
        metavar="MQTT_URL",
        help="broker to publish the TeslaMate feed on (mqtt://[user:password@]host[:port])"
        + ("" if required else "; without it no feed"),
    )
    parser.add_argument("--teslamate-prefix", default="teslamate", help="TeslaMate's base topic")
    parser.add_argument("--geofence", default="Home", help="TeslaMate geofence name published for the cars")


def fleet_api_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="chargebus sim fleet-api",
        description="a fake Tesla Fleet API (data host + token endpoint) and vehicle-command proxy over HTTP",
    )
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=8000, help="Fleet API data host and /oauth2/v3/token")
    parser.add_argument("--proxy-port", type=int, default=8001, help="vehicle-command proxy (accepts commands)")
    parser.add_argument("--client-id", default="chargebus", help="the OAuth client_id the token endpoint accepts")
    parser.add_argument(
        "--token-file",
        type=Path,
        help="write the simulator's token pair here at start (the tesla-bridge's [tesla] token_file); a file "
        "holding tokens that the simulator did not issue is never overwritten",
    )
    _add_car_options(parser)
    _add_teslamate_options(parser, required=False)
    add_time_scale(parser)
    args = parser.parse_args(list(argv))
    if args.teslamate:
        _mqtt_url(parser, args.teslamate)
    args.time_scale = resolve_time_scale(parser, args.time_scale)
    return args


def teslamate_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="chargebus sim teslamate",
        description="a TeslaMate publisher for simulated cars (no Fleet API: the cars live in this process)",
    )
    _add_teslamate_options(parser, required=True)
    _add_car_options(parser)
    add_time_scale(parser)
    args = parser.parse_args(list(argv))
    _mqtt_url(parser, args.teslamate)
    args.time_scale = resolve_time_scale(parser, args.time_scale)
    return args


def write_sim_token_file(path: Path, content: dict[str, Any]) -> None:
    """Seed `path` with the simulator's tokens (mode 0600, atomically); refuse to replace real tokens."""
    with contextlib.suppress(FileNotFoundError, ValueError, OSError):
        existing = json.loads(path.read_text(encoding="utf-8"))
        refresh = existing.get("refresh_token") if isinstance(existing, dict) else None
        if isinstance(refresh, str) and refresh and not refresh.endswith(SIM_TOKEN_TAG):
            raise SystemExit(f"refusing to overwrite {path}: it holds tokens the simulator did not issue")
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(content), encoding="utf-8")
    temporary.chmod(0o600)
    temporary.replace(path)


def _fleet(args: argparse.Namespace, clock: SystemClock) -> Any:
    from chargebus_sim.fleet_api import FakeFleetApi  # noqa: PLC0415 - aiohttp only for the simulators that use it

    api = FakeFleetApi(clock=clock.time, client_id=getattr(args, "client_id", "chargebus"), token_tag=SIM_TOKEN_TAG)
    for vin in args.car or [DEFAULT_VIN]:
        api.add_car(
            vin,
            state=args.state,
            charging_state=args.charging_state,
            battery_level=args.battery,
            latitude=args.lat,
            longitude=args.lon,
        )
    return api


async def _teslamate_feed(args: argparse.Namespace, api: Any, clock: SystemClock) -> None:
    """TeslaMate's topics for every car of `api`, car ids 1, 2, … in the order of `--car`."""
    from chargebus_sim.teslamate import TeslaMateSim  # noqa: PLC0415

    async def session() -> None:
        async with TeslaMateSim(args.teslamate, args.teslamate_prefix, clock=clock.time, sleep=clock.sleep) as tm:
            for car_id, vin in enumerate(api.cars, start=1):
                await tm.start_car(car_id)
                tm.follow(car_id, api, vin, geofence=args.geofence or None)
            log.info(f"event=teslamate_feed broker={_shown(args.teslamate)} prefix={args.teslamate_prefix}")
            await tm.run()

    await _forever_connected("teslamate", args.teslamate, session)


async def _forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


async def _listen_for(inner_port: int, bind: str, port: int) -> asyncio.Server:
    """Expose a listener of this process that is bound to 127.0.0.1 on `bind:port` (containers reach it there)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            inner_reader, inner_writer = await asyncio.open_connection("127.0.0.1", inner_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_forward(reader, inner_writer), _forward(inner_reader, writer))

    return await asyncio.start_server(handle, bind, port)


async def _serve_fleet(args: argparse.Namespace) -> None:
    clock = SystemClock(args.time_scale)
    api = _fleet(args, clock)
    async with api:
        servers = [
            await _listen_for(urlsplit(api.url).port or 0, args.bind, args.port),
            await _listen_for(urlsplit(api.proxy_url).port or 0, args.bind, args.proxy_port),
        ]
        if args.token_file is not None:
            write_sim_token_file(args.token_file, api.token_file_content())
        print(f"fleet api http://{args.bind}:{args.port} proxy http://{args.bind}:{args.proxy_port}", flush=True)
        log.info(
            f"event=serving fleet_port={args.port} proxy_port={args.proxy_port} cars={','.join(api.cars)} "
            f"token_file={args.token_file} time_scale={args.time_scale:g}"
        )
        try:
            if args.teslamate:
                await _teslamate_feed(args, api, clock)
            else:
                await asyncio.Event().wait()
        finally:
            for server in servers:
                server.close()


def fleet_api_main(argv: Sequence[str]) -> int:
    args = fleet_api_args(argv)
    _logging()
    asyncio.run(_until_signalled(_serve_fleet(args)))
    return 0


def teslamate_main(argv: Sequence[str]) -> int:
    args = teslamate_args(argv)
    _logging()
    clock = SystemClock(args.time_scale)
    asyncio.run(_until_signalled(_teslamate_feed(args, _fleet(args, clock), clock)))
    return 0


# ----- the house: PV, household and grid meters on MQTT -------------------------------------------------------------


def house_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="chargebus sim house",
        description="a house with PV (sunny morning, cloudy afternoon): publishes <prefix>/power/{pv,house,grid} "
        "as PowerReading; the grid reading includes what the chargers draw (from <prefix>/evse/+/state)",
    )
    parser.add_argument("--url", required=True, metavar="MQTT_URL", help="mqtt://[user:password@]host[:port]")
    parser.add_argument("--prefix", default="chargebus", help="chargebus topic prefix")
    parser.add_argument("--period", type=float, default=5.0, help="real seconds between readings")
    parser.add_argument("--start-hour", type=float, default=None, help="simulated hour of day at start (default: now)")
    add_time_scale(parser)
    args = parser.parse_args(list(argv))
    _mqtt_url(parser, args.url)
    if not args.period > 0:
        parser.error("--period must be positive")
    if args.start_hour is not None and not 0 <= args.start_hour < 24:
        parser.error("--start-hour must be within 0 and 24")
    args.time_scale = resolve_time_scale(parser, args.time_scale)
    return args


def chargers_w(states: dict[str, dict[str, Any]]) -> float:
    """What the chargers draw: every online EVSE's power, a car reported by two EVSEs (TWC + car API) once."""
    by_vin: dict[str, float] = {}
    total = 0.0
    for state in states.values():
        power = state.get("power_w")
        if not state.get("online") or not isinstance(power, int | float):
            continue
        vin = state.get("vin")
        if isinstance(vin, str):
            by_vin[vin] = max(by_vin.get(vin, 0.0), float(power))
        else:
            total += float(power)
    return total + sum(by_vin.values())


async def _serve_house(args: argparse.Namespace) -> None:
    from chargebus_sim.house import House  # noqa: PLC0415

    house = House()
    now = time.localtime()
    start_hour = args.start_hour if args.start_hour is not None else now.tm_hour + now.tm_min / 60
    origin = time.monotonic()
    states: dict[str, dict[str, Any]] = {}

    def hour() -> float:
        return float((start_hour + (time.monotonic() - origin) * args.time_scale / 3600) % 24)

    async def session() -> None:
        async with _mqtt_client(args.url) as client:
            await client.subscribe(f"{args.prefix}/evse/+/state", qos=1)
            log.info(f"event=house broker={_shown(args.url)} prefix={args.prefix} start_hour={start_hour:.2f}")

            async def listen() -> None:
                async for message in client.messages:
                    with contextlib.suppress(ValueError, TypeError):
                        payload = message.payload if isinstance(message.payload, bytes) else b""
                        data = json.loads(payload) if payload else {}
                        states[message.topic.value] = data if isinstance(data, dict) else {}

            listener = asyncio.create_task(listen())
            try:
                while True:
                    at = hour()
                    stamp = iso_utc(time.time())
                    for name, watts in (
                        ("pv", house.pv_w(at)),
                        ("house", house.house_w(at)),
                        ("grid", house.grid_w(at, chargers_w(states))),
                    ):
                        reading = {"v": 1, "power_w": watts, "ts": stamp}
                        await client.publish(f"{args.prefix}/power/{name}", json.dumps(reading), qos=1, retain=True)
                    await asyncio.sleep(args.period)
            finally:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await listener

    await _forever_connected("house", args.url, session)


def house_main(argv: Sequence[str]) -> int:
    args = house_args(argv)
    _logging()
    asyncio.run(_until_signalled(_serve_house(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
