"""The poll policy on a fake timeline: which calls it would make over hours and days, and when."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace

import pytest
from chargebus_tesla.poll_policy import (
    ASLEEP_PLUGGED_POLL_MAX_S,
    ASLEEP_STATE_POLL_S,
    CHARGE_AND_LOCATION_ENDPOINTS,
    CHARGE_ENDPOINTS,
    CONFIRM_AFTER_START_STOP_S,
    CONTROLLED_CHARGING_DATA_S,
    OBSERVED_CHARGING_DATA_S,
    ONLINE_SETTLE_S,
    QUIET_S,
    WAKE_CONFIRM_POLL_S,
    WAKE_MIN_INTERVAL_S,
    Action,
    CarView,
    PollPolicy,
    teslamate_is_fresh,
    utc_day_start,
)

DAY = 86_400.0
START = utc_day_start(1_800_000_000.0)  # a UTC midnight
Call = tuple[float, Action]


def run(
    policy: PollPolicy,
    view_at: Callable[[float], CarView],
    duration: float,
    start: float = START,
    on_call: Callable[[float, Action], None] | None = None,
) -> list[Call]:
    """Drive the policy like the runtime does: sleep until the decision's time, make the call, record it."""
    now, end = start, start + duration
    calls: list[Call] = []
    for _ in range(100_000):
        if now >= end:
            return calls
        decision = policy.next_call(now, view_at(now))
        if decision.due(now):
            calls.append((now, decision.action))
            record = {
                Action.STATE: policy.record_state_call,
                Action.DATA: policy.record_data_call,
                Action.WAKE: policy.record_wake,
            }
            record[decision.action](now)
            if on_call is not None:
                on_call(now, decision.action)
            continue
        now = min(end, max(decision.at, now + 1.0))
    pytest.fail("the policy never let time advance")


def always(view: CarView) -> Callable[[float], CarView]:
    return lambda _now: view


def actions(calls: list[Call]) -> list[Action]:
    return [action for _, action in calls]


ASLEEP = CarView(online_state="asleep", plugged_in=True, at_home=True, home_configured=True)


def test_fresh_teslamate_means_zero_calls_whatever_the_car_does() -> None:
    for view in (
        replace(ASLEEP, teslamate_fresh=True),
        CarView(online_state="online", teslamate_fresh=True),
        CarView(online_state="online", charging=True, under_control=True, teslamate_fresh=True),
    ):
        assert run(PollPolicy(max_wakes_per_day=6), always(view), DAY) == []


def test_asleep_car_gets_only_state_calls_at_the_slow_cadence() -> None:
    calls = run(PollPolicy(max_wakes_per_day=6), always(ASLEEP), DAY)
    assert set(actions(calls)) == {Action.STATE}
    # The slow cadence backs off while nothing changes: 10 min at first, doubling up to the plugged-in cap.
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(calls)]
    assert gaps[0] == ASLEEP_STATE_POLL_S
    assert gaps == sorted(gaps)
    assert max(gaps) == ASLEEP_PLUGGED_POLL_MAX_S
    assert len(calls) <= DAY / ASLEEP_PLUGGED_POLL_MAX_S + 4


def test_unknown_car_is_first_asked_for_its_state() -> None:
    decision = PollPolicy(6).next_call(START, CarView())
    assert decision.action is Action.STATE
    assert decision.due(START)


def test_wakes_are_bounded_per_utc_day_and_spaced() -> None:
    # A car that never comes online, and a setpoint that keeps asking to charge it.
    view = replace(ASLEEP, wants_charge=True)
    calls = run(PollPolicy(max_wakes_per_day=3), always(view), 2 * DAY)
    wakes = [at for at, action in calls if action is Action.WAKE]
    first_day = [at for at in wakes if at < START + DAY]
    assert len(first_day) == 3
    assert all(b - a >= WAKE_MIN_INTERVAL_S for a, b in itertools.pairwise(wakes))
    assert len(wakes) == 6  # the budget renews at UTC midnight
    assert wakes[3] == START + DAY


