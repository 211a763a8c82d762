"""Merging EVSEs and vehicles by VIN into charge points (docs/contract.md §7, §8)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from chargebus.schema import EvseState, VehicleState
from chargebus_allocator.merge import Authorization, EvseSettings, MergeCache, VehicleSettings, merge
from hypothesis import given, settings
from hypothesis import strategies as st

from services.allocator.tests.alloc_builders import T0, VIN_A, VIN_B, evse_state, vehicle_state

CAR_A = f"car-{VIN_A}"


def test_a_twc_and_the_car_it_reads_form_one_charge_point() -> None:
    evses = [
        evse_state("twc-4a1b", vin=VIN_A, power_w=3680, charging=True, voltage_v=230, phases=3, max_a=32),
        evse_state(CAR_A, voltage_v=230, phases=1, power_w=3600),
    ]
    car = vehicle_state(VIN_A, charge_current_request_max_a=16)
    settings = {"twc-4a1b": EvseSettings(circuit="garage", phase="L2", priority=3)}
    (point,) = merge(evses, [car], settings, {VIN_A: VehicleSettings(priority=20)})
    assert point.id == "twc-4a1b"
    assert point.evse_ids == ("twc-4a1b", CAR_A)
    assert (point.current_target, point.start_stop_target) == ("twc-4a1b", CAR_A)
    assert (point.phases, point.voltage_v, point.step_w) == (1, 230, 230)
    assert (point.min_power_w, point.max_power_w) == pytest.approx((6 * 230, 16 * 230))
    assert point.power_w == 3680  # the TWC measures it, once
    assert point.priority == 20  # the vehicle's setting beats the EVSE's
    assert (point.circuit, point.wiring) == ("garage", "L2")
    assert point.vin == VIN_A
    assert point.charging
    assert not point.follows_slowly


def test_priority_falls_back_to_the_evse_and_then_to_zero() -> None:
    evses = [evse_state("twc-4a1b", vin=VIN_A), evse_state(CAR_A)]
    car = vehicle_state(VIN_A)
    (point,) = merge(evses, [car], {"twc-4a1b": EvseSettings(priority=3)})
    assert point.priority == 3
    (point,) = merge(evses, [car])
    assert point.priority == 0


def test_a_car_away_from_home_or_unplugged_is_not_a_charge_point() -> None:
    evses = [evse_state("twc-4a1b", vin=VIN_A), evse_state(CAR_A)]
    for car in (
        vehicle_state(VIN_A, at_home=False),
        vehicle_state(VIN_A, at_home=None),
        vehicle_state(VIN_A, plugged_in=False),
    ):
        (point,) = merge(evses, [car])
        assert point.evse_ids == ("twc-4a1b",)
        assert point.start_stop_target == "twc-4a1b"
    assert merge([evse_state(CAR_A)], [vehicle_state(VIN_A, at_home=False)]) == ()
    assert merge([evse_state(CAR_A)], []) == ()  # whereabouts unknown: never controlled


def test_a_car_on_a_mobile_connector_is_its_own_charge_point_controlled_through_its_api() -> None:
    (point,) = merge([evse_state(CAR_A, voltage_v=120, max_a=12, power_w=1400)], [vehicle_state(VIN_A)])
    assert point.id == CAR_A
    assert (point.current_target, point.start_stop_target) == (CAR_A, CAR_A)
    assert point.follows_slowly
    assert point.power_w == 1400
    assert (point.min_power_w, point.max_power_w, point.step_w) == (600, 1440, 120)


def test_a_gen3_twc_carrying_the_vin_measures_and_the_car_api_controls() -> None:
    evses = [
        evse_state("twc3-garage", vin=VIN_A, power_w=7000, voltage_v=230, phases=1),
        evse_state(CAR_A, voltage_v=230, power_w=6500),
    ]
    settings = {"twc3-garage": EvseSettings(circuit="garage", phase="L3")}
    (point,) = merge(evses, [vehicle_state(VIN_A)], settings)
    assert point.id == CAR_A
    assert set(point.evse_ids) == {CAR_A, "twc3-garage"}
    assert point.controllable
    assert (point.current_target, point.start_stop_target) == (CAR_A, CAR_A)
    assert point.power_w == 7000  # the Gen3 is its meter: counted once
    assert (point.circuit, point.wiring) == ("garage", "L3")
    assert point.follows_slowly


def test_read_only_evses_stay_read_only_loads() -> None:
    gen3 = evse_state("twc3-garage", power_w=5000)
    listening = evse_state("twc-00aa", controllable=False, power_w=1000)
    points = merge([gen3, listening])
    assert [(p.id, p.controllable, p.power_w) for p in points] == [
        ("twc-00aa", False, 1000),
        ("twc3-garage", False, 5000),
    ]


def test_a_listening_twc_with_the_car_is_controlled_through_the_car() -> None:
    evses = [evse_state("twc-00aa", controllable=False, vin=VIN_A, power_w=1000), evse_state(CAR_A)]
    (point,) = merge(evses, [vehicle_state(VIN_A)])
    assert (point.id, point.current_target, point.power_w) == (CAR_A, CAR_A, 1000)


def test_evses_without_a_vin_stay_their_own_charge_points() -> None:
    points = merge([evse_state("twc-0002"), evse_state("twc-0001")])
    assert [p.id for p in points] == ["twc-0001", "twc-0002"]
    assert all(p.vin is None for p in points)


def test_a_full_car_does_not_want_charge() -> None:
    evses = [evse_state("twc-4a1b", vin=VIN_A), evse_state(CAR_A)]
    assert not merge(evses, [vehicle_state(VIN_A, charging_state="Complete")])[0].wants_charge
    assert not merge(evses, [vehicle_state(VIN_A, soc_pct=80, charge_limit_pct=80)])[0].wants_charge
    assert merge(evses, [vehicle_state(VIN_A, soc_pct=79, charge_limit_pct=80)])[0].wants_charge


def test_authorization() -> None:
    evses = [evse_state("twc-0001", vin=VIN_A), evse_state("twc-0002", vin=VIN_B), evse_state("twc-0003")]
    allow = Authorization("allow_list", allowed=frozenset({VIN_A}), unknown_vin="deny")
    assert [p.authorized for p in merge(evses, authorization=allow)] == [True, False, False]
    deny = Authorization("deny_list", denied=frozenset({VIN_A}))
    assert [p.authorized for p in merge(evses, authorization=deny)] == [False, True, True]
    assert all(p.authorized for p in merge(evses))


def test_two_twcs_claiming_one_car_the_plugged_in_one_keeps_it() -> None:
    earlier = datetime.fromtimestamp(T0 - 100, tz=UTC)
    later = datetime.fromtimestamp(T0 - 10, tz=UTC)
    evses = [
        evse_state("twc-0001", vin=VIN_A, plugged_in_at=earlier),
        evse_state("twc-0002", vin=VIN_A, plugged_in_at=later),
        evse_state(CAR_A),
    ]
    points = {p.id: p for p in merge(evses, [vehicle_state(VIN_A)])}
    assert points["twc-0002"].vin == VIN_A
    assert points["twc-0002"].start_stop_target == CAR_A
    assert points["twc-0001"].vin is None


def test_the_cars_report_wins_when_its_evse_is_absent_and_line_to_line_volts_are_converted() -> None:
    twc = evse_state("twc-4a1b", vin=VIN_A, voltage_v=240, phases=1)
    (point,) = merge([twc], [vehicle_state(VIN_A, charger_phases=3, charger_voltage_v=400)])
    assert point.phases == 3
    assert point.voltage_v == pytest.approx(400 / 3**0.5)
    (point,) = merge([twc], [vehicle_state(VIN_A, charger_phases=0, charger_voltage_v=2)])
    assert (point.phases, point.voltage_v) == (1, 240)  # implausible: the TWC's own basis


def test_overrides_and_timers_come_from_the_members_settings() -> None:
    evses = [evse_state("twc-4a1b", vin=VIN_A), evse_state(CAR_A)]
    settings = {
        CAR_A: EvseSettings(mode="now", charge_now_until=T0 + 60, schedule_cap_w=5000),
        "twc-4a1b": EvseSettings(circuit="garage", schedule_cap_w=7000),
    }
    (point,) = merge(evses, [vehicle_state(VIN_A)], settings, {VIN_A: VehicleSettings(schedule_cap_w=6000)})
    assert (point.mode, point.charge_now_until, point.schedule_cap_w) == ("now", T0 + 60, 5000)
    assert point.circuit == "garage"


def test_an_offline_or_stale_controller_makes_the_charge_point_offline() -> None:
    assert not merge([evse_state("twc-0001", online=False)])[0].online
    assert not merge([evse_state("twc-0001", stale=True)])[0].online
    evses = [evse_state("twc-4a1b", vin=VIN_A), evse_state(CAR_A, online=False)]
    assert merge(evses, [vehicle_state(VIN_A)])[0].online  # the TWC sets the current


def test_plug_in_time_and_order_do_not_depend_on_input_order() -> None:
    at = datetime.fromtimestamp(T0 - 50, tz=UTC)
    evses = [evse_state("twc-4a1b", vin=VIN_A, plugged_in_at=at), evse_state(CAR_A), evse_state("twc-0001")]
    forward = merge(evses, [vehicle_state(VIN_A)])
    backward = merge(list(reversed(evses)), [vehicle_state(VIN_A)])
    assert forward == backward
    assert forward[1].plugged_in_at == T0 - 50


def test_a_kind_of_charger_the_allocator_has_never_heard_of_is_a_local_charger() -> None:
    """A new bridge (an OCPP wallbox today, anything tomorrow) needs no change here: its kind ranks with the local
    chargers, before a car's API, and a wallbox alone is a charge point like a TWC."""
    wallbox = evse_state("ocpp-garage", vin=VIN_A, power_w=2000, charging=True).model_copy(update={"kind": "ocpp"})
    (alone,) = merge([wallbox], [])
    assert (alone.id, alone.current_target) == ("ocpp-garage", "ocpp-garage")
    (point,) = merge([evse_state(CAR_A), wallbox], [vehicle_state(VIN_A)])
    assert point.current_target == "ocpp-garage"  # the wallbox sets the current; the car's API is billed
    assert not point.follows_slowly


