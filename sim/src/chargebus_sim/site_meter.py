"""A site's grid meter in closed loop with simulated Gen2 slaves: what a real meter at the house connection sees.

The reading is house load + what every simulated car really draws − PV, plus uniform noise, published every
`cadence_s` simulated seconds on one topic, as a plain number of watts (the way many meters are bridged to MQTT)
or as a timestamped PowerReading. Because the cars' own draw is in the reading, whatever the allocator offers comes
back in the next reading: the loop a controller must settle in, not an open-loop test signal.

The PV and house load are functions of the simulated clock, so a benchmark or test can step the sun exactly when
it wants and score the run against the same functions afterwards.

    meter = SiteMeter(url, "chargebus/power/grid", slaves, clock, pv_w=lambda t: 9000.0, cadence_s=5)
    async with meter:
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import aiomqtt
from chargebus.clock import Clock, iso_utc

from chargebus_sim.twc_slave import TwcSlaveSim

#: Real seconds between two checks whether a reading is due.
TICK_S = 0.02


def no_load(_at: float) -> float:
    return 0.0


@dataclass
class SiteMeter:
    mqtt_url: str
    topic: str
    slaves: TwcSlaveSim
    clock: Clock
    #: PV output (W) at a simulated epoch second.
    pv_w: Callable[[float], float]
    #: The house's own consumption (W) at a simulated epoch second.
    house_w: Callable[[float], float] = no_load
    cadence_s: float = 5.0
    noise_w: float = 0.0
    seed: int = 1
    #: A plain number (True) or a PowerReading with `ts` (False).
    plain: bool = True
    #: Every reading published: (simulated epoch s, W).
    published: list[tuple[float, float]] = field(default_factory=list)
    _client: aiomqtt.Client | None = field(init=False, default=None)
    _task: asyncio.Task[None] | None = field(init=False, default=None)
    _random: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)  # noqa: S311 -- reproducible noise, not a secret

    def chargers_w(self) -> float:
        """What the simulated cars draw right now (W)."""
        now = self.clock.monotonic()
        return sum(self.slaves.draw_w(slave_id, now) for slave_id in self.slaves.slave_ids())

    def true_grid_w(self, at: float) -> float:
        """The grid power without noise: import (+) / export (−)."""
        return self.house_w(at) + self.chargers_w() - self.pv_w(at)

    def reading(self, at: float) -> float:
        noise = self._random.uniform(-self.noise_w, self.noise_w) if self.noise_w else 0.0
        return round(self.true_grid_w(at) + noise, 1)

    async def start(self) -> None:
        parts = urlsplit(self.mqtt_url)
        self._client = aiomqtt.Client(
            parts.hostname or "127.0.0.1",
            parts.port or 1883,
            identifier=f"chargebus-sim-site-meter-{id(self):x}",
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
        )
        await self._client.__aenter__()
        self._task = asyncio.create_task(self._publish_forever(), name="site-meter")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                await asyncio.wait_for(self._client.__aexit__(None, None, None), 2.0)
            self._client = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _publish_forever(self) -> None:
        assert self._client is not None
        due = self.clock.time()
        while True:
            now = self.clock.time()
            if now >= due:
                watts = self.reading(now)
                self.published.append((now, watts))
                payload = f"{watts:.0f}" if self.plain else json.dumps({"v": 1, "power_w": watts, "ts": iso_utc(now)})
                await self._client.publish(self.topic, payload, qos=0)
                due += self.cadence_s
                if due < now:  # a stalled loop skips readings rather than bursting them
                    due = now + self.cadence_s
            await asyncio.sleep(TICK_S)
