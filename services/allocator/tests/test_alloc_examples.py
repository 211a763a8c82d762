"""The worked examples of docs/allocation.md §9, with the numbers as written there (steady state, no metered load)."""

from __future__ import annotations

from chargebus.units import watts_to_amps
from chargebus_allocator.allocate import allocate
from chargebus_allocator.fairshare import Demand, share_fair
from chargebus_allocator.merge import EvseSettings, merge
from chargebus_allocator.model import Circuit, Inputs, Settings

from services.allocator.tests.alloc_builders import (
    NO_DELAYS,
    T0,
    VIN_A,
    amps,
    by_id,
    evse_state,
    point,
    run,
    vehicle_state,
    watts,
)


def test_1_seed_example_twc_and_a_car_on_a_mobile_connector() -> None:
    twc = point("twc-0001", volts=240, min_a=6, max_a=80)
    car = point(f"car-{VIN_A}", volts=120, min_a=5, max_a=12, vin=VIN_A, follows_slowly=True)
    allocation, _ = run([twc, car], mode="solar", grid_w=-10_000, reserve_w=0)
    assert allocation.available_w == 10_000
    assert watts(allocation) == {f"car-{VIN_A}": 1440, "twc-0001": 8400}
    assert amps(allocation) == {f"car-{VIN_A}": 12, "twc-0001": 35}


def test_2_three_twcs_the_lowest_priority_is_kicked_out_and_a_sub_step_leftover_stays_unused() -> None:
    twcs = [point(f"twc-000{n}", priority=priority) for n, priority in ((1, 10), (2, 5), (3, 0))]
    allocation, _ = run(twcs, mode="solar", grid_w=-4_000, reserve_w=0)
    results = by_id(allocation)
    assert watts(allocation) == {"twc-0001": 1920, "twc-0002": 1920, "twc-0003": 0}
    assert amps(allocation)["twc-0001"] == 8
    assert results["twc-0003"].state == "kicked_out"
    assert results["twc-0003"].reason == "kicked out: 4 000 W available, minimums need 4 320 W; priority 0 < 10"
    assert 4_000 - sum(watts(allocation).values()) == 160


def test_3_a_single_phase_garage_circuit_under_a_three_phase_main_in_mode_now() -> None:
    circuits = (
        Circuit("main", max_current_a=63, phases=3),
        Circuit("garage", max_current_a=32, phases=1, phase="L1", parent="main"),
    )
    twcs = [point(f"twc-000{n}", circuit="garage", wiring="L1") for n in (1, 2)]
    allocation, _ = run(twcs, mode="now", circuits=circuits)
    assert amps(allocation) == {"twc-0001": 16, "twc-0002": 16}
    assert watts(allocation) == {"twc-0001": 3840, "twc-0002": 3840}
    loads = {circuit.id: circuit for circuit in allocation.circuits}
    assert list(loads["garage"].load_a) == [32]
    assert list(loads["garage"].headroom_a) == [0]
    assert list(loads["main"].load_a) == [32, 0, 0]
    assert "circuit garage is full on L1" in by_id(allocation)["twc-0001"].reason


def test_4_a_one_phase_car_on_a_three_phase_twc_steps_by_one_phase_and_loads_l1_only() -> None:
    evses = [
        evse_state("twc-4a1b", voltage_v=230, phases=3, min_a=6, max_a=32, vin=VIN_A),
        evse_state(f"car-{VIN_A}", voltage_v=230, phases=1),
    ]
    car = vehicle_state(VIN_A, charger_phases=1, charger_voltage_v=230)
    (merged,) = merge(evses, [car], {"twc-4a1b": EvseSettings(circuit="main", phase="L1L2L3")})
    assert (merged.step_w, merged.phases, merged.voltage_v) == (230, 1, 230)
    circuits = (Circuit("main", max_current_a=20, phases=3),)
    inputs = Inputs((merged,), circuits=circuits, settings=Settings(mode="now", delays=NO_DELAYS))
    allocation, _ = allocate(inputs, None, T0)
    assert allocation.points[0].allocated_w == 4600
    assert list(allocation.circuits[0].load_a) == [20, 0, 0]
    setpoints = {intent.evse_id: intent for intent in allocation.setpoints}
    twc = setpoints["twc-4a1b"]
    assert (twc.power_w, twc.charge, twc.phases, twc.voltage_v) == (4600, None, 1, 230)
    assert twc.power_w is not None
    assert watts_to_amps(twc.power_w, twc.voltage_v, twc.phases) == 20
    car_setpoint = setpoints[f"car-{VIN_A}"]
    assert (car_setpoint.power_w, car_setpoint.charge) == (None, True)


def test_5_solar_budget_adds_back_the_draw_of_the_charging_twc() -> None:
    twc = point("twc-0001", power_w=1440, charging=True)
    allocation, _ = run([twc], mode="solar", grid_w=-3_000, reserve_w=100)
    assert allocation.surplus_w == 4340
    assert allocation.available_w == 4340
    assert amps(allocation) == {"twc-0001": 18}
    assert watts(allocation) == {"twc-0001": 4320}


def _example_6() -> tuple[Demand, Demand]:
    a = Demand(min_w=1440, max_w=19_200, step_w=240)
    b = Demand(min_w=4140, max_w=11_040, step_w=690)
    return a, b


def test_6_the_water_level_with_different_minimums() -> None:
    assert [share.power_w for share in share_fair(_example_6(), 12_000, [])] == [6000, 6000]
    assert [share.power_w for share in share_fair(_example_6(), 8_000, [])] == [3860, 4140]


def test_6_different_minimums_fair_budget_12000_then_round_robin_leftovers() -> None:
    a = point("twc-000a", volts=240, phases=1, min_a=6, max_a=80)
    b = point("twc-000b", volts=230, phases=3, min_a=6, max_a=16)
    allocation, _ = run([a, b], mode="solar", grid_w=-12_000, reserve_w=0)
    assert watts(allocation) == {"twc-000a": 6480, "twc-000b": 5520}
    assert amps(allocation) == {"twc-000a": 27, "twc-000b": 8}


def test_6_different_minimums_fair_budget_8000_b_sits_at_its_minimum() -> None:
    a = point("twc-000a", volts=240, phases=1, min_a=6, max_a=80)
    b = point("twc-000b", volts=230, phases=3, min_a=6, max_a=16)
    allocation, _ = run([a, b], mode="solar", grid_w=-8_000, reserve_w=0)
    assert watts(allocation) == {"twc-000a": 3840, "twc-000b": 4140}
    assert amps(allocation) == {"twc-000a": 16, "twc-000b": 6}