def test_a_zero_wake_budget_never_wakes() -> None:
    calls = run(PollPolicy(max_wakes_per_day=0), always(replace(ASLEEP, wants_charge=True)), 2 * DAY)
    assert Action.WAKE not in actions(calls)


def test_wake_only_for_a_car_known_plugged_in_at_home() -> None:
    for view in (
        replace(ASLEEP, wants_charge=True, plugged_in=None),
        replace(ASLEEP, wants_charge=True, plugged_in=False),
        replace(ASLEEP, wants_charge=True, at_home=None),
        replace(ASLEEP, wants_charge=True, at_home=False),
        replace(ASLEEP, wants_charge=False),
        replace(ASLEEP, wants_charge=True, online_state="unknown"),
    ):
        calls = run(PollPolicy(max_wakes_per_day=6), always(view), DAY)
        assert Action.WAKE not in actions(calls), view


def test_wake_with_fresh_teslamate_is_the_only_call() -> None:
    view = replace(ASLEEP, wants_charge=True, teslamate_fresh=True)
    calls = run(PollPolicy(max_wakes_per_day=6), always(view), 3600)
    assert actions(calls) == [Action.WAKE, Action.WAKE]


def test_a_woken_car_is_watched_closely_then_looked_at_at_once() -> None:
    # The view changes only through calls, as in the bridge: a state call reveals that the car came online.
    online_at = [float("inf")]
    known_online = [False]

    def view_at(_now: float) -> CarView:
        return replace(ASLEEP, wants_charge=True, online_state="online" if known_online[0] else "asleep")

    def on_call(now: float, action: Action) -> None:
        if action is Action.WAKE:
            online_at[0] = now + 25
        if action is Action.STATE and now >= online_at[0]:
            known_online[0] = True

    policy = PollPolicy(max_wakes_per_day=6)
    calls = run(policy, view_at, 120, on_call=on_call)
    assert actions(calls)[:5] == [Action.WAKE, Action.STATE, Action.STATE, Action.STATE, Action.DATA]
    assert [at - START for at, _ in calls[:5]] == [0, WAKE_CONFIRM_POLL_S, 20, 30, 30]
    assert len(calls) == 5  # then quiet: the setpoint's start command takes over
    assert policy.wakes_today(START + 30) == 1


def test_quiet_period_after_charging_stops_lets_the_car_sleep() -> None:
    stop_at, asleep_at = START + 3600, START + 3600 + 900

    def view_at(now: float) -> CarView:
        if now >= asleep_at:
            return CarView(online_state="asleep")
        charging = now < stop_at
        return CarView(online_state="online", charging=charging, under_control=charging, home_configured=True)

    calls = run(PollPolicy(max_wakes_per_day=6), view_at, 3 * 3600)
    charging_data = [at for at, action in calls if action is Action.DATA and at < stop_at]
    assert len(charging_data) == 3600 / CONTROLLED_CHARGING_DATA_S
    after_stop = [(at, action) for at, action in calls if at >= stop_at]
    assert Action.DATA not in actions(after_stop)
    assert len(after_stop) <= 2 * 3600 / ASLEEP_STATE_POLL_S + 1


def test_an_idle_online_car_is_looked_at_once_per_quiet_period() -> None:
    # e.g. sentry mode keeps it awake all day: one vehicle_data per quiet period, not every few minutes.
    view = CarView(online_state="online", home_configured=True)
    calls = run(PollPolicy(max_wakes_per_day=6), always(view), 6 * 3600)
    data = [at for at, action in calls if action is Action.DATA]
    assert all(b - a >= QUIET_S for a, b in itertools.pairwise(data))
    assert len(data) <= 6 * 3600 / QUIET_S + 1


