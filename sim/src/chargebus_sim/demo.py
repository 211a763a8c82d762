"""`chargebus demo` (`make demo`): a broker, the simulated world and every installed service, with a live view. The
command comes from this package's `chargebus.commands` entry point, so `chargebus` itself never imports the simulator.

What runs: the local `mosquitto` (else the embedded broker); the world of `chargebus_sim.world` in this process (two
Gen2 TWCs on a pty with car A plugged into TWC A, car B on a mobile connector behind the fake Fleet API, TeslaMate,
a house with PV on a sunny-then-cloudy day); the four services as child processes, configured by the world's
`.demo/chargebus.toml`. The view shows charge points, allocations with their reasons, solar and grid, a few times a
second. Ctrl-C, SIGTERM or `--duration` stop everything: services first (they publish `offline`), then the world
(ptys closed, HTTP servers stopped), then the broker.

Time: `--time-scale` is how fast the simulated day runs. The services' clocks run at most `MAX_SERVICE_SCALE` times
faster than real time — a Gen2 TWC is dropped after 26 s without a heartbeat and reads stale after 6 s, which at
600× would be 43 ms and 10 ms — and the sun makes up the rest, so the bus keeps realistic timing at any scale.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
from chargebus.broker import BrokerProcess, local_broker
from chargebus.runner import LOG_FORMAT
from chargebus.topics import DEFAULT_PREFIX
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from chargebus_sim.house import HomeBattery
from chargebus_sim.world import VIN_A, VIN_B, World
from chargebus_sim.world_stack import ServiceSet

DEMO_DIR = Path(".demo")
#: The simulated day starts in the morning, so the cars start within the first seconds.
START_HOUR = 8.0
#: The fastest clock the services and the TWC bus get (see the module docstring).
MAX_SERVICE_SCALE = 20.0
REFRESH_PER_S = 4
BRIDGES = {"twc2": "twc-bridge", "vehicle": "tesla-bridge", "twc3": "tesla-bridge"}


def _yes_no(value: Any) -> str:
    return "yes" if value is True else "no" if value is False else "?"


def _watts(value: Any) -> str:
    return "-" if value is None else f"{float(value):,.0f}"


@dataclass
class BusView:
    """What the live view shows, folded from the messages under the prefix."""

    prefix: str
    status: dict[str, str] = field(default_factory=dict)
    power: dict[str, float] = field(default_factory=dict)
    evses: dict[str, dict[str, Any]] = field(default_factory=dict)
    allocator: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def fold(self, topic: str, payload: bytes) -> None:
        parts = topic.removeprefix(self.prefix + "/").split("/")
        try:
            if len(parts) == 2 and parts[1] == "status":
                self.status[parts[0]] = payload.decode()
            elif parts[0] == "power" and len(parts) == 2 and payload:
                data = json.loads(payload)
                self.power[parts[1]] = float(data["power_w"] if isinstance(data, dict) else data)
            elif parts[0] == "evse" and len(parts) == 3 and parts[2] == "state":
                if payload:
                    self.evses[parts[1]] = json.loads(payload)
                else:
                    self.evses.pop(parts[1], None)
            elif parts == ["allocator", "state"] and payload:
                self.allocator = json.loads(payload)
            elif len(parts) == 2 and parts[1] == "error":
                event = json.loads(payload)
                self.errors = [*self.errors[-4:], f"{parts[0]}: {event.get('error', '?')}"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError, AttributeError):
            self.errors = [*self.errors[-4:], f"unreadable message on {topic}"]

    def charge_points(self) -> list[str]:
        """One line per EVSE, with the bridge that publishes it (for the closing summary)."""
        return [
            f"{evse_id} ({BRIDGES.get(str(evse.get('kind')), '?')}, VIN {evse.get('vin') or '-'})"
            for evse_id, evse in sorted(self.evses.items())
        ]

    def render(self, sim_hour: float) -> Group:
        head = Table.grid(padding=(0, 3))
        cells = [f"[bold]sun[/] {int(sim_hour):02d}:{int(sim_hour % 1 * 60):02d}"]
        cells += [f"[bold]{name}[/] {watts:,.0f} W" for name, watts in sorted(self.power.items())]
        mode = self.allocator.get("mode")
        if mode is not None:
            cells += [
                f"[bold]mode[/] {mode}",
                f"[bold]budget[/] {_watts(self.allocator.get('available_w'))} W",
                f"[bold]surplus[/] {_watts(self.allocator.get('surplus_w'))} W",
            ]
        site = self.allocator.get("site")
        if isinstance(site, dict) and site.get("battery_soc_pct") is not None:
            cells.append(f"[bold]battery[/] {site['battery_soc_pct']:.0f} %")
        head.add_row(*cells)
        services = "   ".join(
            f"{name} [green]{state}[/]" if state == "online" else f"{name} [red]{state}[/]"
            for name, state in sorted(self.status.items())
        )
        return Group(
            head, services or "[dim]waiting for the services…[/]", self._points(), self._groups(), self._errors()
        )

    def _points(self) -> Table:
        points = Table(title="charge points (EVSEs)", show_edge=False, title_justify="left")
        for column in ("evse", "bridge", "vin", "plugged", "power W", "offered A", "status"):
            points.add_column(column)
        for evse_id, evse in sorted(self.evses.items()):
            online = evse.get("online") and not evse.get("stale")
            points.add_row(
                evse_id if online else f"[red]{evse_id}[/]",
                BRIDGES.get(str(evse.get("kind")), "?"),
                str(evse.get("vin") or "-"),
                _yes_no(evse.get("plugged_in")),
                _watts(evse.get("power_w")),
                str(evse.get("offered_a") if evse.get("offered_a") is not None else "-"),
                str(evse.get("status_text") or evse.get("state_code") or "-"),
            )
        return points

    def _groups(self) -> Table:
        groups = Table(title="allocations (after the VIN merge)", show_edge=False, title_justify="left")
        for column in ("charge point", "prio", "mode", "state", "allocated", "reason"):
            groups.add_column(column)
        raw = self.allocator.get("groups")
        for group in raw if isinstance(raw, list) else []:
            amps = group.get("allocated_a")
            groups.add_row(
                " + ".join(group.get("evse_ids") or []),
                str(group.get("priority")),
                str(group.get("mode")),
                str(group.get("state")),
                f"{_watts(group.get('allocated_w'))} W" + (f" / {amps:g} A" if amps else ""),
                str(group.get("reason")),
            )
        return groups

    def _errors(self) -> str:
        return "\n".join(f"[yellow]error:[/] {e}" for e in self.errors) or "[dim]no errors[/]"


def split_scale(time_scale: float) -> tuple[float, float]:
    """(services' clock scale, how much faster the sun runs than that clock) for a requested day speed."""
    if not time_scale > 0:
        raise ValueError(f"time scale must be positive, got {time_scale}")
    service_scale = min(time_scale, MAX_SERVICE_SCALE)
    return service_scale, time_scale / service_scale


def _introduce(console: Console, broker: BrokerProcess, prefix: str, service_scale: float, day_factor: float) -> None:
    port = broker.port
    console.print(f"[bold]broker[/] {broker.url} ({broker.kind})   [bold]prefix[/] {prefix}")
    console.print(f"watch:    mosquitto_sub -h 127.0.0.1 -p {port} -v -t '{prefix}/#'")
    console.print(f"mode:     mosquitto_pub -h 127.0.0.1 -p {port} -t '{prefix}/allocator/mode/set' -m now")
    console.print(f"priority: mosquitto_pub -h 127.0.0.1 -p {port} -t '{prefix}/vehicle/{VIN_B}/priority/set' -m 50")
    console.print(f"boost:    mosquitto_pub -h 127.0.0.1 -p {port} -t '{prefix}/allocator/charge_now/set' -m 3600")
    console.print(f"energy:   mosquitto_sub -h 127.0.0.1 -p {port} -v -t '{prefix}/history/energy/#'")
    console.print(
        f"time: services and TWC bus {service_scale:g}x, the sun {service_scale * day_factor:g}x real time; "
        f"car A ({VIN_A}) is on TWC 4a1b, car B ({VIN_B}) on a mobile connector"
    )


async def _watch(url: str, prefix: str, view: BusView) -> None:
    parts = urlsplit(url)
    async with aiomqtt.Client(parts.hostname or "127.0.0.1", parts.port or 1883) as client:
        await client.subscribe(f"{prefix}/#", qos=1)
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
            view.fold(message.topic.value, payload)


async def _show(console: Console, world: World, view: BusView, stop: asyncio.Event, duration_s: float | None) -> None:
    loop = asyncio.get_running_loop()
    deadline = None if duration_s is None else loop.time() + duration_s
    with Live(view.render(world.hour_of_day()), console=console, refresh_per_second=REFRESH_PER_S) as live:
        while not stop.is_set():
            live.update(view.render(world.hour_of_day()))
            if deadline is not None and loop.time() >= deadline:
                stop.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1 / REFRESH_PER_S)


