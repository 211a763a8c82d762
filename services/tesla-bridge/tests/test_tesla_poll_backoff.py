"""The poll policy's back-off and on-demand rules: gaps that grow while nothing changes, bounded staleness, and the
cause each call is made for. Pure: a fake timeline, no I/O."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from chargebus_tesla.poll_policy import (
    ASLEEP_PLUGGED_POLL_MAX_S,
    ASLEEP_STATE_POLL_MAX_S,
    ASLEEP_STATE_POLL_S,
    CONFIRM_AFTER_COMMAND_S,
    CONTROLLED_CHARGING_DATA_S,
    CONTROLLED_CHARGING_MAX_S,
    Action,
    CarView,
    PollCause,
    PollPolicy,
    backoff_gap,
    utc_day_start,
)
from hypothesis import given, settings
from hypothesis import strategies as st

START = utc_day_start(1_800_000_000.0)
HOUR = 3600.0
Call = tuple[float, Action, PollCause]

CHARGING = CarView(online_state="online", charging=True, plugged_in=True, at_home=True, under_control=True)
FOLLOWING = CarView(
    online_state="online", charging=True, plugged_in=True, at_home=True, under_control=True, follows_command=True
)


def run(
    policy: PollPolicy,
    view_at: Callable[[float], CarView],
    duration: float,
    on_call: Callable[[float, Action], None] | None = None,
) -> list[Call]:
    now, end = START, START + duration
    calls: list[Call] = []
    for _ in range(100_000):
        if now >= end:
            return calls
        decision = policy.next_call(now, view_at(now))
        if decision.due(now):
            calls.append((now, decision.action, decision.cause))
            {
                Action.STATE: policy.record_state_call,
                Action.DATA: policy.record_data_call,
                Action.WAKE: policy.record_wake,
            }[decision.action](now)
            if on_call is not None:
                on_call(now, decision.action)
            continue
        now = min(end, max(decision.at, now + 1.0))
    raise AssertionError("the policy never let time advance")


def gaps(calls: list[Call], action: Action) -> list[float]:
    times = [at for at, done, _ in calls if done is action]
    return [b - a for a, b in itertools.pairwise(times)]


def test_backoff_gap_doubles_from_the_base_up_to_the_cap() -> None:
    at, since, seen = 0.0, 0.0, []
    for _ in range(8):
        gap = backoff_gap(600.0, 3600.0, at - since)
        seen.append(gap)
        at += gap
    assert seen == [600.0, 600.0, 1200.0, 2400.0, 3600.0, 3600.0, 3600.0, 3600.0]


def test_a_car_following_our_commands_is_polled_less_and_less_up_to_the_cap() -> None:
    calls = run(PollPolicy(max_wakes_per_day=6), lambda _now: FOLLOWING, 6 * HOUR)
    data = gaps(calls, Action.DATA)
    assert data[0] == CONTROLLED_CHARGING_DATA_S
    assert data == sorted(data)
    assert max(data) == CONTROLLED_CHARGING_MAX_S
    assert {cause for _, _, cause in calls} == {PollCause.CHARGING_WATCH}
    # The same six hours at the fixed 2-minute cadence would be 180 calls.
    assert len(calls) <= 6 * HOUR / CONTROLLED_CHARGING_MAX_S + 6


def test_without_a_confirmation_the_charging_cadence_stays_at_two_minutes() -> None:
    calls = run(PollPolicy(max_wakes_per_day=6), lambda _now: CHARGING, HOUR)
    assert set(gaps(calls, Action.DATA)) == {CONTROLLED_CHARGING_DATA_S}


def test_a_surprise_restarts_the_backoff_at_two_minutes() -> None:
    surprise_at = START + 3 * HOUR
    surprised: list[float] = []

    def on_call(now: float, action: Action) -> None:
        if action is Action.DATA and now >= surprise_at and not surprised:
            surprised.append(now)  # this report showed another current than the commanded one

    def view_at(now: float) -> CarView:
        # Not following from that report until the next one confirms again.
        return CHARGING if surprised and now < surprised[0] + 60 else FOLLOWING

    calls = run(PollPolicy(max_wakes_per_day=6), view_at, 5 * HOUR, on_call=on_call)
    after = [at for at, action, _ in calls if action is Action.DATA and at >= surprised[0]]
    before = [at for at, action, _ in calls if action is Action.DATA and at < surprised[0]]
    assert after[0] - before[-1] == CONTROLLED_CHARGING_MAX_S
    assert after[1] - after[0] == CONTROLLED_CHARGING_DATA_S


def test_the_time_to_full_caps_the_gap() -> None:
    view = CarView(**{**vars(FOLLOWING), "time_to_full_s": 400.0})
    calls = run(PollPolicy(max_wakes_per_day=6), lambda _now: view, 4 * HOUR)
    assert max(gaps(calls, Action.DATA)) == 400.0


def test_an_untrusted_command_is_confirmed_once() -> None:
    policy = PollPolicy(max_wakes_per_day=6)
    calls = run(policy, lambda _now: FOLLOWING, 2 * HOUR)
    last = calls[-1][0]
    policy.record_untrusted_command(last + 5)
    decision = policy.next_call(last + 6, FOLLOWING)
    assert decision.action is Action.DATA
    assert decision.at == last + 5 + CONFIRM_AFTER_COMMAND_S
    assert decision.cause is PollCause.CONFIRM_COMMAND


def test_an_unplugged_sleeping_car_is_watched_within_the_shorter_cap() -> None:
    view = CarView(online_state="asleep", plugged_in=False, at_home=True)
    calls = run(PollPolicy(max_wakes_per_day=6), lambda _now: view, 12 * HOUR)
    assert max(gaps(calls, Action.STATE)) == ASLEEP_STATE_POLL_MAX_S
    assert {cause for _, _, cause in calls} == {PollCause.FIRST_LOOK, PollCause.ASLEEP_WATCH}


def test_a_sleeping_car_the_setpoint_wants_but_may_not_wake_is_watched_at_the_base_cadence() -> None:
    view = CarView(online_state="asleep", plugged_in=True, at_home=True, wants_charge=True)
    calls = run(PollPolicy(max_wakes_per_day=0), lambda _now: view, 6 * HOUR)
    assert set(gaps(calls, Action.STATE)) == {ASLEEP_STATE_POLL_S}


online_states = st.sampled_from(["online", "asleep", "offline", "unknown"])
views = st.builds(
    CarView,
    online_state=online_states,
    charging=st.booleans(),
    plugged_in=st.sampled_from([True, False, None]),
    at_home=st.sampled_from([True, False, None]),
    under_control=st.booleans(),
    wants_charge=st.booleans(),
    home_configured=st.booleans(),
    follows_command=st.booleans(),
    time_to_full_s=st.one_of(st.none(), st.floats(min_value=0, max_value=20 * HOUR)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(min_value=60, max_value=4 * HOUR), views), min_size=1, max_size=8))
def test_properties_of_any_timeline(segments: list[tuple[float, CarView]]) -> None:
    """Whatever the car does: no vehicle_data on a car the view says is not online; a charging controlled car is
    looked at within the cap; a car that is not online is asked within the plugged-in cap; the promised staleness
    covers the gap to the next scheduled call; every call names a cause."""
    bounds = list(itertools.accumulate(duration for duration, _ in segments))

    def view_at(now: float) -> CarView:
        elapsed = now - START
        for bound, (_, view) in zip(bounds, segments, strict=True):
            if elapsed < bound:
                return view
        return segments[-1][1]

    policy = PollPolicy(max_wakes_per_day=6)
    now, end = START, START + bounds[-1]
    last_call: float | None = None
    for _ in range(20_000):
        if now >= end:
            break
        view = view_at(now)
        decision = policy.next_call(now, view)
        if decision.due(now):
            assert decision.cause is not PollCause.NONE
            if decision.action is Action.DATA:
                assert view.online_state == "online"
            {
                Action.STATE: policy.record_state_call,
                Action.DATA: policy.record_data_call,
                Action.WAKE: policy.record_wake,
            }[decision.action](now)
            last_call = now
            continue
        if decision.action is not Action.NONE and last_call is not None and view_at(decision.at) == view:
            check_gap(decision.at - last_call, view, policy)
        now = min(end, max(decision.at, now + 1.0))


def check_gap(gap: float, view: CarView, policy: PollPolicy) -> None:
    """The gap to the next scheduled call is within what the schedule promises for this view."""
    assert gap <= policy.stale_after_s()
    if view.online_state == "online" and view.charging and view.under_control and not view.teslamate_fresh:
        assert gap <= CONTROLLED_CHARGING_MAX_S
    if view.online_state != "online":
        assert gap <= ASLEEP_PLUGGED_POLL_MAX_S
