"""Offers: watts → whole amps at the edge, every limit, the bus cap, failsafe, and the heartbeat command form."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from chargebus.config import TwcConfig
from chargebus.schema import Setpoint
from chargebus.units import watts_to_amps
from chargebus_twc.offer import (
    BusLimits,
    SlaveDemand,
    cut_to_bus,
    failsafe_offer,
    heartbeat_command,
    plan_offers,
    rating_problem,
    slave_max_amps,
    slave_min_amps,
    wanted_amps,
)
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

NOW = 1_800_000_000.0
LIMITS = BusLimits(wiring_max_amps=32, bus_max_amps=32, min_amps=6, failsafe_amps=6)


def setpoint(
    power_w: float | None,
    *,
    expires_in: float = 60.0,
    ttl_s: float | None = None,
    phases: int | None = None,
    voltage_v: float | None = None,
) -> Setpoint:
    return Setpoint(
        evse_id="twc-4a1b",
        power_w=power_w,
        phases=phases,
        voltage_v=voltage_v,
        expires_at=datetime.fromtimestamp(NOW + expires_in, tz=UTC),
        ttl_s=ttl_s,
    )


def demand(
    slave_id: int = 1,
    sp: Setpoint | None = None,
    *,
    min_amps: int = 6,
    max_amps: int = 32,
    voltage_v: float = 230.0,
    phases: int = 1,
    received_at: float = NOW,
    current_offer: int = 0,
) -> SlaveDemand:
    return SlaveDemand(slave_id, min_amps, max_amps, voltage_v, phases, sp, received_at, current_offer)


# ----- configuration ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        {"wiring_max_amps": 81},
        {"min_amps": 4},
        {"wiring_max_amps": 5, "min_amps": 6},
        {"failsafe_amps": 3},
        {"wiring_max_amps": 16, "failsafe_amps": 20},
    ],
)
def test_unsafe_limits_refuse_to_start_rather_than_being_clamped(settings: dict[str, int]) -> None:
    with pytest.raises(ValidationError):
        TwcConfig.model_validate(settings)


def test_limits_come_from_the_twc_section() -> None:
    assert BusLimits.from_config(TwcConfig()) == BusLimits(32, 32, 6, 6)


def test_a_unit_rated_below_the_wiring_limit_is_reported_and_driven_at_its_rating() -> None:
    problem = rating_problem(32, 16.0)
    assert problem is not None
    assert "16 A" in problem
    assert rating_problem(32, 32.0) is None
    assert slave_max_amps(32, 16.0, None) == 16


def test_slave_minimum_is_the_higher_of_config_and_protocol() -> None:
    assert slave_min_amps(5, 1) == 5
    assert slave_min_amps(5, 2) == 6
    assert slave_min_amps(8, 1) == 8


def test_slave_maximum_is_the_lowest_limit_in_whole_amps() -> None:
    assert slave_max_amps(32, 80.0, None) == 32
    assert slave_max_amps(32, 32.0, 10.5) == 10
    assert slave_max_amps(40, None, None) == 40
    assert slave_max_amps(90, None, None) == 80  # never above the largest Gen2 rating


# ----- one slave ---------------------------------------------------------------------------------------------------


def test_watts_floor_to_whole_amps_with_the_contract_epsilon() -> None:
    assert wanted_amps(demand(sp=setpoint(4600.0)), NOW) == 20
    assert wanted_amps(demand(sp=setpoint(4599.0)), NOW) == 19


def test_the_setpoint_basis_wins_over_the_bridges_own() -> None:
    # A 1-phase car on a 3-phase TWC told 4600 W at 230 V gets 20 A (docs/contract.md §6).
    three_phase = demand(sp=setpoint(4600.0, phases=1, voltage_v=230.0), phases=3)
    assert wanted_amps(three_phase, NOW) == 20
    assert wanted_amps(demand(sp=setpoint(11040.0), phases=3), NOW) == 16
    assert wanted_amps(demand(sp=setpoint(2400.0, voltage_v=240.0)), NOW) == 10


def test_below_the_minimum_is_zero_never_one_to_four_amps() -> None:
    for watts in (1.0, 230.0, 1000.0, 1379.0):
        assert wanted_amps(demand(sp=setpoint(watts)), NOW) == 0
    assert wanted_amps(demand(sp=setpoint(1380.0)), NOW) == 6


def test_above_the_maximum_is_capped() -> None:
    assert wanted_amps(demand(sp=setpoint(22_000.0), max_amps=16), NOW) == 16


def test_expired_setpoints_mean_failsafe() -> None:
    assert wanted_amps(demand(sp=setpoint(4600.0, expires_in=-1.0)), NOW) is None
    assert wanted_amps(demand(sp=setpoint(4600.0, ttl_s=30.0), received_at=NOW - 31), NOW) is None
    assert wanted_amps(demand(sp=setpoint(4600.0, ttl_s=30.0), received_at=NOW - 29), NOW) == 20
    assert wanted_amps(demand(sp=None), NOW) is None


def test_null_power_keeps_the_current_offer_within_limits() -> None:
    assert wanted_amps(demand(sp=setpoint(None), current_offer=12), NOW) == 12
    assert wanted_amps(demand(sp=setpoint(None), current_offer=40), NOW) == 32
    assert wanted_amps(demand(sp=setpoint(None), current_offer=0), NOW) == 0


# ----- the bus -------------------------------------------------------------------------------------------------------


def test_failsafe_is_the_smaller_of_failsafe_amps_and_an_equal_share() -> None:
    assert failsafe_offer(6, 32, 2, 6, 32) == 6
    assert failsafe_offer(16, 32, 3, 6, 32) == 10
    assert failsafe_offer(6, 10, 2, 6, 32) == 0  # 5 A share is below the 6 A minimum
    assert failsafe_offer(0, 32, 1, 6, 32) == 0
    assert failsafe_offer(16, 32, 1, 6, 12) == 12


def test_cut_drops_the_smallest_wanted_offer_that_would_fall_below_its_minimum() -> None:
    assert cut_to_bus({1: 6, 2: 20}, {1: 6, 2: 6}, 20) == {1: 0, 2: 20}
    assert cut_to_bus({1: 10, 2: 30}, {1: 6, 2: 6}, 20) == {1: 0, 2: 20}


def test_cut_shares_the_rest_proportionally_in_whole_amps() -> None:
    assert cut_to_bus({1: 16, 2: 16, 3: 16}, {1: 6, 2: 6, 3: 6}, 32) == {1: 11, 2: 11, 3: 10}
    assert cut_to_bus({1: 10, 2: 30}, {1: 6, 2: 6}, 32) == {1: 8, 2: 24}
    assert cut_to_bus({1: 10, 2: 0}, {1: 6, 2: 6}, 32) == {1: 10, 2: 0}
    assert cut_to_bus({1: 10}, {1: 6}, 5) == {1: 0}


def test_plan_mixes_setpoints_and_failsafe_under_the_bus_cap() -> None:
    assert plan_offers([demand(1, setpoint(20 * 230.0)), demand(2, None)], LIMITS, NOW) == {1: 20, 2: 6}
    # 32 + 6 > 32: a proportional cut would leave the failsafe slave 5 A, below its minimum, so it goes to 0.
    assert plan_offers([demand(1, setpoint(32 * 230.0)), demand(2, None)], LIMITS, NOW) == {1: 32, 2: 0}
    assert plan_offers([demand(1, None), demand(2, None)], LIMITS, NOW) == {1: 6, 2: 6}


def test_no_spike_a_raise_offers_exactly_the_setpoint() -> None:
    before = plan_offers([demand(1, setpoint(6 * 230.0))], LIMITS, NOW)
    after = plan_offers([demand(1, setpoint(8 * 230.0), current_offer=before[1])], LIMITS, NOW)
    assert (before, after) == ({1: 6}, {1: 8})


@pytest.mark.parametrize(
    ("offer", "protocol", "reported", "expected"),
    [
        (16, 2, 1600, (0x00, 0)),  # the slave already applies it: "no change"
        (16, 2, 1500, (0x09, 1600)),
        (16, 1, 0, (0x05, 1600)),
        (0, 2, 0, (0x09, 0)),  # 0 A always explicit, never the all-zero block
        (0, 1, None, (0x05, 0)),
    ],
)
def test_heartbeat_command(offer: int, protocol: int, reported: int | None, expected: tuple[int, int]) -> None:
    assert heartbeat_command(offer, protocol, reported) == expected


# ----- properties ------------------------------------------------------------------------------------------------

setpoints = st.one_of(
    st.none(),
    st.builds(
        setpoint,
        st.one_of(st.none(), st.floats(0, 60_000, allow_nan=False)),
        expires_in=st.floats(-100, 100, allow_nan=False),
        phases=st.one_of(st.none(), st.integers(1, 3)),
        voltage_v=st.one_of(st.none(), st.floats(100, 260, allow_nan=False)),
    ),
)
demands_st = st.lists(
    st.builds(
        demand,
        st.integers(0, 0xFFFF),
        setpoints,
        min_amps=st.integers(5, 10),
        max_amps=st.integers(0, 80),
        voltage_v=st.floats(100, 260, allow_nan=False),
        phases=st.integers(1, 3),
        current_offer=st.integers(0, 80),
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda d: d.slave_id,
)
limits_st = st.builds(
    BusLimits,
    wiring_max_amps=st.integers(1, 80),
    bus_max_amps=st.integers(1, 120),
    min_amps=st.integers(5, 10),
    failsafe_amps=st.integers(0, 32),
)


@given(demands_st, limits_st)
def test_offers_never_break_a_limit(demands: list[SlaveDemand], limits: BusLimits) -> None:
    offers = plan_offers(demands, limits, NOW)
    assert sum(offers.values()) <= limits.bus_max_amps
    for d in demands:
        offer = offers[d.slave_id]
        assert offer == 0 or d.min_amps <= offer <= d.max_amps
        wanted = wanted_amps(d, NOW)
        if wanted is None:
            assert offer <= min(limits.failsafe_amps, limits.bus_max_amps // len(demands))
        else:
            assert offer <= wanted
            sp = d.setpoint
            if sp is not None and sp.power_w is not None:
                volts = sp.voltage_v or d.voltage_v
                assert offer <= watts_to_amps(sp.power_w, volts, sp.phases or d.phases)


@given(demands_st, limits_st)
def test_offers_are_not_cut_when_the_bus_has_room(demands: list[SlaveDemand], limits: BusLimits) -> None:
    wanted = {
        d.slave_id: amps if (amps := wanted_amps(d, NOW)) is not None else -1 for d in demands
    }  # -1 marks failsafe
    offers = plan_offers(demands, limits, NOW)
    requested = [amps for amps in wanted.values() if amps >= 0]
    if all(amps >= 0 for amps in wanted.values()) and sum(requested) <= limits.bus_max_amps:
        assert offers == wanted


@given(
    st.dictionaries(st.integers(0, 5), st.integers(0, 80), min_size=1, max_size=3),
    st.integers(5, 8),
    st.integers(0, 100),
)
def test_cut_keeps_every_offer_zero_or_at_least_its_minimum(wanted: dict[int, int], floor: int, bus: int) -> None:
    wanted = {k: (v if v >= floor else 0) for k, v in wanted.items()}
    offers = cut_to_bus(wanted, dict.fromkeys(wanted, floor), bus)
    assert sum(offers.values()) <= bus
    for slave_id, offer in offers.items():
        assert offer == 0 or floor <= offer <= wanted[slave_id]
    if sum(wanted.values()) > bus and any(offers.values()):
        assert bus - sum(offers.values()) < floor or sum(offers.values()) == bus
