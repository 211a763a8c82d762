"""Setpoint → commands: only differences, throttled amps, immediate stops, the < 5 A double send."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from chargebus_tesla.commands import (
    CAR_MAX_AMPS,
    CHARGE_START,
    CHARGE_STOP,
    LOW_AMPS_REPEAT_DELAY_S,
    SET_CHARGING_AMPS,
    CarFacts,
    CommandPlanner,
    Plan,
    PlannedCommand,
    Target,
    car_max_amps,
    failsafe_target,
    target_from_setpoint,
)
from chargebus_tesla.vehicle_data import ChargingState
from hypothesis import given, settings
from hypothesis import strategies as st

T0 = 1_800_000_000.0
INTERVAL = 60.0


def names(plan: Plan) -> list[str]:
    return [command.name for command in plan.commands]


def charging(amps: float = 16) -> CarFacts:
    return CarFacts(online=True, charging_state="Charging", charge_current_request_a=amps)


def stopped(amps: float = 16) -> CarFacts:
    return CarFacts(online=True, charging_state="Stopped", charge_current_request_a=amps)


def test_start_only_when_the_car_is_not_charging() -> None:
    assert names(CommandPlanner().plan(T0, Target(charge=True, amps=None), stopped())) == [CHARGE_START]
    assert names(CommandPlanner().plan(T0, Target(charge=True, amps=None), charging())) == []


def test_stop_only_when_the_car_is_charging() -> None:
    assert names(CommandPlanner().plan(T0, Target(charge=False, amps=None), charging())) == [CHARGE_STOP]
    assert names(CommandPlanner().plan(T0, Target(charge=False, amps=None), stopped())) == []


def test_zero_amps_is_a_stop_not_a_set_charging_amps() -> None:
    plan = CommandPlanner().plan(T0, Target(charge=None, amps=0), charging())
    assert names(plan) == [CHARGE_STOP]


def test_stop_is_never_throttled() -> None:
    planner = CommandPlanner(INTERVAL)
    assert names(planner.plan(T0, Target(charge=True, amps=10), charging())) == [SET_CHARGING_AMPS]
    assert names(planner.plan(T0 + 1, Target(charge=False, amps=0), charging(10))) == [CHARGE_STOP]


def test_amps_only_when_the_whole_amp_value_changes() -> None:
    planner = CommandPlanner(INTERVAL)
    plan = planner.plan(T0, Target(charge=True, amps=10), charging(16))
    assert plan.commands == (PlannedCommand(SET_CHARGING_AMPS, 10),)
    assert plan.commands[0].body == {"charging_amps": 10}
    assert planner.plan(T0 + 600, Target(charge=True, amps=10), charging(16)).commands == ()  # report not updated yet
    assert planner.plan(T0 + 900, Target(charge=True, amps=10), charging(10)).commands == ()


def test_below_5_amps_is_sent_twice_a_few_seconds_apart() -> None:
    plan = CommandPlanner().plan(T0, Target(charge=True, amps=3), charging(10))
    assert plan.commands == (
        PlannedCommand(SET_CHARGING_AMPS, 3),
        PlannedCommand(SET_CHARGING_AMPS, 3, delay_s=LOW_AMPS_REPEAT_DELAY_S),
    )


def test_a_burst_is_coalesced_and_the_latest_wins() -> None:
    planner = CommandPlanner(INTERVAL)
    sent: list[int | None] = []
    retry_at = None
    for second, amps in enumerate([12, 14, 9, 11, 13, 8, 10]):
        plan = planner.plan(T0 + second, Target(charge=True, amps=amps), charging(16))
        sent += [command.charging_amps for command in plan.commands]
        retry_at = plan.retry_at or retry_at
    assert sent == [12]
    assert retry_at == T0 + INTERVAL
    final = planner.plan(T0 + INTERVAL, Target(charge=True, amps=10), charging(12))
    assert final.commands == (PlannedCommand(SET_CHARGING_AMPS, 10),)


def test_a_start_waits_for_a_throttled_decrease() -> None:
    planner = CommandPlanner(INTERVAL)
    planner.plan(T0, Target(charge=None, amps=20), charging(16))
    stopped_plan = planner.plan(T0 + 1, Target(charge=False, amps=0), charging(20))
    assert names(stopped_plan) == [CHARGE_STOP]
    held = planner.plan(T0 + 10, Target(charge=True, amps=8), stopped(20))
    assert (held.commands, held.retry_at) == ((), T0 + INTERVAL)
    released = planner.plan(T0 + INTERVAL, Target(charge=True, amps=8), stopped(20))
    assert released.commands == (PlannedCommand(SET_CHARGING_AMPS, 8), PlannedCommand(CHARGE_START))


def test_a_start_does_not_wait_for_a_throttled_increase() -> None:
    planner = CommandPlanner(INTERVAL)
    planner.plan(T0, Target(charge=None, amps=6), charging(16))
    planner.plan(T0 + 1, Target(charge=False, amps=0), charging(6))
    plan = planner.plan(T0 + 10, Target(charge=True, amps=12), stopped(6))
    assert (names(plan), plan.retry_at) == ([CHARGE_START], T0 + INTERVAL)


@pytest.mark.parametrize("state", ["Disconnected", "Complete"])
def test_no_start_when_the_car_cannot(state: ChargingState) -> None:
    car = CarFacts(online=True, charging_state=state, charge_current_request_a=16)
    assert CommandPlanner().plan(T0, Target(charge=True, amps=10), car).commands == ()


def test_nothing_for_an_unreachable_or_unknown_car() -> None:
    asleep = CarFacts(online=False, charging_state="Stopped")
    unknown = CarFacts(online=True, charging_state=None)
    for car in (asleep, unknown):
        assert CommandPlanner().plan(T0, Target(charge=True, amps=10), car).commands == ()


def test_a_refused_start_is_not_repeated_until_the_car_changes() -> None:
    planner = CommandPlanner()
    assert names(planner.plan(T0, Target(charge=True, amps=None), stopped())) == [CHARGE_START]
    planner.refused(T0, CHARGE_START, "complete", "Stopped")
    assert planner.plan(T0 + 600, Target(charge=True, amps=None), stopped()).commands == ()
    no_power = CarFacts(online=True, charging_state="NoPower")
    assert names(planner.plan(T0 + 700, Target(charge=True, amps=None), no_power)) == [CHARGE_START]


def test_is_charging_refusal_counts_as_started() -> None:
    planner = CommandPlanner()
    planner.plan(T0, Target(charge=True, amps=None), stopped())
    planner.refused(T0, CHARGE_START, "is_charging", "Stopped")
    assert planner.plan(T0 + 10, Target(charge=True, amps=None), stopped()).commands == ()


def test_own_start_is_trusted_until_the_car_reports_it() -> None:
    planner = CommandPlanner()
    planner.plan(T0, Target(charge=True, amps=None), stopped())
    assert planner.plan(T0 + 30, Target(charge=True, amps=None), stopped()).commands == ()
    assert names(planner.plan(T0 + 600, Target(charge=True, amps=None), stopped())) == [CHARGE_START]


def test_a_failed_amps_command_is_sent_again_after_the_interval() -> None:
    planner = CommandPlanner(INTERVAL)
    plan = planner.plan(T0, Target(charge=True, amps=10), charging(16))
    planner.failed(plan.commands[0])
    assert planner.plan(T0 + 1, Target(charge=True, amps=10), charging(16)).retry_at == T0 + INTERVAL
    assert names(planner.plan(T0 + INTERVAL, Target(charge=True, amps=10), charging(16))) == [SET_CHARGING_AMPS]


def test_a_change_made_in_the_app_is_corrected() -> None:
    planner = CommandPlanner(INTERVAL)
    planner.plan(T0, Target(charge=True, amps=10), charging(16))
    assert planner.plan(T0 + 300, Target(charge=True, amps=10), charging(10)).commands == ()
    assert names(planner.plan(T0 + 600, Target(charge=True, amps=10), charging(32))) == [SET_CHARGING_AMPS]


@pytest.mark.parametrize(
    ("power_w", "phases", "voltage_v", "amps"),
    [(4600, None, None, 20), (4600, 1, 230, 20), (11_040, 3, 230, 16), (1000, None, None, 0), (50_000, 3, 230, 32)],
)
def test_watts_to_amps_at_the_edge(power_w: float, phases: int | None, voltage_v: float | None, amps: int) -> None:
    target = target_from_setpoint(
        power_w=power_w,
        charge=True,
        setpoint_phases=phases,
        setpoint_voltage_v=voltage_v,
        car_phases=1,
        car_voltage_v=230,
        min_amps=5,
        max_amps=32,
    )
    assert target == Target(charge=True, amps=amps)


def test_null_power_leaves_the_current_alone() -> None:
    target = target_from_setpoint(
        power_w=None,
        charge=False,
        setpoint_phases=None,
        setpoint_voltage_v=None,
        car_phases=1,
        car_voltage_v=230,
        min_amps=5,
        max_amps=32,
    )
    assert target == Target(charge=False, amps=None)


def test_limits_and_failsafe() -> None:
    assert car_max_amps(None) == CAR_MAX_AMPS
    assert car_max_amps(16) == 16
    assert car_max_amps(80) == CAR_MAX_AMPS
    assert failsafe_target(0) is None
    assert failsafe_target(6) == Target(charge=None, amps=6)


@dataclass
class ModelCar:
    """Applies commands at once, so the planner's belief and the car agree: what is left to check is the plan."""

    charging_state: ChargingState
    request_a: int

    def facts(self) -> CarFacts:
        return CarFacts(online=True, charging_state=self.charging_state, charge_current_request_a=self.request_a)

    def apply(self, plan: Plan) -> None:
        for command in plan.commands:
            if command.name == CHARGE_START:
                self.charging_state = "Charging"
            elif command.name == CHARGE_STOP:
                self.charging_state = "Stopped"
            elif command.charging_amps is not None:
                self.request_a = command.charging_amps


events = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=150),
        st.one_of(st.none(), st.floats(min_value=0, max_value=20_000)),
        st.sampled_from([True, False, None]),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(events=events, max_amps=st.integers(min_value=5, max_value=48), min_amps=st.integers(1, 16))
def test_property_throttle_limits_and_immediate_stops(
    events: list[tuple[float, float | None, bool | None]], max_amps: int, min_amps: int
) -> None:
    planner = CommandPlanner(INTERVAL)
    car = ModelCar(charging_state="Stopped", request_a=16)
    now = T0
    amps_changes: list[float] = []
    for delay, power_w, charge in events:
        now += delay
        target = target_from_setpoint(
            power_w=power_w,
            charge=charge,
            setpoint_phases=1,
            setpoint_voltage_v=230,
            car_phases=1,
            car_voltage_v=230,
            min_amps=min_amps,
            max_amps=max_amps,
        )
        was_charging = car.charging_state == "Charging"
        plan = planner.plan(now, target, car.facts())
        sent_amps = {command.charging_amps for command in plan.commands if command.name == SET_CHARGING_AMPS}
        assert len(sent_amps) <= 1
        for amps in sent_amps:
            assert amps is not None
            assert min_amps <= amps <= max_amps
            amps_changes.append(now)
        if was_charging and (target.charge is False or target.amps == 0):
            assert names(plan) == [CHARGE_STOP]
        car.apply(plan)
        if CHARGE_START in names(plan) and target.amps is not None:
            assert car.request_a <= target.amps  # never started above the setpoint
    gaps = [later - earlier for earlier, later in itertools.pairwise(amps_changes)]
    assert all(gap >= INTERVAL for gap in gaps)


def test_a_max_current_of_0_turns_any_setpoint_into_a_stop() -> None:
    """`max_current/set 0` caps the car at 0 A: whatever the allocator asks, the bridge offers 0 (a stop)."""
    target = target_from_setpoint(
        power_w=7000.0, charge=True, setpoint_phases=1, setpoint_voltage_v=230.0,
        car_phases=1, car_voltage_v=230.0, min_amps=5, max_amps=0,
    )  # fmt: skip
    assert target.amps == 0
