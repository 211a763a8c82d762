"""Small builders shared by the allocator tests: charge points by amps, EvseState and VehicleState payloads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from chargebus.config import AllocatorServiceConfig
from chargebus.schema import EvseState, Mode, VehicleState, to_json
from chargebus.topics import Topics
from chargebus_allocator.allocate import allocate
from chargebus_allocator.engine import Engine
from chargebus_allocator.model import (
    Allocation,
    ChargePoint,
    Circuit,
    Delays,
    GridReading,
    Inputs,
    PointResult,
    Settings,
    Timer,
)

T0 = 1_800_000_000.0  # a fixed instant: tests never read the wall clock
VIN_A = "5YJ3E1EA8KF000001"
VIN_B = "5YJ3E1EA8KF000002"
NO_DELAYS = Delays(enable_delay_s=0, disable_delay_s=0, min_on_s=0, min_off_s=0)
TOPICS = Topics("p")
NO_DELAY_SETTINGS = {"enable_delay_s": 0, "disable_delay_s": 0, "min_on_s": 0, "min_off_s": 0}


def point(
    evse_id: str,
    *,
    volts: float = 240.0,
    phases: int = 1,
    min_a: float = 6,
    max_a: float = 32,
    **fields: Any,
) -> ChargePoint:
    """A charge point described in amps, as the examples are."""
    step = volts * phases
    return ChargePoint(
        id=evse_id,
        min_power_w=min_a * step,
        max_power_w=max_a * step,
        step_w=step,
        phases=phases,
        voltage_v=volts,
        **fields,
    )


def run(
    points: list[ChargePoint] | tuple[ChargePoint, ...],
    *,
    mode: Mode = "now",
    grid_w: float | None = None,
    circuits: tuple[Circuit, ...] = (),
    now: float = T0,
    previous: dict[str, Timer] | None = None,
    charge_now_until: float | None = None,
    settings: Settings | None = None,
    **setting_fields: Any,
) -> tuple[Allocation, dict[str, Timer]]:
    """One steady-state round: delays elapsed (previous timers say so) unless timers are given."""
    base = settings or Settings(mode=mode, delays=NO_DELAYS, **setting_fields)
    grid = GridReading(grid_w, now) if grid_w is not None else None
    inputs = Inputs(tuple(points), circuits, grid, charge_now_until, base)
    return allocate(inputs, previous, now)


def by_id(allocation: Allocation) -> dict[str, PointResult]:
    return {result.charge_point.id: result for result in allocation.points}


def watts(allocation: Allocation) -> dict[str, float]:
    return {result.charge_point.id: result.allocated_w for result in allocation.points}


def amps(allocation: Allocation) -> dict[str, int]:
    return {result.charge_point.id: result.allocated_a for result in allocation.points}


def evse_state(evse_id: str, **fields: Any) -> EvseState:
    """An EvseState with plausible defaults for its kind (Gen2 TWC, car API or Gen3)."""
    kind = "vehicle" if evse_id.startswith("car-") else "twc3" if evse_id.startswith("twc3-") else "twc2"
    volts = fields.pop("voltage_v", 240.0)
    phases = fields.pop("phases", 1)
    min_a = fields.pop("min_a", 5 if kind == "vehicle" else 6)
    max_a = fields.pop("max_a", 32)
    step = volts * phases
    values: dict[str, Any] = {
        "evse_id": evse_id,
        "kind": kind,
        "name": evse_id,
        "controllable": kind != "twc3",
        "controls": [] if kind == "twc3" else ["current", "start_stop"] if kind == "vehicle" else ["current"],
        "online": True,
        "plugged_in": True,
        "charging": False,
        "phases": phases,
        "voltage_v": volts,
        "power_w": 0.0,
        "min_power_w": min_a * step,
        "max_power_w": max_a * step,
        "step_w": step,
        "source": {"vehicle": "fleet_api", "twc3": "local_api", "twc2": "rs485"}[kind],
        "updated_at": datetime.fromtimestamp(T0, tz=UTC),
        "stale": False,
    }
    values.update(fields)
    return EvseState(**values)


def vehicle_state(vin: str, **fields: Any) -> VehicleState:
    values: dict[str, Any] = {
        "vin": vin,
        "name": vin[-4:],
        "online_state": "online",
        "at_home": True,
        "plugged_in": True,
        "charging_state": "Stopped",
        "soc_pct": 50.0,
        "charge_limit_pct": 80.0,
        "source": "fleet_api",
        "updated_at": datetime.fromtimestamp(T0, tz=UTC),
    }
    values.update(fields)
    return VehicleState(**values)


def make_engine(meters: list[dict[str, Any]] | None = None, **allocator: Any) -> Engine:
    """An engine on prefix `p` with no delays, no reserve and a 20 s setpoint ttl unless told otherwise."""
    settings = {"mode": "solar", "reserve_w": 0, "setpoint_ttl_s": 20, **NO_DELAY_SETTINGS, **allocator}
    config = AllocatorServiceConfig.model_validate({"allocator": settings, "meters": meters or []})
    return Engine(config, TOPICS, T0)


def feed_evse(engine: Engine, evse_id: str, **fields: Any) -> bool:
    return engine.evse_state(evse_id, to_json(evse_state(evse_id, **fields)))


def feed_vehicle(engine: Engine, vin: str, **fields: Any) -> bool:
    return engine.vehicle_state(vin, to_json(vehicle_state(vin, **fields)))
