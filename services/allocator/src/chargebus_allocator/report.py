"""An Allocation as the contract's payloads: `allocator/state` and one Setpoint per EVSE (docs/contract.md §6)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from chargebus.schema import (
    AllocatorState,
    ChargePointState,
    CircuitState,
    Mode,
    Override,
    PlanState,
    Setpoint,
    SiteState,
)

from chargebus_allocator.model import Allocation, PointMode, PointResult

#: The contract knows four modes; a schedule window, a plan slot and charge-now serve like `now`.
_SCHEMA_MODE: dict[PointMode, Mode] = {
    "off": "off",
    "now": "now",
    "solar": "solar",
    "minsolar": "minsolar",
    "schedule": "now",
    "charge_now": "now",
    "plan": "now",
}


def schema_mode(mode: PointMode) -> Mode:
    return _SCHEMA_MODE[mode]


def allocator_state(
    allocation: Allocation,
    *,
    computed_at: datetime,
    compute_ms: float,
    overrides: Sequence[Override] = (),
    site: SiteState | None = None,
    plans: Mapping[str, PlanState] | None = None,
) -> AllocatorState:
    plans = plans or {}
    until = allocation.charge_now_until
    return AllocatorState(
        mode=allocation.mode,
        charge_now_until=datetime.fromtimestamp(until, tz=UTC) if until is not None else None,
        available_w=allocation.available_w,
        grid_w=allocation.grid_w,
        surplus_w=allocation.surplus_w,
        overrides=list(overrides),
        groups=[charge_point_state(result, plans.get(result.charge_point.key)) for result in allocation.points],
        circuits=[
            CircuitState(
                id=circuit.id,
                limit_a=circuit.limit_a,
                load_a=[round(value, 3) for value in circuit.load_a],
                headroom_a=[round(value, 3) for value in circuit.headroom_a],
            )
            for circuit in allocation.circuits
        ],
        site=site,
        computed_at=computed_at,
        compute_ms=max(0.0, compute_ms),
    )


def charge_point_state(result: PointResult, plan: PlanState | None = None) -> ChargePointState:
    point = result.charge_point
    return ChargePointState(
        vin=point.vin,
        evse_ids=list(point.members),
        primary_evse_id=point.id,
        priority=point.priority,
        mode=schema_mode(result.mode),
        allocated_w=result.allocated_w,
        allocated_a=result.allocated_a,
        state=result.state,
        reason=result.reason,
        plan=plan,
    )


def setpoints(allocation: Allocation, *, now: datetime, ttl_s: float) -> list[Setpoint]:
    """Every setpoint of this round, valid for `ttl_s` from `now`; `seq` is `now` in epoch milliseconds."""
    seq = round(now.timestamp() * 1000)
    expires_at = now + timedelta(seconds=ttl_s)
    return [
        Setpoint(
            evse_id=intent.evse_id,
            power_w=intent.power_w,
            charge=intent.charge,
            phases=intent.phases,
            voltage_v=intent.voltage_v,
            seq=seq,
            expires_at=expires_at,
            ttl_s=ttl_s,
            reason=intent.reason,
        )
        for intent in allocation.setpoints
    ]
