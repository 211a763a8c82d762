"""Tesla API calls and their price per car per simulated day, for the tesla-bridge's poll and command policies.

Prints `name value unit` lines. The bridge runs in-process on a fake clock against the fake Fleet API over real
HTTP (every request is counted by the fake, and priced with the contract's default prices); MQTT is left out (a
silent bus), TeslaMate's feed is applied to the bridge directly at TeslaMate's own cadence. Scenarios:

  a) the car sleeps all day, TeslaMate running                       (goal: 0 calls)
  b) the car sleeps all day, no TeslaMate                            (state calls only, never a wake)
  c) a solar-following day on a mobile connector (1 phase, 16 A), a setpoint every 60 s from a simple solar
     allocator (start after 60 s of surplus ≥ 5 A, stop after 180 s below, 300 s minimum on/off), with and
     without TeslaMate                                               (goal: ≤ $0.30)
  d) the same solar day with the car on a BLE command proxy (`transport = "ble_proxy"`), no TeslaMate: every
     call goes over Bluetooth                                        (goal: $0.00; the `ble` calls are counted)
     and once more with the car out of the proxy's range for an hour at midday, `ble_fallback = "fleet"`: what
     the fallback costs (billed Fleet API calls during the outage)

For each simulated day the bench also measures how wrong the allocator's view of the car is: the current the
bridge publishes (`current_a` of its EvseState, measured or commanded) against the fake car's real one, sampled at
every step; `view_wrong_s` is the time it was off by more than one step (1 A), `view_wrong_longest_s` the longest
such stretch. `by_reason_*` says what the calls of the day were made for (`UsageCar.by_reason`).

The baseline is the predecessor's habit (TWCManager): `vehicle_data` every 5 minutes while at home, plus a
start/stop and an amps command whenever the offer changes (at most once a minute).

    uv run python bench/api_cost.py
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from chargebus.clock import FakeClock, iso_utc
from chargebus.config import HomeLocation, MqttConfig, TeslaBridgeConfig, TeslaConfig, TeslaVehicleConfig
from chargebus.schema import Setpoint
from chargebus_sim.fleet_api import FakeFleetApi
from chargebus_sim.house import House
from chargebus_sim.teslamate import CADENCE_S, TeslaMateSim, format_value
from chargebus_tesla.bridge import TeslaBridge
from chargebus_tesla.bus import NullBus
from chargebus_tesla.car_state import measured_power_w
from chargebus_tesla.fleet import fleet_client_from_config
from chargebus_tesla.poll_policy import utc_day_start
from chargebus_tesla.vehicle_data import CarReport

VIN = "5YJ3E1EA8KF000001"
DAY = 86_400.0
START = utc_day_start(1_800_000_000.0)
PRICES = {"data": 0.002, "command": 0.001, "wake": 0.02}
SETPOINT_EVERY_S = 60.0
VOLTAGE, MIN_AMPS, MAX_AMPS = 230.0, 5, 16
ENABLE_S, DISABLE_S, MIN_SWITCH_S = 60.0, 180.0, 300.0


@dataclass
class Day:
    data: int
    command: int
    wake: int
    energy_wh: float
    ble: int = 0
    view_wrong_s: float = 0.0
    view_wrong_longest_s: float = 0.0
    by_reason: dict[str, int] | None = None

    @property
    def usd(self) -> float:
        return self.data * PRICES["data"] + self.command * PRICES["command"] + self.wake * PRICES["wake"]


class SolarAllocator:
    """A small stand-in for the allocator's solar mode with its delays, for one 1-phase car."""

    def __init__(self, house: House) -> None:
        self.house = house
        self.charging = False
        self.since = -1e9
        self.condition_since: float | None = None

    def setpoint(self, now: float, car_w: float) -> tuple[float, bool]:
        hour = (now - START) / 3600.0
        surplus = self.house.pv_w(hour) - self.house.house_w(hour) - 100.0  # chargers excluded, 100 W reserve
        enough = surplus >= MIN_AMPS * VOLTAGE
        del car_w
        if enough != self.charging:
            self.condition_since = self.condition_since if self.condition_since is not None else now
            delay = ENABLE_S if enough else DISABLE_S
            if now - self.condition_since >= delay and now - self.since >= MIN_SWITCH_S:
                self.charging, self.since, self.condition_since = enough, now, None
        else:
            self.condition_since = None
        if not self.charging:
            return 0.0, False
        return max(MIN_AMPS * VOLTAGE, min(surplus, MAX_AMPS * VOLTAGE)), True


