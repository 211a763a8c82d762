"""A TeslaMate stand-in: publishes `teslamate/cars/<id>/<field>` the way TeslaMate does, for tests, bench and demo.

What it copies from TeslaMate: its real field names; plain-text payloads (`true`, `16`, `48.9`, ISO
times, JSON for `location`); every value retained at QoS 1 and published only when it changed; an empty string for
a nulled value (which deletes the retained copy) for the fields TeslaMate treats that way; `healthy` never
retained but sent with every summary, so it works as a heartbeat; an empty retained `healthy` at start-up to wipe
an old one. Cadence: a summary every 30 s while the car sleeps, every 60 s online, about every 20 s while
charging on AC, none while `suspended`.

A car's values come either from `set_values()` (scripted tests) or from a car of the fake Fleet API
(`follow()`): the simulator then reads that car directly, as TeslaMate's own polling would, without touching the
fake API's request log or the car's sleep timer. Time comes from an injectable clock.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self
from urllib.parse import urlsplit

import aiomqtt

from chargebus_sim.fleet_api import FakeCar, FakeFleetApi

#: TeslaMate publishes these as "" when the car reports null (all others are simply not published).
NULLABLE_FIELDS = frozenset(
    {
        "charge_energy_added",
        "charger_actual_current",
        "charger_phases",
        "charger_power",
        "charger_voltage",
        "scheduled_charging_start_time",
        "time_to_full_charge",
        "shift_state",
        "geofence",
        "trim_badging",
    }
)
#: Seconds between summaries per TeslaMate state (None: silent, as while `suspended`).
CADENCE_S: Mapping[str, float | None] = {
    "asleep": 30.0,
    "offline": 30.0,
    "online": 60.0,
    "charging": 20.0,
    "driving": 2.5,
    "suspended": None,
    "updating": 15.0,
}

Value = str | int | float | bool | None


def format_value(value: Value | Mapping[str, Any]) -> str:
    """A value as TeslaMate's Elixir `to_string` writes it; JSON for objects."""
    if isinstance(value, Mapping):
        return json.dumps(dict(value), separators=(",", ":"))
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


@dataclass
class SimCar:
    car_id: int
    published: dict[str, str] = field(default_factory=dict)
    values: dict[str, str | None] = field(default_factory=dict)
    followed: Callable[[], FakeCar] | None = None
    geofence: str | None = None
    last_summary_at: float | None = None


