"""`chargebus demo`: a broker, the simulators and every installed service, with a live view until Ctrl-C.

It grows with the project: each service that registers a `chargebus.services` entry point is started; the house
model publishes grid, PV and house power on `<p>/power/…` in accelerated time. Everything is a child process or
an asyncio task of this one, and everything is stopped on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
from chargebus.broker import BrokerProcess, local_broker
from chargebus.cli import installed_services
from chargebus.clock import SystemClock, iso_utc
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from chargebus_sim.house import House

DEMO_DIR = Path(".demo")
START_HOUR = 8.0  # the simulated day starts in the morning, so the sun rises within the first minutes


@dataclass
class BusView:
    """What the live table shows, folded from the messages under the prefix."""

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
            elif parts[0] == "power" and len(parts) == 2:
                data = json.loads(payload)
                self.power[parts[1]] = float(data["power_w"] if isinstance(data, dict) else data)
            elif parts[0] == "evse" and parts[-1] == "state" and payload:
                self.evses[parts[1]] = json.loads(payload)
            elif parts == ["allocator", "state"] and payload:
                self.allocator = json.loads(payload)
            elif len(parts) == 2 and parts[1] == "error":
                self.errors = [*self.errors[-4:], json.loads(payload).get("error", "?")]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            self.errors = [*self.errors[-4:], f"unreadable message on {topic}"]

    def render(self, sim_hour: float) -> Group:
        head = Table.grid(padding=(0, 2))
        head.add_row(
            f"[bold]simulated[/] {int(sim_hour):02d}:{int(sim_hour % 1 * 60):02d}",
            *(f"[bold]{name}[/] {watts:,.0f} W" for name, watts in sorted(self.power.items())),
        )
        services = Table(title="services", show_edge=False)
        services.add_column("service")
        services.add_column("status")
        for name, state in sorted(self.status.items()):
            services.add_row(name, f"[green]{state}[/]" if state == "online" else f"[red]{state}[/]")
        points = Table(title="charge points", show_edge=False)
        for column in ("evse", "vin", "power W", "offered A", "state"):
            points.add_column(column)
        for evse_id, evse in sorted(self.evses.items()):
            points.add_row(
                evse_id,
                str(evse.get("vin") or "-"),
                f"{float(evse.get('power_w') or 0):,.0f}",
                str(evse.get("offered_a") if evse.get("offered_a") is not None else "-"),
                str(evse.get("status_text") or "-"),
            )
        groups = Table(title="allocations", show_edge=False)
        for column in ("charge point", "allocated W", "state", "reason"):
            groups.add_column(column)
        raw_groups = self.allocator.get("groups", [])
        for group in raw_groups if isinstance(raw_groups, list) else []:
            groups.add_row(
                str(group.get("primary_evse_id")),
                f"{float(group.get('allocated_w') or 0):,.0f}",
                str(group.get("state")),
                str(group.get("reason")),
            )
        footer = "\n".join(f"[yellow]error:[/] {e}" for e in self.errors) or "[dim]no errors[/]"
        return Group(head, services, points, groups, footer)


def _demo_config(broker: BrokerProcess, prefix: str) -> Path:
    DEMO_DIR.mkdir(exist_ok=True)
    config = DEMO_DIR / "chargebus.toml"
    protocol = "3.1.1" if broker.kind == "embedded" else "auto"
    config.write_text(
        f'state_dir = "{(DEMO_DIR / "state").absolute()}"\n'
        f'[mqtt]\nurl = "{broker.url}"\nprefix = "{prefix}"\nprotocol = "{protocol}"\n'
        '[allocator]\nmode = "solar"\ngrid_meter = "grid"\n',
        encoding="utf-8",
    )
    return config


async def _house_task(
    url: str, prefix: str, clock: SystemClock, *, origin: float, view: BusView, stop: asyncio.Event
) -> None:
    house = House()
    host, port = url.removeprefix("mqtt://").split(":")
    async with aiomqtt.Client(host, int(port), protocol=aiomqtt.ProtocolVersion.V311) as client:
        while not stop.is_set():
            hour = _sim_hour(clock, origin)
            chargers = sum(float(s.get("power_w") or 0) for s in view.evses.values())
            stamp = iso_utc(time.time())
            for name, watts in (
                ("pv", house.pv_w(hour)),
                ("house", house.house_w(hour)),
                ("grid", house.grid_w(hour, chargers)),
            ):
                reading = {"v": 1, "power_w": watts, "ts": stamp}
                await client.publish(f"{prefix}/power/{name}", json.dumps(reading), qos=1, retain=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


def _sim_hour(clock: SystemClock, origin: float) -> float:
    """Simulated hour of day: the demo day starts at START_HOUR when the demo starts."""
    return (START_HOUR + (clock.time() - origin) / 3600.0) % 24


async def _watch(url: str, prefix: str, view: BusView, stop: asyncio.Event) -> None:
    host, port = url.removeprefix("mqtt://").split(":")
    async with aiomqtt.Client(host, int(port), protocol=aiomqtt.ProtocolVersion.V311) as client:
        await client.subscribe(f"{prefix}/#", qos=1)
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
            view.fold(message.topic.value, payload)
            if stop.is_set():
                return


def _start_children(
    broker: BrokerProcess, prefix: str, time_scale: float, console: Console
) -> list[subprocess.Popen[bytes]]:
    config = _demo_config(broker, prefix)
    console.print(f"[bold]broker[/] {broker.url} ({broker.kind})   [bold]prefix[/] {prefix}")
    console.print(f"watch:   mosquitto_sub -h 127.0.0.1 -p {broker.port} -v -t '{prefix}/#'")
    console.print(f"command: mosquitto_pub -h 127.0.0.1 -p {broker.port} -t '{prefix}/allocator/mode/set' -m now")
    env = {**os.environ, "CHARGEBUS_CONFIG": str(config), "CHARGEBUS_TIME_SCALE": str(time_scale)}
    log = (DEMO_DIR / "services.log").open("ab")
    children = []
    for name, module in installed_services().items():
        console.print(f"starting {name}")
        command = [sys.executable, "-m", module]
        children.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))  # noqa: S603
    console.print(f"service logs: {DEMO_DIR / 'services.log'}   Ctrl-C stops everything\n")
    return children


async def _live(url: str, prefix: str, time_scale: float, duration_s: float | None, console: Console) -> None:
    clock = SystemClock(time_scale)
    origin = clock.time()
    view = BusView(prefix)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = [
        asyncio.create_task(_house_task(url, prefix, clock, origin=origin, view=view, stop=stop)),
        asyncio.create_task(_watch(url, prefix, view, stop)),
    ]
    deadline = None if duration_s is None else loop.time() + duration_s
    with Live(view.render(START_HOUR), console=console, refresh_per_second=4) as live:
        while not stop.is_set():
            live.update(view.render(_sim_hour(clock, origin)))
            if deadline is not None and loop.time() >= deadline:
                stop.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def run_demo(prefix: str = "chargebus", time_scale: float = 60.0, duration_s: float | None = None) -> int:
    console = Console()
    workdir = DEMO_DIR.absolute() / "broker"
    workdir.mkdir(parents=True, exist_ok=True)
    broker = local_broker(workdir).start()
    children: list[subprocess.Popen[bytes]] = []
    try:
        children = _start_children(broker, prefix, time_scale, console)
        asyncio.run(_live(broker.url, prefix, time_scale, duration_s, console))
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
        broker.stop()
        console.print("demo stopped: services, simulators and broker are down")
    return 0