async def simulate(
    *,
    teslamate: bool,
    solar: bool,
    command_min_interval_s: float = 60.0,
    ble: bool = False,
    ble_outage_h: tuple[float, float] | None = None,
) -> Day:
    """One UTC day; `ble`: the car is behind a BLE proxy (out of its range from hour to hour of `ble_outage_h`,
    then falling back to the Fleet API)."""
    clock = FakeClock(START)
    with tempfile.TemporaryDirectory() as tmp:
        state_dir = Path(tmp)
        # The proxy's seconds of latency take no real time here (the bridge's clock stands still meanwhile).
        async with FakeFleetApi(clock=clock.time, ble_proxy=ble, ble_time_scale=1e6) as api:
            fake = api.add_car(
                VIN,
                state="asleep",
                charging_state="Stopped",
                charge_current_request_max=MAX_AMPS,
                battery_level=20.0,
                charge_limit_soc=90,
            )
            (state_dir / "token.json").write_text(json.dumps(api.token_file_content()))
            config = TeslaBridgeConfig(
                state_dir=state_dir,
                mqtt=MqttConfig(ha_discovery=False),
                tesla=TeslaConfig(
                    api_base=api.url,
                    command_base=api.proxy_url,
                    token_url=api.token_url,
                    client_id=api.client_id,
                    token_file=state_dir / "token.json",
                    teslamate_prefix="teslamate" if teslamate else "",
                    command_min_interval_s=command_min_interval_s,
                    vehicles=[
                        TeslaVehicleConfig(
                            vin=VIN,
                            teslamate_car_id=1,
                            home=HomeLocation(lat=fake.latitude, lon=fake.longitude),
                            **(_ble_settings(api, fallback=ble_outage_h is not None) if ble else {}),
                        )
                    ],
                ),
            )
            client = fleet_client_from_config(config.tesla, state_dir=state_dir, clock=clock)
            bridge = TeslaBridge(config, client, NullBus(), clock)
            car = bridge.cars[VIN]
            feed = _teslamate_feed(bridge, api, clock) if teslamate else None
            if feed is None:
                # The bridge saw the car arrive and plug in last evening, before it fell asleep.
                report = CarReport(charging_state="Stopped", latitude=fake.latitude, longitude=fake.longitude)
                car.state.observe_report(START - 3 * 3600, report)
                car.state.observe_online_state(START - 2 * 3600, "asleep")
            allocator = SolarAllocator(House()) if solar else None
            next_setpoint = START
            view = _ViewError()
            while clock.time() < START + DAY - 1:
                now = clock.time()
                view.sample(now, _viewed_amps(bridge, now), api.car(VIN).actual_current_a)
                if ble_outage_h is not None:
                    hour = (now - START) / 3600.0
                    fake.ble_in_range = not ble_outage_h[0] <= hour < ble_outage_h[1]
                if feed is not None:
                    feed(now)
                if allocator is not None and now >= next_setpoint:
                    power_w, charge = allocator.setpoint(now, api.car(VIN).power_w)
                    car.set_setpoint(_setpoint(power_w, charge, now), now)
                    next_setpoint = now + SETPOINT_EVERY_S
                next_at = await bridge.step_all()
                targets = [next_at, START + DAY - 1]
                if allocator is not None:
                    targets.append(next_setpoint)
                if feed is not None:
                    targets.append(now + 20.0)
                target = min(targets)
                if target > clock.time():
                    clock.advance(target - clock.time())
            view.sample(clock.time(), _viewed_amps(bridge, clock.time()), api.car(VIN).actual_current_a)
            _, counts = client.counter.snapshot(clock.time())
            await client.aclose()
            energy = api.car(VIN).charge_energy_added_wh
            billed = [call.category for call in api.billed()]  # the Fleet API's hosts; BLE calls are not billed
            data = billed.count("data") + billed.count("state")
            calls = counts.get(VIN)
            return Day(
                data,
                billed.count("command"),
                billed.count("wake"),
                energy,
                api.count(host="ble"),
                view.wrong_s,
                view.longest_s,
                dict(getattr(calls, "by_reason", {})) if calls is not None else None,
            )


class _ViewError:
    """How long the bridge's published current was off the car's real one by more than one step (1 A)."""

    def __init__(self) -> None:
        self.wrong_s = self.longest_s = 0.0
        self._at: float | None = None
        self._wrong_since: float | None = None

    def sample(self, now: float, viewed_a: float, actual_a: float) -> None:
        if self._at is not None and self._wrong_since is not None:
            self.wrong_s += now - self._at
            self.longest_s = max(self.longest_s, now - self._wrong_since)
        wrong = abs(viewed_a - actual_a) > 1.0
        if not wrong:
            self._wrong_since = None
        elif self._wrong_since is None:
            self._wrong_since = now
        self._at = now