def test_a_short_self_check_wake_costs_no_vehicle_data() -> None:
    # Cars come online for 2-3 minutes every hour; a vehicle_data then would keep them up 15 more minutes.
    def view_at(now: float) -> CarView:
        online = (now - START) % 3600 < 150
        return CarView(online_state="online" if online else "asleep")

    calls = run(PollPolicy(max_wakes_per_day=6), view_at, DAY)
    assert Action.DATA not in actions(calls)


def test_a_car_that_stays_online_is_looked_at_after_settling() -> None:
    online_at = START + 1200.0

    def view_at(now: float) -> CarView:
        return CarView(online_state="online" if now >= online_at else "asleep", home_configured=True)

    policy = PollPolicy(max_wakes_per_day=6)
    calls = run(policy, view_at, 1800)
    data = [at for at, action in calls if action is Action.DATA]
    assert data == [online_at + ONLINE_SETTLE_S]
    before = [action for at, action in calls if at < data[0]]
    assert before[-1] is Action.STATE  # still online? asked without waking it, right before


def test_charging_cadence_depends_on_control() -> None:
    controlled = CarView(online_state="online", charging=True, under_control=True)
    observed = CarView(online_state="online", charging=True)
    for view, cadence in ((controlled, CONTROLLED_CHARGING_DATA_S), (observed, OBSERVED_CHARGING_DATA_S)):
        calls = run(PollPolicy(max_wakes_per_day=6), always(view), 3600)
        assert set(actions(calls)) == {Action.DATA}
        assert len(calls) == 3600 / cadence


def test_only_the_needed_endpoints() -> None:
    policy = PollPolicy(max_wakes_per_day=6)
    charging = policy.next_call(START, CarView(online_state="online", charging=True, home_configured=True))
    assert charging.endpoints == CHARGE_ENDPOINTS
    policy = PollPolicy(max_wakes_per_day=6)
    idle_view = CarView(online_state="online", home_configured=True)
    policy.next_call(START, idle_view)
    policy.record_state_call(START + ONLINE_SETTLE_S)
    idle = policy.next_call(START + ONLINE_SETTLE_S, idle_view)
    assert (idle.action, idle.endpoints) == (Action.DATA, CHARGE_AND_LOCATION_ENDPOINTS)


def test_start_stop_is_confirmed_once_even_in_a_quiet_period() -> None:
    policy = PollPolicy(max_wakes_per_day=6)
    view = CarView(online_state="online")
    policy.next_call(START, view)
    policy.record_data_call(START)
    policy.record_start_stop(START + 10)
    decision = policy.next_call(START + 10, view)
    assert (decision.action, decision.at) == (Action.DATA, START + 10 + CONFIRM_AFTER_START_STOP_S)
    policy.record_data_call(decision.at)
    assert policy.next_call(decision.at, view).action is Action.STATE


def test_teslamate_going_stale_starts_with_the_non_waking_endpoint() -> None:
    policy = PollPolicy(max_wakes_per_day=6)
    charging = CarView(online_state="online", charging=True, under_control=True)
    assert policy.next_call(START, replace(charging, teslamate_fresh=True)).action is Action.NONE
    first = policy.next_call(START + 60, charging)
    assert (first.action, first.at) == (Action.STATE, START + 60)
    policy.record_state_call(START + 60)
    assert policy.next_call(START + 60, charging).action is Action.DATA


def test_nothing_while_rate_limited() -> None:
    until = START + 5000
    decision = PollPolicy(6).next_call(START, replace(ASLEEP, wants_charge=True, rate_limited_until=until))
    assert (decision.action, decision.at) == (Action.NONE, until)


@pytest.mark.parametrize(
    ("silence_s", "last_state", "fresh"),
    [(100, "online", True), (901, "online", False), (901, "asleep", False), (1400, "suspended", True)],
)
def test_teslamate_freshness(silence_s: float, last_state: str, fresh: bool) -> None:
    assert teslamate_is_fresh(START + silence_s, START, last_state, stale_s=900) is fresh
    assert not teslamate_is_fresh(START, None, None, stale_s=900)
