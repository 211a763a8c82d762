"""Trusting a commanded current (docs/contract.md §6.3): only after a report confirmed the car follows, shown as
commanded, with `data_age_s` still the age of the last report, and dropped as soon as a report disagrees."""

from __future__ import annotations

from chargebus.config import TeslaVehicleConfig
from chargebus_tesla.car_state import CarState, EvseFacts, evse_state, vehicle_state
from chargebus_tesla.vehicle_data import CarReport
from hypothesis import given
from hypothesis import strategies as st

VIN = "5YJ3E1EA8KF000001"
T0 = 1_800_000_000.0
FACTS = EvseFacts(online=True, offered_a=None, min_amps=5, max_amps_override=None, status_text="ok")


def charging(request_a: float, actual_a: float | None = None) -> CarReport:
    return CarReport(
        charging_state="Charging",
        charge_current_request_a=request_a,
        charger_actual_current_a=request_a if actual_a is None else actual_a,
        charge_current_request_max_a=16,
    )


def follows(car: CarState) -> bool:
    return car.follows_command


def state() -> CarState:
    return CarState(TeslaVehicleConfig.model_validate({"vin": VIN, "voltage_v": 230}))


def test_the_first_command_is_not_trusted_until_a_report_confirms_it() -> None:
    car = state()
    car.observe_report(T0, charging(10))
    assert not follows(car)  # a current the car chose itself earns no trust
    car.observe_command(T0 + 1, 12)
    car.observe_report(T0 + 30, charging(10))  # the car did not take it
    assert not follows(car)
    assert car.observe_command(T0 + 60, 12) is False
    snap = car.snapshot(T0 + 61, teslamate_fresh=False)
    assert not snap.current_commanded
    assert snap.report.charger_actual_current_a == 10  # still the measured value


def test_a_trusted_command_is_published_as_commanded_with_an_honest_age() -> None:
    car = state()
    car.observe_command(T0, 10)
    car.observe_report(T0 + 30, charging(10))
    assert follows(car)
    assert car.observe_command(T0 + 100, 14) is True
    snap = car.snapshot(T0 + 130, teslamate_fresh=False)
    assert snap.current_commanded
    assert snap.report.charger_actual_current_a == 14
    evse = evse_state(car.vehicle, snap, car.basis, FACTS, T0 + 130)
    assert evse.current_commanded is True
    assert evse.current_a == 14
    assert evse.power_w == 14 * 230
    vehicle = vehicle_state(car.vehicle, snap, T0 + 130)
    assert vehicle.current_commanded is True
    assert vehicle.data_age_s == 100  # the last report's age, not the command's


def test_a_report_that_disagrees_ends_the_trust() -> None:
    car = state()
    car.observe_command(T0, 10)
    car.observe_report(T0 + 30, charging(10))
    car.observe_command(T0 + 60, 14)
    car.observe_report(T0 + 90, charging(14, actual_a=8))  # accepted, but the car draws less
    snap = car.snapshot(T0 + 91, teslamate_fresh=False)
    assert not snap.current_commanded
    assert snap.report.charger_actual_current_a == 8


def test_a_start_or_stop_ends_the_trust() -> None:
    car = state()
    car.observe_command(T0, 10)
    car.observe_report(T0 + 30, charging(10))
    car.observe_start_stop()
    assert car.observe_command(T0 + 60, 12) is False
    assert not car.snapshot(T0 + 61, teslamate_fresh=False).current_commanded


@given(st.integers(min_value=5, max_value=48), st.integers(min_value=1, max_value=48))
def test_the_commanded_current_never_exceeds_the_car_maximum(amps: int, car_max: int) -> None:
    car = state()
    report = CarReport(charging_state="Charging", charge_current_request_a=6, charge_current_request_max_a=car_max)
    car.observe_command(T0, 6)
    car.observe_report(T0 + 1, report)
    car.observe_command(T0 + 2, amps)
    snap = car.snapshot(T0 + 3, teslamate_fresh=False)
    assert snap.current_commanded
    actual = snap.report.charger_actual_current_a
    assert actual is not None
    assert actual <= min(amps, car_max)
