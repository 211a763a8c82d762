"""What the fault tests share: one `chargebus.toml` for every service, the services as real processes, a recorder
that notes when each message arrived, a TCP gate that can cut a server off, and the whole stack (all four services,
two simulated Gen2 TWCs on a pty, the fake Fleet API and a TeslaMate stand-in) on one broker.

Time: the stack runs at real time (`CHARGEBUS_TIME_SCALE` = 1) with a short `setpoint_ttl_s`. Each process's
accelerated clock starts at its own start, so with a scale above 1 two processes disagree on the epoch time by
(difference of their starts) × (scale − 1): a restarted allocator would send setpoints that a bridge started earlier
reads as long expired. Tests that restart a service which exchanges absolute times therefore run at scale 1; tests of
one process against simulators use the scale freely, and measure intervals on a clock with the same scale.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from chargebus.clock import SystemClock
from chargebus_sim.fleet_api import FakeFleetApi, RecordedCall
from chargebus_sim.teslamate import TeslaMateSim
from chargebus_sim.twc_slave import LIMIT_COMMANDS, SlaveSpec, TwcSlaveSim
from chargebus_sim.twc_wire import MasterHeartbeat

from tests.support.bus import Received, Recorder, ServiceProcess

SERVICES: Mapping[str, str] = {
    "allocator": "chargebus_allocator",
    "twc-bridge": "chargebus_twc",
    "tesla-bridge": "chargebus_tesla",
    "history": "chargebus_history",
}
VIN = "5YJ3E1EA8KF000001"
TWC_A, TWC_B = 0x4A1B, 0x5C2D
HOME = {"lat": 52.52, "lon": 13.40, "radius_m": 150}

# The stack's electrical settings: distinct values for "allocated", "failsafe" and every limit, so an offer on the
# wire tells which rule produced it.
TWC_WIRING_A = 16
TWC_BUS_A = 32
TWC_FAILSAFE_A = 6
TESLA_FAILSAFE_A = 8
CAR_MAX_A = 32
STACK_TTL_S = 10


# ----- configuration -------------------------------------------------------------------------------------------------


def _toml_key(key: str) -> str:
    return json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Path):
        return json.dumps(str(value))
    return json.dumps(value)  # strings, numbers and booleans are written the same in TOML


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, Mapping) for item in value)


def toml_text(document: Mapping[str, Any]) -> str:
    """A small TOML writer: scalars and inline values first, then tables (`[a."b"]`), then arrays of tables."""
    lines: list[str] = []

    def emit(table: Mapping[str, Any], path: list[str]) -> None:
        nested = {k: v for k, v in table.items() if isinstance(v, Mapping) and k not in inline}
        arrays = {k: v for k, v in table.items() if _is_table_array(v)}
        for key, value in table.items():
            if key not in nested and key not in arrays:
                lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
        for key, value in nested.items():
            lines.append(f"[{'.'.join(_toml_key(p) for p in [*path, key])}]")
            emit(value, [*path, key])
        for key, items in arrays.items():
            for item in items:
                lines.append(f"[[{'.'.join(_toml_key(p) for p in [*path, key])}]]")
                emit(item, [*path, key])

    inline = {"home", "prices", "vin_hints"}  # written inline, as in the contract's example
    emit(document, [])
    return "\n".join(lines) + "\n"


def write_config(path: Path, document: Mapping[str, Any]) -> Path:
    path.write_text(toml_text(document), encoding="utf-8")
    return path


def tesla_section(api: FakeFleetApi, token_file: Path, **settings: Any) -> dict[str, Any]:
    """A `[tesla]` section pointing at the fake Fleet API, with a freshly seeded token file."""
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token_file.write_text(json.dumps(api.token_file_content()), encoding="utf-8")
    token_file.chmod(0o600)
    vehicle = {"vin": VIN, "name": "Model 3", "teslamate_car_id": 1, "home": HOME}
    section: dict[str, Any] = {
        "api_base": api.url,
        "command_base": api.proxy_url,
        "token_url": api.token_url,
        "client_id": api.client_id,
        "token_file": token_file,
        "min_amps": 5,
        "vehicles": [vehicle],
    }
    section.update(settings)
    return section


# ----- processes ---------------------------------------------------------------------------------------------------


def service_process(
    name: str, config: Path, broker_url: str, prefix: str, *, scale: float = 1.0, log_level: str = "info"
) -> ServiceProcess:
    """One service as a user starts it: `python -m <package> --config …`, broker and prefix from the environment."""
    env = {
        "CHARGEBUS_CONFIG": "",
        "CHARGEBUS_MQTT_URL": broker_url,
        "CHARGEBUS_TOPIC_PREFIX": prefix,
        "CHARGEBUS_TIME_SCALE": str(scale),
    }
    argv = [sys.executable, "-m", SERVICES[name], "--config", str(config), "--log-level", log_level]
    return ServiceProcess(argv, env)


def assert_clean_log(process: ServiceProcess) -> None:
    assert "Traceback" not in process.log(), process.log()[-4000:]


# ----- watching MQTT with arrival times ------------------------------------------------------------------------------


@dataclass
class TimedRecorder(Recorder):
    """A Recorder that also notes the monotonic time each message arrived (`times[i]` for `messages[i]`)."""

    times: list[float] = field(default_factory=list)

    async def _pump(self) -> None:
        assert self._client is not None
        async for message in self._client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
            self.times.append(time.monotonic())
            self.messages.append(Received(message.topic.value, payload, bool(message.retain)))
            self._changed.set()

    def arrivals(self, topic: str, predicate: Callable[[Received], bool] = lambda _m: True) -> list[float]:
        return [t for t, m in zip(self.times, self.messages, strict=True) if m.topic == topic and predicate(m)]


def last_json(bus: Recorder, topic: str) -> Any:
    message = bus.last(topic)
    return message.json() if message is not None and message.payload else None


# ----- the TWC bus as the simulated slaves saw it ------------------------------------------------------------------


@dataclass(frozen=True)
class Offer:
    at: float  # the simulator's monotonic clock (= time.monotonic() at scale 1)
    slave_id: int
    amps: float


def offers(sim: TwcSlaveSim, since: float = float("-inf")) -> list[Offer]:
    """Every limit a master heartbeat set, in order, from `since` on."""
    return [
        Offer(frame.at, frame.message.slave_id, frame.message.limit_centiamps / 100)
        for frame in sim.received
        if isinstance(frame.message, MasterHeartbeat) and frame.message.command in LIMIT_COMMANDS and frame.at >= since
    ]


def last_offer(sim: TwcSlaveSim, slave_id: int) -> Offer | None:
    found = [o for o in offers(sim) if o.slave_id == slave_id]
    return found[-1] if found else None


async def wait_offers(sim: TwcSlaveSim, wanted: Mapping[int, float], timeout: float = 15.0, what: str = "") -> float:
    """Wait until the latest offer of every slave in `wanted` is its amps; return when that was first true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        latest = {slave_id: last_offer(sim, slave_id) for slave_id in wanted}
        if all(o is not None and o.amps == wanted[s] for s, o in latest.items()):
            return max(o.at for o in latest.values() if o is not None)
        if loop.time() > deadline:
            seen = {f"{s:04x}": [o.amps for o in offers(sim) if o.slave_id == s][-8:] for s in wanted}
            raise AssertionError(f"timed out after {timeout} s waiting for offers {what or wanted}; last: {seen}")
        await asyncio.sleep(0.05)