async def _run(
    broker: BrokerProcess,
    prefix: str,
    *,
    time_scale: float,
    duration_s: float | None,
    console: Console,
    workdir: Path,
) -> BusView:
    service_scale, day_factor = split_scale(time_scale)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    view = BusView(prefix)
    protocol = "3.1.1" if broker.kind == "embedded" else "auto"
    world = World(
        broker.url,
        prefix,
        workdir,
        time_scale=service_scale,
        day_factor=day_factor,
        start_hour=START_HOUR,
        mqtt_protocol=protocol,
        battery=HomeBattery(capacity_wh=10_000, max_charge_w=5_000, max_discharge_w=5_000, soc_pct=60.0),
    )
    async with world:
        config = world.write_config(workdir / "chargebus.toml")
        _introduce(console, broker, prefix, service_scale, day_factor)
        services = ServiceSet(config, service_scale, workdir / "logs")
        watcher = asyncio.create_task(_watch(broker.url, prefix, view))
        try:
            for name in services.start():
                console.print(f"started {name}")
            console.print(f"logs: {DEMO_DIR / 'logs'}/<service>.log and world.log   Ctrl-C stops everything\n")
            await _show(console, world, view, stop, duration_s)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await watcher
            await asyncio.to_thread(services.stop)
    return view


