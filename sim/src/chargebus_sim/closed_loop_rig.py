"""The closed loop as a user's house has it: real `twc-bridge` and `allocator` processes, two simulated Gen2 slaves
on a pseudo-terminal, and a site meter that sees what the simulated cars really draw.

The slaves are a 32 A and an 80 A unit on a 40 A bus at 240 V, each with a car that ramps in `lag_s` and draws 0.6 A
below its offer. The meter publishes house + Σ cars' draw − PV with uniform noise every `cadence_s` on
`<p>/power/grid`, so every offer the allocator makes comes back in the next reading. PV and house load are functions
of the simulated clock (`pv_w(at)`, `house_w(at)`, epoch seconds), so the caller steps the sun when it likes and
scores the run against the same functions.

Every `sample_s` simulated seconds the rig notes what each slave is offered on the wire (the limit in the master's
last heartbeat) and what its car draws: `samples`, the raw material of the benchmark's and the test's figures.

    async with ClosedLoopRig(broker_url, prefix, workdir, pv_w=sun) as rig:
        await rig.wait_ready()
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import aiomqtt
from chargebus.clock import SystemClock

from chargebus_sim.site_meter import SiteMeter, no_load
from chargebus_sim.twc_slave import SlaveSpec, TwcSlaveSim
from chargebus_sim.world_config import Scalar, toml_value
from chargebus_sim.world_stack import ServiceSet

VOLTS = 240
SMALL_TWC = 0x3232
LARGE_TWC = 0x8080
#: Enough samples for two simulated hours at 0.1 s.
MAX_SAMPLES = 72_000


def default_slaves() -> list[SlaveSpec]:
    """A 32 A and an 80 A unit, each with a car that could take 80 A, ramps in 2 s and draws 0.6 A below its offer."""
    return [
        SlaveSpec(
            slave_id,
            max_amps=max_amps,
            plugged_in=True,
            car_max_amps=80.0,
            lag_s=2.0,
            voltages=(VOLTS, 0, 0),
            answers_vin=False,
            draw_below_offer_a=0.6,
        )
        for slave_id, max_amps in ((SMALL_TWC, 32.0), (LARGE_TWC, 80.0))
    ]


def evse_id(slave_id: int) -> str:
    return f"twc-{slave_id:04x}"


@dataclass(frozen=True, slots=True)
class LoopSample:
    at: float  # simulated epoch seconds
    offers_a: tuple[float, ...]  # per slave, what the master's last heartbeat allowed
    draws_w: tuple[float, ...]  # per slave, what its car really draws
    pv_w: float
    house_w: float

    @property
    def surplus_w(self) -> float:
        return self.pv_w - self.house_w

    @property
    def offered_w(self) -> float:
        return sum(self.offers_a) * VOLTS

    @property
    def grid_w(self) -> float:
        return self.house_w + sum(self.draws_w) - self.pv_w


@dataclass
class ClosedLoopRig:
    mqtt_url: str
    prefix: str
    workdir: Path
    pv_w: Callable[[float], float]
    house_w: Callable[[float], float] = no_load
    cadence_s: float = 5.0
    noise_w: float = 50.0
    seed: int = 1
    #: A timestamped PowerReading (False: a plain number, as many meters are bridged).
    timestamped: bool = False
    time_scale: float = 5.0
    #: `[allocator]` settings on top of solar mode, reserve 0 and the grid meter.
    allocator: Mapping[str, Scalar] = field(default_factory=dict)
    bus_max_amps: int = 40
    slaves: Sequence[SlaveSpec] = field(default_factory=default_slaves)
    sample_s: float = 0.1
    log_level: str = "warning"

    samples: deque[LoopSample] = field(init=False, default_factory=lambda: deque(maxlen=MAX_SAMPLES))
    clock: SystemClock = field(init=False)
    twc: TwcSlaveSim = field(init=False)
    meter: SiteMeter = field(init=False)
    services: ServiceSet = field(init=False)
    _sampler: asyncio.Task[None] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        origin = time.time()
        self.clock = SystemClock(self.time_scale, origin)
        self.twc = TwcSlaveSim(self.slaves, clock=self.clock)
        self.meter = SiteMeter(
            self.mqtt_url, f"{self.prefix}/power/grid", self.twc, self.clock, pv_w=self.pv_w, house_w=self.house_w,
            cadence_s=self.cadence_s, noise_w=self.noise_w, seed=self.seed, plain=not self.timestamped,
        )  # fmt: skip
        self.services = ServiceSet(
            self.workdir / "chargebus.toml", self.time_scale, self.workdir / "logs", log_level=self.log_level,
            only=("allocator", "twc-bridge"), time_origin=origin,
        )  # fmt: skip

    @property
    def evse_ids(self) -> list[str]:
        return [evse_id(spec.slave_id) for spec in self.slaves]

    def write_config(self) -> Path:
        settings: dict[str, Scalar] = {"mode": "solar", "reserve_w": 0, "grid_meter": "grid", **self.allocator}
        lines = [
            "# Written by chargebus_sim.closed_loop_rig.",
            f"state_dir = {toml_value(str(self.workdir / 'state'))}",
            "[mqtt]",
            f"url = {toml_value(self.mqtt_url)}",
            f"prefix = {toml_value(self.prefix)}",
            "ha_discovery = false",
            "[twc]",
            f"port = {toml_value(self.twc.port)}",
            f"voltage_v = {VOLTS}",
            "wiring_max_amps = 80",
            f"bus_max_amps = {self.bus_max_amps}",
            "[allocator]",
            *(f"{key} = {toml_value(value)}" for key, value in settings.items()),
            "[[meters]]",
            'name = "grid"',
            f"topic = {toml_value(self.prefix + '/power/grid')}",
            "stale_after_s = 60",
            "",
        ]
        path = self.services.config
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines), encoding="utf-8")
        return path

    # ----- lifecycle -----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.twc.start()
        self.write_config()
        self.services.start()
        await self.meter.start()
        self._sampler = asyncio.create_task(self._sample_forever(), name="closed-loop-sampler")

    async def stop(self) -> dict[str, int]:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None
        await self.meter.stop()
        codes = await asyncio.to_thread(self.services.stop)
        await self.twc.stop()
        return codes

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until both services are online and the bridge reports every slave online (real seconds)."""
        parts = urlsplit(self.mqtt_url)
        pending = {f"{self.prefix}/{name}/status" for name in ("allocator", "twc-bridge")}
        pending |= {f"{self.prefix}/evse/{evse}/state" for evse in self.evse_ids}
        async with aiomqtt.Client(parts.hostname or "127.0.0.1", parts.port or 1883) as client:
            await client.subscribe(f"{self.prefix}/+/status", qos=1)
            await client.subscribe(f"{self.prefix}/evse/+/state", qos=1)
            async with asyncio.timeout(timeout_s):
                async for message in client.messages:
                    topic = message.topic.value
                    payload = message.payload if isinstance(message.payload, bytes) else b""
                    status_online = topic.endswith("/status") and payload == b"online"
                    evse_online = topic.endswith("/state") and bool(payload) and json.loads(payload).get("online")
                    if status_online or evse_online is True:
                        pending.discard(topic)
                    if not pending:
                        return

    async def wait_idle(self, quiet_s: float = 10.0, timeout_s: float = 900.0) -> None:
        """Until no slave has been offered anything nor drawn for `quiet_s` (simulated seconds; at most `timeout_s`).

        A freshly linked slave is offered the bridge's failsafe current until the allocator's first setpoint, and a
        car that charged on it is then held through its minimum on-time: a run starts once that is over."""
        deadline = self.clock.time() + timeout_s
        quiet_since: float | None = None
        while self.clock.time() < deadline:
            sample = self.sample()
            busy = any(sample.offers_a) or any(sample.draws_w)
            quiet_since = None if busy else (quiet_since if quiet_since is not None else sample.at)
            if quiet_since is not None and sample.at - quiet_since >= quiet_s:
                return
            await self.clock.sleep(self.sample_s)
        raise TimeoutError(f"the slaves were still offered or drawing current after {timeout_s:g} s")

    async def run_for(self, seconds: float) -> None:
        """Let `seconds` of simulated time pass."""
        await self.clock.sleep(seconds)

    # ----- observation ---------------------------------------------------------------------------------------------

    def sample(self) -> LoopSample:
        at, now = self.clock.time(), self.clock.monotonic()
        ids = [spec.slave_id for spec in self.slaves]
        return LoopSample(
            at,
            tuple(self.twc.slave(i).limit_centiamps / 100 for i in ids),
            tuple(self.twc.draw_w(i, now) for i in ids),
            self.pv_w(at),
            self.house_w(at),
        )

    async def _sample_forever(self) -> None:
        while True:
            self.samples.append(self.sample())
            await self.clock.sleep(self.sample_s)