_STATES = {
    "twc-0001": [evse_state("twc-0001", vin=VIN_A, power_w=3680), evse_state("twc-0001", power_w=0, plugged_in=False)],
    "twc-0002": [evse_state("twc-0002", vin=VIN_B), evse_state("twc-0002", vin=VIN_A, plugged_in_at=datetime.now(UTC))],
    "twc3-three": [evse_state("twc3-three", vin=VIN_B), evse_state("twc3-three", online=False)],
    CAR_A: [evse_state(CAR_A, power_w=3600), evse_state(CAR_A, phases=3, voltage_v=230)],
}
_CARS = {VIN_A: [vehicle_state(VIN_A), vehicle_state(VIN_A, charge_current_request_max_a=16)]}
_SETTINGS = [None, EvseSettings(circuit="garage", priority=2), EvseSettings(mode="now")]
_POLICIES = [Authorization(), Authorization("deny_list", denied=frozenset({VIN_B}))]


@st.composite
def _rounds(draw: st.DrawFn) -> list[tuple[list[EvseState], list[VehicleState], dict[str, EvseSettings], int]]:
    """A few rounds, each drawing every EVSE's and car's state from a small pool (so most stay the same objects)."""
    rounds = []
    for _ in range(draw(st.integers(1, 6))):
        evses = [draw(st.sampled_from(pool)) for pool in _STATES.values() if draw(st.booleans())]
        cars = [draw(st.sampled_from(pool)) for pool in _CARS.values() if draw(st.booleans())]
        chosen = {evse_id: draw(st.sampled_from(_SETTINGS)) for evse_id in _STATES}
        own = {evse_id: entry for evse_id, entry in chosen.items() if entry is not None}
        rounds.append((evses, cars, own, draw(st.integers(0, len(_POLICIES) - 1))))
    return rounds


@settings(max_examples=200, deadline=None)
@given(_rounds())
def test_a_cached_merge_equals_a_fresh_one_round_after_round(
    rounds: list[tuple[list[EvseState], list[VehicleState], dict[str, EvseSettings], int]],
) -> None:
    cache = MergeCache()
    for evses, cars, own, policy in rounds:
        per_vehicle = {VIN_A: VehicleSettings(priority=5)} if own.get("twc-0001") else {}
        fresh = merge(evses, cars, own, per_vehicle, _POLICIES[policy])
        cached = merge(evses, cars, own, per_vehicle, _POLICIES[policy], cache=cache)
        assert [repr(point) for point in cached] == [repr(point) for point in fresh]


def test_a_cached_merge_rebuilds_only_the_groups_that_changed() -> None:
    cache = MergeCache()
    one, two = evse_state("twc-0001"), evse_state("twc-0002")
    first = merge([one, two], cache=cache)
    again = merge([one, two], cache=cache)
    assert all(a is b for a, b in zip(first, again, strict=True))
    changed = evse_state("twc-0002", power_w=1000)
    third = merge([one, changed], cache=cache)
    assert third[0] is first[0]
    assert third[1] is not first[1]
    assert third[1].power_w == 1000