def _viewed_amps(bridge: TeslaBridge, now: float) -> float:
    """The current the car's EvseState would show now (`power_w` / `step_w`), 0 when unknown."""
    car = bridge.cars[VIN]
    basis = car.state.basis
    power = measured_power_w(car.snapshot(now).report, basis)
    return 0.0 if power is None else power / basis.step_w


def _ble_settings(api: FakeFleetApi, *, fallback: bool) -> dict[str, object]:
    return {
        "transport": "ble_proxy",
        "ble_proxy_url": api.ble_url,
        "ble_fallback": "fleet" if fallback else "none",
    }


def _teslamate_feed(bridge: TeslaBridge, api: FakeFleetApi, clock: FakeClock) -> Callable[[float], None]:
    """TeslaMate's messages applied to the bridge at TeslaMate's cadence (what MQTT would deliver)."""
    teslamate = bridge.cars[VIN].teslamate
    assert teslamate is not None
    fake = api.cars[VIN]
    seed: dict[str, object] = {
        "plugged_in": True,
        "charging_state": "Stopped",
        "geofence": "Home",
        "location": {"latitude": fake.latitude, "longitude": fake.longitude},
    }
    for name, value in seed.items():
        teslamate.apply(name, format_value(value).encode(), clock.time(), retained=True)  # type: ignore[arg-type]
    last: dict[str, float] = {"at": -1e9}
    published: dict[str, str] = {}

    def feed(now: float) -> None:
        values = TeslaMateSim.values_of(api.car(VIN), now)
        cadence = CADENCE_S.get(str(values["state"])) or 30.0
        if now - last["at"] < cadence:
            return
        last["at"] = now
        for name, value in values.items():
            text = format_value(value)
            if published.get(name) != text:
                published[name] = text
                teslamate.apply(name, text.encode(), now, retained=False)
        teslamate.apply("healthy", b"true", now, retained=False)

    return feed


def _setpoint(power_w: float, charge: bool, now: float) -> Setpoint:
    return Setpoint.model_validate(
        {
            "evse_id": f"car-{VIN}",
            "power_w": power_w,
            "charge": charge,
            "phases": 1,
            "voltage_v": VOLTAGE,
            "expires_at": iso_utc(now + 120),
            "reason": "bench",
        }
    )


def baseline_solar_day() -> Day:
    """TWCManager's habit on the same solar day: vehicle_data every 5 min at home, commands on every change."""
    allocator = SolarAllocator(House())
    data = int(DAY / 300)
    commands, last_amps, charging = 0, -1, False
    for minute in range(int(DAY / 60)):
        now = START + minute * 60.0
        power_w, charge = allocator.setpoint(now, 0.0)
        if charge != charging:
            commands += 1
            charging = charge
        amps = int(power_w // VOLTAGE) if charge else 0
        if charge and amps != last_amps:
            commands += 1
            last_amps = amps
    return Day(data, commands, 0, 0.0)


def report(name: str, day: Day) -> None:
    print(f"{name}_calls_data {day.data} calls/day")
    print(f"{name}_calls_command {day.command} calls/day")
    print(f"{name}_calls_wake {day.wake} calls/day")
    if day.ble:
        print(f"{name}_calls_ble {day.ble} calls/day (not billed)")
    print(f"{name}_cost {day.usd:.3f} USD/day")
    if day.energy_wh:
        print(f"{name}_energy {day.energy_wh / 1000:.1f} kWh/day")
        print(f"{name}_view_wrong {day.view_wrong_s:.0f} s/day (published current off by more than 1 A)")
        print(f"{name}_view_wrong_longest {day.view_wrong_longest_s:.0f} s")
    for reason, count in sorted((day.by_reason or {}).items()):
        print(f"{name}_by_reason_{reason} {count} calls/day")


async def main() -> None:
    logging.getLogger("chargebus_tesla").setLevel(logging.ERROR)  # the outage's per-call warnings: not figures
    report("a_asleep_teslamate", await simulate(teslamate=True, solar=False))
    report("b_asleep_no_teslamate", await simulate(teslamate=False, solar=False))
    report("c_solar_mobile_connector_teslamate", await simulate(teslamate=True, solar=True))
    report("c_solar_mobile_connector_no_teslamate", await simulate(teslamate=False, solar=True))
    report(
        "c_solar_mobile_connector_no_teslamate_interval300",
        await simulate(teslamate=False, solar=True, command_min_interval_s=300.0),
    )
    report("d_solar_mobile_connector_ble", await simulate(teslamate=False, solar=True, ble=True))
    report(
        "d_solar_mobile_connector_ble_1h_outage_fleet_fallback",
        await simulate(teslamate=False, solar=True, ble=True, ble_outage_h=(12.0, 13.0)),
    )
    report("baseline_twcmanager_solar", baseline_solar_day())


if __name__ == "__main__":
    asyncio.run(main())
