"""History accuracy: reconstructed energy of an API-only car vs the simulated truth, plus insert throughput.

A simulated day at home, one car on a mobile connector (no wall connector measures it), 3 phases at 230 V:
plugged in at 07:00, solar following 09:00-16:30 (6-16 A with clouds, pauses when the surplus is short), "charge
now" at 16 A 18:00-20:30, unplugged at 21:00. The truth is integrated at one-second resolution (the car follows a
new current after a few seconds; ±1 % noise).

Observations, as the tesla-bridge would publish them in VehicleState:
* `teslamate`: TeslaMate's cadence while charging (a fetch every round(250 / kW) s, clamped to 5-20 s; every 60 s
  while idle), `charger_power` in whole kW (AC), `charge_energy_added` in kWh with two decimals, published on change.
* `poll_10min`: a vehicle_data poll every 600 s and nothing else (the API without TeslaMate).

Each stream goes through the recorder's change filter into SQLite (HistoryStore) and is read back with the `energy`
query (counter reconciliation on). The same rows without the counter (step-hold of the coarse power alone) are the
baseline. Throughput: EvseRecords per second into SQLite through HistoryStore, one commit per sample (the live
recorder at low rate) and batches of 500 (the recorder catching up).

    uv run python bench/history_accuracy.py
"""

from __future__ import annotations

import asyncio
import math
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

from chargebus.clock import iso_utc
from chargebus_history.dedup import ChangeFilter
from chargebus_history.queries import VehicleTarget, energy_query
from chargebus_history.reconstruct import integrate, reconstruct
from chargebus_history.records import EvseRecord, Record, VehicleRecord
from chargebus_history.store import HistoryStore

DAY0 = 1_782_864_000.0  # 2026-07-01T00:00:00Z, a summer day
VIN = "5YJ3E1EA8KF000001"
VOLTS = 230.0
PHASES = 3
GAP_LIMIT_S = 1800.0
MIN_A, MAX_A = 6, 16
HOUR = 3600.0


@dataclass
class Truth:
    """One-second truth: power (W), plugged, charging, and the session counter (Wh)."""

    power_w: list[float]
    plugged: list[bool]
    charging: list[bool]
    counter_wh: list[float]

    @property
    def energy_wh(self) -> float:
        return sum(self.power_w) / HOUR


def surplus_w(t: float, cloud: float) -> float:
    """A clear-sky PV curve 06:00-21:00 peaking at 12 kW, times a cloud factor, minus 600 W of house load."""
    hour = t / HOUR
    clear = max(0.0, math.sin(math.pi * (hour - 6) / 15)) * 12_000
    return clear * cloud - 600


@dataclass
class SolarFollower:
    """The allocator's part, simplified: whole amps of the surplus, start after 60 s above the minimum, stop after
    180 s below it; "charge now" at full current in the evening."""

    on: bool = False
    above_since: int | None = None
    below_since: int | None = None

    def target(self, s: int, cloud: float) -> int:
        hour = s / HOUR
        if not 7 <= hour < 21:
            return 0
        if 18 <= hour < 20.5:
            return MAX_A
        if not 9 <= hour < 16.5:
            return 0
        amps = math.floor(surplus_w(s, cloud) / (VOLTS * PHASES))
        if amps >= MIN_A:
            self.above_since, self.below_since = self.above_since if self.above_since is not None else s, None
        else:
            self.above_since, self.below_since = None, self.below_since if self.below_since is not None else s
        if not self.on and self.above_since is not None and s - self.above_since >= 60:
            self.on = True
        if self.on and self.below_since is not None and s - self.below_since >= 180:
            self.on = False
        return min(MAX_A, max(MIN_A, amps)) if self.on else 0


def simulate(seed: int = 7) -> Truth:
    rng = random.Random(seed)
    seconds = 86_400
    power, plugged, charging, counter = [0.0] * seconds, [False] * seconds, [False] * seconds, [0.0] * seconds
    cloud, cloud_until = 1.0, 0
    follower = SolarFollower()
    wanted_a, actual_a = 0, 0.0
    pending: list[tuple[int, int]] = []  # (when the car follows, amps)
    energy = 0.0
    for s in range(seconds):
        if s >= cloud_until:
            cloud = rng.choice([1.0, 1.0, 0.9, 0.7, 0.45, 0.25])
            cloud_until = s + rng.randint(60, 300)
        target = follower.target(s, cloud)
        if target != wanted_a:
            wanted_a = target
            pending.append((s + rng.randint(2, 8), target))  # the car follows a few seconds later
        while pending and pending[0][0] <= s:
            actual_a = float(pending.pop(0)[1])
        is_plugged = 7 <= s / HOUR < 21
        p = actual_a * VOLTS * PHASES * (1 + rng.uniform(-0.01, 0.01)) if actual_a > 0 else 0.0
        if not is_plugged:
            energy = 0.0  # the session counter starts again at the next plug-in
        energy += p / HOUR
        power[s], plugged[s], charging[s], counter[s] = p, is_plugged, actual_a > 0, energy
    return Truth(power, plugged, charging, counter)


