"""Allocation → the contract's AllocatorState and Setpoint payloads (validated by chargebus.schema)."""

from __future__ import annotations

from datetime import UTC, datetime

from chargebus.schema import AllocatorState, Override, Setpoint, to_json
from chargebus_allocator.model import Circuit
from chargebus_allocator.report import allocator_state, schema_mode, setpoints

from services.allocator.tests.alloc_builders import T0, VIN_A, point, run

NOW = datetime.fromtimestamp(T0, tz=UTC)
CAR_A = f"car-{VIN_A}"


def test_state_carries_every_group_and_circuit() -> None:
    merged = point(
        "twc-4a1b", vin=VIN_A, evse_ids=("twc-4a1b", CAR_A), start_stop_evse_id=CAR_A, priority=20, circuit="garage"
    )
    circuits = (Circuit("main", 63, phases=3), Circuit("garage", 32, phases=1, phase="L2", parent="main"))
    allocation, _ = run(
        [merged, point("twc-0001", plugged_in=False)],
        mode="solar",
        grid_w=-5_000,
        reserve_w=0,
        circuits=circuits,
    )
    override = Override(key="mode", value="solar", since=NOW)
    state = allocator_state(allocation, computed_at=NOW, compute_ms=0.4, overrides=[override])
    again = AllocatorState.model_validate_json(to_json(state))
    assert again == state
    assert state.mode == "solar"
    assert (state.available_w, state.grid_w, state.surplus_w) == (5000, -5000, 5000)
    groups = {group.primary_evse_id: group for group in state.groups}
    assert groups["twc-4a1b"].evse_ids == ["twc-4a1b", CAR_A]
    assert (groups["twc-4a1b"].vin, groups["twc-4a1b"].priority) == (VIN_A, 20)
    assert (groups["twc-4a1b"].allocated_w, groups["twc-4a1b"].allocated_a, groups["twc-4a1b"].state) == (
        4800,
        20,
        "charging",
    )
    assert groups["twc-0001"].state == "unplugged"
    circuit_states = {circuit.id: circuit for circuit in state.circuits}
    assert circuit_states["main"].load_a == [0, 20, 0]
    assert circuit_states["garage"].headroom_a == [12]
    assert state.overrides == [override]


def test_setpoints_carry_the_basis_and_expire() -> None:
    merged = point("twc-4a1b", vin=VIN_A, evse_ids=("twc-4a1b", CAR_A), start_stop_evse_id=CAR_A)
    allocation, _ = run([merged], mode="now")
    messages = {message.evse_id: message for message in setpoints(allocation, now=NOW, ttl_s=120)}
    twc, car = messages["twc-4a1b"], messages[CAR_A]
    assert (twc.power_w, twc.charge, twc.phases, twc.voltage_v) == (7680, None, 1, 240)
    assert (car.power_w, car.charge) == (None, True)
    assert twc.expires_at == datetime.fromtimestamp(T0 + 120, tz=UTC)
    assert (twc.ttl_s, twc.seq) == (120, int(T0 * 1000))
    assert twc.reason
    assert Setpoint.model_validate_json(to_json(twc)) == twc


def test_modes_outside_the_contract_show_as_now() -> None:
    assert [schema_mode(m) for m in ("off", "now", "solar", "minsolar", "schedule", "charge_now")] == [
        "off",
        "now",
        "solar",
        "minsolar",
        "now",
        "now",
    ]


def test_charge_now_until_is_a_timestamp() -> None:
    allocation, _ = run([point("twc-0001")], mode="off", charge_now_until=T0 + 60)
    state = allocator_state(allocation, computed_at=NOW, compute_ms=1)
    assert state.charge_now_until == datetime.fromtimestamp(T0 + 60, tz=UTC)
    assert state.available_w is None
    assert state.groups[0].mode == "now"