class TeslaMateSim:
    """Connect with `async with TeslaMateSim(url) as tm:`; publish with `set_values`, `summary`, `tick` or `run`."""

    def __init__(
        self,
        url: str,
        prefix: str = "teslamate",
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] | None = None,
        cadence: Mapping[str, float | None] = CADENCE_S,
    ) -> None:
        self.url = url
        self.cadence = dict(cadence)
        self.prefix = prefix.strip("/")
        self._clock = clock
        self._sleep = sleep or asyncio.sleep
        self.cars: dict[int, SimCar] = {}
        self.published = 0
        self._client: aiomqtt.Client | None = None

    async def __aenter__(self) -> Self:
        parts = urlsplit(self.url)
        # TCP_NODELAY: TeslaMate's summaries are bursts of small messages; Nagle would hold each for the broker's ACK.
        self._client = aiomqtt.Client(
            parts.hostname or "127.0.0.1",
            parts.port or 1883,
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
        )
        await self._client.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.__aexit__(None, None, None)
            self._client = None

    def topic(self, car_id: int, name: str) -> str:
        return f"{self.prefix}/cars/{car_id}/{name}"

    def car(self, car_id: int) -> SimCar:
        return self.cars.setdefault(car_id, SimCar(car_id))

    # -- publishing ----------------------------------------------------------------------------------------------

    async def start_car(self, car_id: int) -> None:
        """What TeslaMate does at start-up for a car: wipe a stale retained `healthy`."""
        await self._publish(self.topic(car_id, "healthy"), "", retain=True)

    async def set_values(self, car_id: int, **values: Value | Mapping[str, Any]) -> None:
        """Publish the values that changed (retained), as one TeslaMate summary would, without a heartbeat."""
        car = self.car(car_id)
        for name, value in values.items():
            text = format_value(value)
            if value is None and name not in NULLABLE_FIELDS:
                continue  # TeslaMate skips other nil values
            if car.published.get(name) == text:
                continue
            car.published[name] = text
            await self._publish(self.topic(car_id, name), text, retain=True)

    async def heartbeat(self, car_id: int, *, healthy: bool = True) -> None:
        """`healthy`, never retained: TeslaMate sends it with every summary."""
        await self._publish(self.topic(car_id, "healthy"), format_value(healthy), retain=False)
        self.car(car_id).last_summary_at = self._clock()

    async def summary(self, car_id: int, **values: Value | Mapping[str, Any]) -> None:
        await self.set_values(car_id, **values)
        await self.heartbeat(car_id)

    # -- following a fake Fleet API car ----------------------------------------------------------------------------

    def follow(self, car_id: int, api: FakeFleetApi, vin: str, *, geofence: str | None = "Home") -> None:
        """Mirror `api`'s car `vin` (read directly: no request, no effect on its sleep timer)."""
        car = self.car(car_id)
        car.followed = lambda: api.car(vin)
        car.geofence = geofence

    def next_at(self, car_id: int) -> float | None:
        """When this car's next summary is due (None: silent while suspended)."""
        car = self.car(car_id)
        cadence = self.cadence.get(str(car.published.get("state")), 30.0)
        if car.last_summary_at is None:
            return self._clock()
        return None if cadence is None else car.last_summary_at + cadence

    async def tick(self) -> None:
        """Publish every followed car's summary that is due now."""
        now = self._clock()
        for car_id, car in self.cars.items():
            # A car never summarised is due at once (with a running clock, `next_at` says a moment after `now`).
            due = now if car.last_summary_at is None else self.next_at(car_id)
            if car.followed is None or due is None or due > now:
                continue
            await self.summary(car_id, **self.values_of(car.followed(), now, car.geofence))

    async def run(self) -> None:
        """Tick forever at TeslaMate's cadence (the demo; tests call `tick()` on their own clock)."""
        while True:
            await self.tick()
            await self._sleep(1.0)

    @staticmethod
    def values_of(fake: FakeCar, now: float, geofence: str | None = "Home") -> dict[str, Value | Mapping[str, Any]]:
        """TeslaMate's fields for a fake Fleet API car."""
        state: str = fake.state
        if fake.state == "online":
            state = "charging" if fake.charging else "online"
        charging = fake.charging
        awake = fake.state == "online"
        values: dict[str, Value | Mapping[str, Any]] = {"state": state, "display_name": fake.display_name}
        if not awake:
            return values  # TeslaMate polls only the non-waking endpoint while the car sleeps
        values |= {
            "since": datetime.fromtimestamp(now, tz=UTC).isoformat().replace("+00:00", "Z"),
            "battery_level": round(fake.battery_level),
            "usable_battery_level": round(fake.battery_level),
            "charge_limit_soc": fake.charge_limit_soc,
            "plugged_in": fake.plugged_in,
            "charging_state": fake.charging_state,
            "charger_actual_current": fake.actual_current_a if charging else None,
            "charger_phases": fake.phases if charging else None,
            "charger_voltage": fake.voltage_v if charging else None,
            "charger_power": round(fake.power_w / 1000.0) if charging else None,
            "charge_current_request": fake.charge_amps,
            "charge_current_request_max": fake.charge_current_request_max,
            "charge_energy_added": round(fake.charge_energy_added_wh / 1000.0, 2),
            "time_to_full_charge": None,
            "geofence": geofence,
            "latitude": fake.latitude,
            "longitude": fake.longitude,
            "location": {"latitude": fake.latitude, "longitude": fake.longitude},
        }
        return values

    async def _publish(self, topic: str, payload: str, *, retain: bool) -> None:
        if self._client is None:
            raise RuntimeError("TeslaMateSim is not connected: use `async with`")
        await self._client.publish(topic, payload.encode(), qos=1, retain=retain)
        self.published += 1