def vehicle_payload(truth: Truth, s: int) -> dict[str, Any]:
    """What the tesla-bridge publishes from one fetch: TeslaMate/Fleet API resolution (whole kW, 10 Wh)."""
    charging = truth.charging[s]
    plugged = truth.plugged[s]
    state = "Charging" if charging else ("Stopped" if plugged else "Disconnected")
    kw = round(truth.power_w[s] / 1000)
    return {
        "v": 1,
        "vin": VIN,
        "name": "Model Y",
        "online_state": "online",
        "at_home": True,
        "plugged_in": plugged,
        "charging_state": state,
        "soc_pct": None,
        "charge_limit_pct": 90.0,
        "charger_phases": PHASES if charging else None,
        "charger_voltage_v": VOLTS if charging else None,
        "charger_actual_current_a": None,
        "charge_current_request_a": None,
        "charge_current_request_max_a": 16.0,
        "charger_power_w": kw * 1000.0 if charging else 0.0,
        "charge_energy_added_wh": round(truth.counter_wh[s] / 10) * 10.0 if plugged else None,
        "time_to_full_s": None,
        "source": "teslamate",
        "updated_at": iso_utc(DAY0 + s),
        "data_age_s": 0.0,
    }


def teslamate_fetches(truth: Truth) -> list[int]:
    fetches, s = [], 0
    while s < len(truth.power_w):
        fetches.append(s)
        kw = truth.power_w[s] / 1000
        s += min(20, max(5, round(250 / kw))) if truth.charging[s] and kw > 0 else 60
    return fetches


def poll_fetches(truth: Truth, every_s: int = 600) -> list[int]:
    return list(range(0, len(truth.power_w), every_s))


async def record_and_query(truth: Truth, fetches: list[int], folder: Path, name: str) -> tuple[float, float, int]:
    """(energy with counter reconciliation, energy from power alone, rows stored)."""
    records: list[Record] = []
    changes = ChangeFilter()
    for s in fetches:
        record = VehicleRecord.from_payload(DAY0 + s, vehicle_payload(truth, s))
        if changes.admit(record):
            changes.remember(record)
            records.append(record)
    async with await HistoryStore.open(f"sqlite:///{folder / f'{name}.sqlite'}") as store:
        await store.insert(records)
        data = await energy_query(
            store, VehicleTarget(VIN), DAY0, DAY0 + 86_400, UTC, now=DAY0 + 86_400, gap_limit_s=GAP_LIMIT_S
        )
        rows = await store.vehicle_records(VIN, DAY0, DAY0 + 86_400)
    samples = [r.to_sample() for r in rows]
    power_only = integrate(reconstruct(samples, DAY0 + 86_400, GAP_LIMIT_S, use_counter=False), DAY0, DAY0 + 86_400)
    return float(data["energy_wh"] or 0.0), power_only.energy_wh, len(records)


def evse_record(i: int) -> EvseRecord:
    payload = {
        "v": 1,
        "evse_id": "twc-4a1b",
        "kind": "twc2",
        "name": "Garage",
        "online": True,
        "vin": VIN,
        "plugged_in": True,
        "charging": True,
        "phases": 1,
        "voltage_v": 230.0,
        "current_a": 16.0 + (i % 7) / 10,
        "offered_a": 16.0,
        "power_w": 3680.0 + i % 50,
        "session_energy_wh": None,
        "lifetime_energy_wh": 1_234_000.0,
        "source": "rs485",
        "updated_at": iso_utc(DAY0 + i),
        "stale": False,
    }
    return EvseRecord.from_payload(DAY0 + i, payload)


async def throughput(folder: Path, count: int, batch: int) -> float:
    records = [evse_record(i) for i in range(count)]
    async with await HistoryStore.open(f"sqlite:///{folder / f'tp-{batch}.sqlite'}") as store:
        started = time.perf_counter()
        for first in range(0, count, batch):
            await store.insert(records[first : first + batch])
        elapsed = time.perf_counter() - started
    return count / elapsed


def line(name: str, value: float, unit: str, fmt: Callable[[float], str] = lambda v: f"{v:.2f}") -> None:
    print(f"{name} {fmt(value)} {unit}")


async def main() -> None:
    truth = simulate()
    line("truth_energy", truth.energy_wh, "Wh", lambda v: f"{v:.0f}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, fetches in (("teslamate", teslamate_fetches(truth)), ("poll_10min", poll_fetches(truth))):
            with_counter, power_only, rows = await record_and_query(truth, fetches, folder, name)
            line(f"{name}_rows", rows, "rows", lambda v: f"{v:.0f}")
            line(f"{name}_energy", with_counter, "Wh", lambda v: f"{v:.0f}")
            line(f"{name}_error", 100 * (with_counter - truth.energy_wh) / truth.energy_wh, "%")
            line(f"{name}_power_only_error", 100 * (power_only - truth.energy_wh) / truth.energy_wh, "%")
        line("insert_single_commit", await throughput(folder, 2_000, 1), "samples/s", lambda v: f"{v:.0f}")
        line("insert_batch_500", await throughput(folder, 50_000, 500), "samples/s", lambda v: f"{v:.0f}")


if __name__ == "__main__":
    asyncio.run(main())
