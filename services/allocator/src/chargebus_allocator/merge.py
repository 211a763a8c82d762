"""EVSEs and vehicles → charge points, merged by VIN (docs/contract.md §7, §8).

A charge point is the set of EVSEs that reach one car: a wall EVSE (`twc-…`, or `twc3-…` carrying the VIN of the
car configured to charge at it) plus `car-<VIN>`. Current is set through the EVSE that controls it without a billed
call (a Gen2 TWC), else through the car's API; start/stop goes through `car-<VIN>`. The car's phases and voltage
win, its power counts once (the wall EVSE measures it), and its limits are the controlling EVSE's amps, capped by
the car's own maximum request. A car away from home or unplugged is not a charge point: it is never controlled.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from chargebus.schema import EvseState, Mode, VehicleState, evse_id_name
from chargebus.units import split_phase_voltage

from chargebus_allocator.model import ChargePoint, Wiring

#: Who sets the current when several EVSEs reach one car: the local, unbilled one first. A kind not named here (an
#: OCPP wallbox, or whatever a future bridge publishes) is a charger on the local network, ranked with the first:
#: a new kind of charger needs a bridge, never a change here.
_KIND_RANK = {"twc2": 0, "twc3": 1, "vehicle": 2}
_OTHER_KIND_RANK = 0


@dataclass(frozen=True, slots=True)
class EvseSettings:
    """Per-EVSE settings and runtime overrides (`[allocator.evses."<id>"]`, `…/mode/set`, …)."""

    circuit: str | None = None
    phase: Wiring | None = None
    priority: int | None = None
    mode: Mode | None = None
    charge_now_until: float | None = None
    schedule_cap_w: float | None = None


@dataclass(frozen=True, slots=True)
class VehicleSettings:
    priority: int | None = None
    schedule_cap_w: float | None = None


@dataclass(frozen=True, slots=True)
class Authorization:
    policy: Literal["open", "allow_list", "deny_list"] = "open"
    allowed: frozenset[str] = frozenset()
    denied: frozenset[str] = frozenset()
    unknown_vin: Literal["allow", "deny"] = "allow"

    def allows(self, vin: str | None) -> bool:
        if vin is None:
            return self.unknown_vin == "allow"
        if self.policy == "allow_list":
            return vin in self.allowed
        if self.policy == "deny_list":
            return vin not in self.denied
        return True


#: Per group of EVSE ids: its states and car, the rest of what its charge point was built from, and the point.
_Kept = tuple[tuple[object, ...], tuple[object, ...], ChargePoint]


class MergeCache:
    """The charge points of the previous merge, per group of EVSEs, for `merge(..., cache=)`: a group whose EVSE
    states and car are the same objects as then, with equal settings, is the same charge point, and is not built
    again. The engine keeps a state object until a message changes it, so a round re-merges only what changed."""

    def __init__(self) -> None:
        self._points: dict[tuple[str, ...], _Kept] = {}

    def charge_point(
        self,
        group: list[EvseState],
        *,
        cars: Mapping[str, VehicleState],
        settings: Mapping[str, EvseSettings],
        per_vehicle: Mapping[str, VehicleSettings],
        auth: Authorization,
        kept: dict[tuple[str, ...], _Kept],
    ) -> ChargePoint:
        """`_charge_point(...)`, from the cache when none of what it reads has changed; `kept` collects this merge's
        entries (the cache then holds only the latest merge's groups)."""
        ids = tuple([evse.evse_id for evse in group])
        vin = _group_vin(group)
        # Everything `_charge_point` reads: the states and the car (by identity: pydantic models compare slowly),
        # the settings of the group's EVSEs and car, and whether the car is authorised.
        states = (*group, cars.get(vin) if vin is not None else None)
        rest = (
            tuple([settings.get(evse_id) for evse_id in ids]),
            per_vehicle.get(vin) if vin is not None else None,
            auth.allows(vin),
        )
        entry = self._points.get(ids)
        if entry is not None and entry[1] == rest and _same_objects(entry[0], states):
            point = entry[2]
        else:
            point = _charge_point(group, cars, settings, per_vehicle, auth)
        kept[ids] = (states, rest, point)
        return point

    def replace(self, kept: dict[tuple[str, ...], _Kept]) -> None:
        self._points = kept


def _same_objects(old: tuple[object, ...], new: tuple[object, ...]) -> bool:
    return len(old) == len(new) and all(map(operator.is_, old, new))


def merge(
    evses: Iterable[EvseState],
    vehicles: Iterable[VehicleState] = (),
    evse_settings: Mapping[str, EvseSettings] | None = None,
    vehicle_settings: Mapping[str, VehicleSettings] | None = None,
    authorization: Authorization | None = None,
    *,
    cache: MergeCache | None = None,
) -> tuple[ChargePoint, ...]:
    """Every charge point, sorted by id. With a `cache`, groups unchanged since its last merge are not rebuilt."""
    cars = {vehicle.vin: vehicle for vehicle in vehicles}
    settings = evse_settings or {}
    per_vehicle = vehicle_settings or {}
    auth = authorization or Authorization()
    groups: list[list[EvseState]] = []
    local_by_vin: dict[str, list[EvseState]] = {}
    car_evses: dict[str, EvseState] = {}
    for evse in sorted(evses, key=lambda e: e.evse_id):
        if evse.kind == "vehicle":
            vin = evse_id_name(evse.evse_id)
            if _car_is_here(evse, cars.get(vin)):
                car_evses[vin] = evse
        elif evse.vin is not None:
            local_by_vin.setdefault(evse.vin, []).append(evse)
        else:
            groups.append([evse])
    for vin, locals_ in local_by_vin.items():
        # Two wall EVSEs claiming one car: the one it is plugged into (most recently) wins; the other is its own.
        locals_.sort(key=_claim_strength)
        winner, *others = locals_
        groups.append([winner, car_evses.pop(vin)] if vin in car_evses else [winner])
        groups.extend([evse.model_copy(update={"vin": None})] for evse in others)
    groups.extend([car] for car in car_evses.values())
    if cache is None:
        points = [_charge_point(group, cars, settings, per_vehicle, auth) for group in groups]
    else:
        kept: dict[tuple[str, ...], _Kept] = {}
        points = [
            cache.charge_point(group, cars=cars, settings=settings, per_vehicle=per_vehicle, auth=auth, kept=kept)
            for group in groups
        ]
        cache.replace(kept)
    return tuple(sorted(points, key=lambda point: point.id))


def _car_is_here(evse: EvseState, vehicle: VehicleState | None) -> bool:
    """Only a car known to be at home and plugged in is controlled; unknown counts as away."""
    if vehicle is None or vehicle.at_home is not True:
        return False
    plugged = vehicle.plugged_in if vehicle.plugged_in is not None else evse.plugged_in
    return plugged is True


def _claim_strength(evse: EvseState) -> tuple[bool, float, str]:
    plugged_at = evse.plugged_in_at.timestamp() if evse.plugged_in_at is not None else 0.0
    return (evse.plugged_in is not True, -plugged_at, evse.evse_id)


def _controller(group: list[EvseState]) -> EvseState | None:
    able = [evse for evse in group if evse.controllable and "current" in evse.controls]
    return min(able, key=lambda evse: _KIND_RANK.get(evse.kind, _OTHER_KIND_RANK)) if able else None


def _charge_point(
    group: list[EvseState],
    cars: Mapping[str, VehicleState],
    settings: Mapping[str, EvseSettings],
    per_vehicle: Mapping[str, VehicleSettings],
    auth: Authorization,
) -> ChargePoint:
    controller = _controller(group)
    wall = next((evse for evse in group if evse.kind != "vehicle"), None)
    car_evse = next((evse for evse in group if evse.kind == "vehicle"), None)
    primary = controller or wall or group[0]
    vin = _group_vin(group)
    vehicle = cars.get(vin) if vin is not None else None
    phases, voltage_v = _basis(primary, car_evse, vehicle)
    reference = controller or primary
    min_a = reference.min_power_w / reference.step_w
    max_a = reference.max_power_w / reference.step_w
    if vehicle is not None and vehicle.charge_current_request_max_a:
        max_a = min(max_a, vehicle.charge_current_request_max_a)
    step_w = voltage_v * phases
    # Settings: the controlling EVSE's, then the wall EVSE's (its wiring is where the car physically is).
    ordered = [evse.evse_id for evse in (controller, wall, car_evse) if evse is not None]
    own = [settings[evse_id] for evse_id in dict.fromkeys(ordered) if evse_id in settings]
    wiring_source = settings.get(wall.evse_id) if wall is not None else None
    wiring_source = wiring_source or (own[0] if own else EvseSettings())
    car_settings = per_vehicle.get(vin) if vin is not None else None
    start_stop = car_evse if car_evse is not None and car_evse.controllable else controller
    measured = wall if wall is not None and wall.power_w is not None else car_evse
    return ChargePoint(
        id=primary.evse_id,
        min_power_w=min_a * step_w,
        max_power_w=max_a * step_w,
        step_w=step_w,
        phases=phases,
        voltage_v=voltage_v,
        power_w=(measured.power_w or 0.0) if measured is not None else 0.0,
        measured_evse_id=measured.evse_id if measured is not None else None,
        evse_ids=tuple(dict.fromkeys([primary.evse_id, *sorted(evse.evse_id for evse in group)])),
        vin=vin,
        controllable=controller is not None,
        current_evse_id=controller.evse_id if controller is not None else None,
        start_stop_evse_id=start_stop.evse_id if start_stop is not None else None,
        follows_slowly=controller is not None and controller.kind == "vehicle",
        priority=_first_int(
            [car_settings.priority if car_settings else None, *(entry.priority for entry in own)], default=0
        ),
        circuit=wiring_source.circuit,
        wiring=wiring_source.phase or "L1L2L3",
        plugged_in=any(evse.plugged_in is True for evse in group),
        # A plug state nobody knows (a bridge that has just relinked a TWC or restarted) is no fresh data either:
        # reading it as "unplugged" would send 0 W and pause a charging car.
        online=reference.online and not reference.stale and any(evse.plugged_in is not None for evse in group),
        wants_charge=_wants_charge(vehicle),
        authorized=auth.allows(vin),
        charging=any(evse.charging is True for evse in group),
        plugged_in_at=_earliest_plug(group),
        mode=next((entry.mode for entry in own if entry.mode is not None), None),
        charge_now_until=max((e.charge_now_until for e in own if e.charge_now_until is not None), default=None),
        schedule_cap_w=_schedule_cap(own, car_settings),
        soc_pct=vehicle.soc_pct if vehicle is not None else None,
        charge_limit_pct=vehicle.charge_limit_pct if vehicle is not None else None,
    )


def _group_vin(group: list[EvseState]) -> str | None:
    """The car's VIN: a wall EVSE's, else its own EVSE's id."""
    vin = next((evse.vin for evse in group if evse.vin is not None), None)
    if vin is None:
        car_evse = next((evse for evse in group if evse.kind == "vehicle"), None)
        if car_evse is not None:
            vin = evse_id_name(car_evse.evse_id)
    return vin


def _basis(primary: EvseState, car_evse: EvseState | None, vehicle: VehicleState | None) -> tuple[int, float]:
    """The car's phases and voltage win: its EVSE already applies the plausibility rules and config fallbacks."""
    if car_evse is not None:
        return car_evse.phases, car_evse.voltage_v
    if vehicle is not None and vehicle.charger_phases and vehicle.charger_voltage_v:
        voltage = split_phase_voltage(vehicle.charger_voltage_v, vehicle.charger_phases)
        if 1 <= vehicle.charger_phases <= 3 and 90 <= voltage <= 260:
            return vehicle.charger_phases, voltage
    return primary.phases, primary.voltage_v


def _wants_charge(vehicle: VehicleState | None) -> bool:
    if vehicle is None:
        return True  # a wall EVSE alone cannot tell: a full car simply draws nothing
    if vehicle.charging_state == "Complete":
        return False
    soc, limit = vehicle.soc_pct, vehicle.charge_limit_pct
    return not (soc is not None and limit is not None and soc >= limit and vehicle.charging_state != "Charging")


def _earliest_plug(group: list[EvseState]) -> float | None:
    times = [evse.plugged_in_at.timestamp() for evse in group if evse.plugged_in_at is not None]
    return min(times) if times else None


def _first_int(values: list[int | None], default: int) -> int:
    return next((value for value in values if value is not None), default)


def _schedule_cap(own: list[EvseSettings], car: VehicleSettings | None) -> float | None:
    caps = [entry.schedule_cap_w for entry in own if entry.schedule_cap_w is not None]
    if car is not None and car.schedule_cap_w is not None:
        caps.append(car.schedule_cap_w)
    return min(caps) if caps else None