def assert_bus_cap(sim: TwcSlaveSim, bus_max_a: float, wiring_a: float) -> None:
    """At no heartbeat did the offers in force add up to more than the bus cap, nor one exceed its wiring limit."""
    applied: dict[int, float] = {}
    for offer in offers(sim):
        assert offer.amps <= wiring_a, offer
        assert not 0 < offer.amps < 5, offer  # never 1-4 A
        applied[offer.slave_id] = offer.amps
        assert sum(applied.values()) <= bus_max_a, applied
    assert sim.dangerous_frames() == []


# ----- a server that can be cut off ----------------------------------------------------------------------------------


class TcpGate:
    """A TCP forwarder on a fixed local port in front of `target_port`.

    `cut()` stops listening and resets every live connection (a server that went away: connections refused);
    `restore()` listens again on the same port.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._live: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._live):
            writer.transport.abort()
        self._live.clear()
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.restore()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.cut()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._live.update((writer, upstream_writer))

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(pump(reader, upstream_writer), pump(upstream_reader, writer))
        self._live.difference_update((writer, upstream_writer))


# ----- the Fleet API side ------------------------------------------------------------------------------------------


def fleet_calls(api: FakeFleetApi, *categories: str, since: float = float("-inf")) -> list[RecordedCall]:
    return [c for c in api.calls if (not categories or c.category in categories) and c.at >= since]


def amps_commands(api: FakeFleetApi, since: float = float("-inf")) -> list[int]:
    return [
        int(c.body["charging_amps"])
        for c in fleet_calls(api, "command", since=since)
        if c.path.endswith("/set_charging_amps") and c.status == 200 and isinstance(c.body, dict)
    ]


async def teslamate_feed(tm: TeslaMateSim, period_s: float = 0.25) -> None:
    """TeslaMate's summaries at its own cadence, until cancelled."""
    while True:
        await tm.tick()
        await asyncio.sleep(period_s)


@contextlib.asynccontextmanager
async def background(coroutine: Any) -> AsyncIterator[asyncio.Task[Any]]:
    task = asyncio.ensure_future(coroutine)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# ----- the whole stack -----------------------------------------------------------------------------------------------