def run_demo(prefix: str = "chargebus", time_scale: float = 60.0, duration_s: float | None = None) -> int:
    console = Console()
    workdir = DEMO_DIR.absolute()
    (workdir / "broker").mkdir(parents=True, exist_ok=True)
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    # The terminal belongs to the live view: this process's own log lines (the world's, the MQTT client's) go to a
    # file like the services' do.
    logging.basicConfig(filename=workdir / "logs" / "world.log", level=logging.INFO, format=LOG_FORMAT, force=True)
    broker = local_broker(workdir / "broker").start()
    view: BusView | None = None
    try:
        view = asyncio.run(
            _run(broker, prefix, time_scale=time_scale, duration_s=duration_s, console=console, workdir=workdir)
        )
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop()
    console.line()
    if view is not None:
        console.print("charge points seen: " + ("; ".join(view.charge_points()) or "none"))
    console.print("demo stopped: services, simulators and broker are down")
    return 0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="chargebus demo", description="broker, simulators and services with a live view"
    )
    parser.add_argument("--prefix", default=DEFAULT_PREFIX)
    parser.add_argument("--time-scale", type=float, default=60.0, help="simulated seconds per real second")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many real seconds")
    args = parser.parse_args(list(argv))
    if not args.time_scale > 0:
        parser.error("--time-scale must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """`chargebus demo [--prefix P] [--time-scale X] [--duration S]`."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return run_demo(prefix=args.prefix, time_scale=args.time_scale, duration_s=args.duration)
