"""stage_offers: moving amps between slaves one heartbeat at a time never breaks the bus cap."""

from __future__ import annotations

from chargebus_twc.offer import stage_offers
from hypothesis import given
from hypothesis import strategies as st

MINIMUMS = {1: 6, 2: 6, 3: 6}


def test_a_decrease_goes_out_at_once() -> None:
    assert stage_offers({1: 10, 2: 30}, {1: 30, 2: 10}, MINIMUMS, 40) == {1: 10, 2: 10}


def test_an_increase_waits_for_room_left_by_the_others() -> None:
    # 2 may only grow once 1's decrease is on the wire
    assert stage_offers({1: 10, 2: 30}, {1: 30, 2: 10}, MINIMUMS, 40)[2] == 10
    assert stage_offers({1: 10, 2: 30}, {1: 10, 2: 10}, MINIMUMS, 40)[2] == 30


def test_an_increase_waits_for_decreases_on_their_way_rather_than_going_half_way() -> None:
    # 1 is coming down from 28 to 20: 2 waits at 0 for it, then goes to 20 in one change (not 0 → 12 → 20)
    assert stage_offers({1: 20, 2: 20}, {1: 28, 2: 0}, MINIMUMS, 40) == {1: 20, 2: 0}
    assert stage_offers({1: 20, 2: 20}, {1: 20, 2: 0}, MINIMUMS, 40) == {1: 20, 2: 20}
    # a charging slave keeps its offer meanwhile
    assert stage_offers({1: 20, 2: 20}, {1: 28, 2: 10}, MINIMUMS, 40) == {1: 20, 2: 10}


def test_a_partial_increase_goes_as_far_as_the_room_allows_when_nothing_is_freeing_it() -> None:
    # 3 is not in the plan (no longer managed) but still counted: 2 gets what is left
    assert stage_offers({1: 20, 2: 20}, {1: 20, 2: 0, 3: 8}, MINIMUMS, 40) == {1: 20, 2: 12}


def test_an_increase_that_cannot_reach_the_minimum_keeps_zero_never_one_to_five() -> None:
    assert stage_offers({1: 20, 2: 20}, {1: 20, 2: 0, 3: 16}, MINIMUMS, 40) == {1: 20, 2: 0}


def test_an_odd_committed_value_below_the_minimum_is_never_repeated() -> None:
    assert stage_offers({1: 20}, {1: 3, 2: 38}, {1: 6}, 40) == {1: 0}


@st.composite
def scenario(draw: st.DrawFn) -> tuple[int, dict[int, int], dict[int, int], list[int]]:
    cap = draw(st.integers(6, 80))
    slaves = draw(st.integers(1, 3))

    def offers() -> dict[int, int]:
        values = [draw(st.sampled_from([0, *range(6, cap + 1)])) for _ in range(slaves)]
        while sum(values) > cap:
            index = values.index(max(values))
            values[index] = 0 if values[index] - 1 < 6 else values[index] - 1
        return dict(enumerate(values, start=1))

    order = draw(st.lists(st.integers(1, slaves), min_size=0, max_size=12))
    return cap, offers(), offers(), order


@given(scenario())
def test_every_heartbeat_order_keeps_the_sum_under_the_cap_and_round_robin_converges(
    case: tuple[int, dict[int, int], dict[int, int], list[int]],
) -> None:
    cap, planned, committed, order = case
    minimums = dict.fromkeys(planned, 6)
    applied = dict(committed)
    for slave_id in order:  # any order of heartbeats
        applied[slave_id] = stage_offers(planned, applied, minimums, cap)[slave_id]
        assert sum(applied.values()) <= cap
        assert all(amps == 0 or amps >= 6 for amps in applied.values())
    for _ in range(2):  # two round-robin rounds always reach the plan
        for slave_id in sorted(planned):
            applied[slave_id] = stage_offers(planned, applied, minimums, cap)[slave_id]
            assert sum(applied.values()) <= cap
    assert applied == planned


def test_a_slave_told_do_not_touch_before_its_limit_is_known_gets_no_change() -> None:
    """After a restart of the bridge the slaves still apply the previous master's limits: a "do not touch" slave
    is sent "no change" (never 0 A) until it reports its limit, counted at its maximum meanwhile."""
    from chargebus_twc.offer import COMMAND_NO_CHANGE, HOLD_OFFER, heartbeat_command, stage_with_holds  # noqa: PLC0415

    minimums = {1: 6, 2: 6}
    held = stage_with_holds({1: 0, 2: 20}, {1: 0, 2: 10}, minimums, {1: 32}, bus_max_amps=40)
    assert held[1] == HOLD_OFFER
    assert held[2] == 10  # 20 + 32 held would pass the 40 A cap: no increase yet
    assert stage_with_holds({1: 0, 2: 8}, {1: 0, 2: 10}, minimums, {1: 32}, bus_max_amps=40)[2] == 8  # a decrease
    assert stage_with_holds({2: 20}, {2: 10}, minimums, {}, bus_max_amps=40) == {2: 20}
    assert heartbeat_command(HOLD_OFFER, 2, None) == (COMMAND_NO_CHANGE, 0)