@dataclass
class Stack:
    """All four services as processes on one broker, with their simulators (see `running_stack`)."""

    broker_url: str
    prefix: str
    workdir: Path
    config: Path
    sim: TwcSlaveSim
    api: FakeFleetApi
    processes: dict[str, ServiceProcess] = field(default_factory=dict)
    starts: dict[str, int] = field(default_factory=dict)
    tm: TeslaMateSim | None = None
    _feed: asyncio.Task[None] | None = None

    def topic(self, rest: str) -> str:
        return f"{self.prefix}/{rest}"

    def start(self, name: str) -> ServiceProcess:
        self.starts[name] = self.starts.get(name, 0) + 1
        process = service_process(name, self.config, self.broker_url, self.prefix)
        self.processes[name] = process.start(self.workdir / f"{name}-{self.starts[name]}.log")
        return process

    def kill(self, name: str) -> None:
        process = self.processes[name]
        process.kill(signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL

    def alive(self) -> dict[str, bool]:
        return {name: process.alive() for name, process in self.processes.items()}

    async def connect_teslamate(self) -> None:
        """TeslaMate connects and publishes the fake car's values at its cadence."""
        tm = TeslaMateSim(self.broker_url, f"{self.prefix}/teslamate")
        await tm.__aenter__()
        if self.tm is not None:  # a reconnect: TeslaMate's memory of what it published lives on
            tm.cars = self.tm.cars
        tm.follow(1, self.api, VIN)
        if tm.car(1).last_summary_at is None:  # the first summary at once, before any service starts
            await tm.summary(1, **tm.values_of(self.api.car(VIN), time.time()))
        self.tm = tm
        self._feed = asyncio.create_task(teslamate_feed(tm))

    async def disconnect_teslamate(self) -> None:
        if self._feed is not None:
            self._feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._feed
            self._feed = None
        if self.tm is not None:
            with contextlib.suppress(Exception):
                await self.tm.__aexit__(None, None, None)

    def stop_all(self) -> None:
        for process in self.processes.values():
            process.stop()


def stack_document(workdir: Path, sim: TwcSlaveSim, api: FakeFleetApi, prefix: str) -> dict[str, Any]:
    return {
        "state_dir": workdir / "state",
        "mqtt": {"ha_discovery": False},
        "twc": {
            "port": sim.port,
            "voltage_v": 240,
            "wiring_max_amps": TWC_WIRING_A,
            "bus_max_amps": TWC_BUS_A,
            "min_amps": 6,
            "failsafe_amps": TWC_FAILSAFE_A,
        },
        "tesla": tesla_section(
            api,
            workdir / "state" / "tesla-token.json",
            teslamate_prefix=f"{prefix}/teslamate",
            command_min_interval_s=1,
            failsafe_amps=TESLA_FAILSAFE_A,
        ),
        "allocator": {
            "mode": "now",
            "setpoint_ttl_s": STACK_TTL_S,
            "enable_delay_s": 0,
            "disable_delay_s": 0,
            "min_on_s": 0,
            "min_off_s": 0,
            "reserve_w": 0,
        },
        "history": {"database": f"sqlite:///{workdir / 'history.sqlite'}", "timezone": "UTC"},
    }


@contextlib.asynccontextmanager
async def running_stack(broker_url: str, prefix: str, workdir: Path) -> AsyncIterator[Stack]:
    """Two TWCs (no VIN) plugged in on one bus, a car charging at 16 A behind the fake Fleet API and followed by
    TeslaMate, and the four services in mode `now`: each TWC is offered its wiring limit and the car its maximum.

    The allocator starts first. All processes run at real time (see the module's docstring)."""
    specs = [
        SlaveSpec(slave_id, plugged_in=True, lag_s=0.2, voltages=(240, 0, 0), answers_vin=False)
        for slave_id in (TWC_A, TWC_B)
    ]
    async with TwcSlaveSim(specs) as sim, FakeFleetApi(clock=SystemClock().time) as api:
        api.add_car(VIN, state="online", charging_state="Charging", charge_amps=16)
        config = write_config(workdir / "chargebus.toml", stack_document(workdir, sim, api, prefix))
        stack = Stack(broker_url, prefix, workdir, config, sim, api)
        await stack.connect_teslamate()
        try:
            for name in SERVICES:
                stack.start(name)
            yield stack
        finally:
            await asyncio.to_thread(stack.stop_all)  # the simulators in this loop keep answering meanwhile
            await stack.disconnect_teslamate()


async def wait_stack_charging(stack: Stack, bus: Recorder, timeout: float = 30.0) -> None:
    """Every service online, both TWCs offered their wiring limit and the car told its maximum."""
    for name in SERVICES:
        await bus.wait_message(stack.topic(f"{name}/status"), lambda m: m.text == "online", timeout=timeout)
    wanted = dict.fromkeys((TWC_A, TWC_B), float(TWC_WIRING_A))
    await wait_offers(stack.sim, wanted, timeout=timeout, what="each TWC at its wiring limit")
    await bus.wait_for(lambda: CAR_MAX_A in amps_commands(stack.api), timeout=timeout, what="the car told 32 A")
