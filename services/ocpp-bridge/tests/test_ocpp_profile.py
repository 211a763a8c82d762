from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from chargebus.config import OcppChargePointConfig
from chargebus.schema import Setpoint
from chargebus_ocpp.profile import (
    Basis,
    IgnoredLimitWatch,
    RateUnits,
    allowed_units,
    charging_profile,
    limit_value,
    stack_level_for,
    target_for,
)
from hypothesis import given
from hypothesis import strategies as st

CP = OcppChargePointConfig(ocpp_id="WB-1", name="garage", max_current_a=16, min_current_a=6, phases=3)
EXPIRES = datetime(2030, 1, 1, tzinfo=UTC)


def setpoint(
    power_w: float | None, *, phases: int | None = 3, voltage_v: float | None = 230, **extra: object
) -> Setpoint:
    return Setpoint.model_validate(
        {
            "evse_id": "ocpp-garage",
            "power_w": power_w,
            "phases": phases,
            "voltage_v": voltage_v,
            "expires_at": EXPIRES,
            **extra,
        }
    )


@pytest.mark.parametrize(
    ("power_w", "amps"),
    [
        (4140, 6),  # 230 V × 3 × 6 A exactly
        (4139, 0),  # a watt short of 6 A: below the minimum
        (1000, 0),
        (0, 0),
        (11_040, 16),
        (100_000, 16),  # the installer's limit binds whatever the allocator says
        (7000, 10),  # floored, never rounded up
    ],
)
def test_watts_become_whole_amps_at_the_edge(power_w: float, amps: int) -> None:
    target = target_for(setpoint(power_w), CP, live=True)
    assert (target.amps, target.failsafe) == (amps, False)


def test_a_merged_one_phase_car_is_limited_at_its_own_phase_count() -> None:
    assert target_for(setpoint(4600, phases=1), CP, live=True).amps == 16  # 20 A wanted, capped at 16
    assert target_for(setpoint(2300, phases=1), CP, live=True).amps == 10


def test_the_charge_points_basis_is_used_when_the_setpoint_has_none() -> None:
    one_phase = CP.model_copy(update={"phases": 1, "voltage_v": 240})
    target = target_for(setpoint(2400, phases=None, voltage_v=None), one_phase, live=True)
    assert (target.amps, target.basis) == (10, Basis(1, 240))


def test_failsafe_before_the_first_setpoint_and_after_expiry() -> None:
    assert target_for(None, CP, live=False).amps == 6
    expired = target_for(setpoint(11_040), CP, live=False)
    assert (expired.amps, expired.failsafe) == (6, True)
    stop = CP.model_copy(update={"failsafe_current_a": 0})
    assert target_for(None, stop, live=False).amps == 0


def test_charge_false_is_zero_and_null_power_keeps_the_last_limit() -> None:
    assert target_for(setpoint(11_040, charge=False), CP, live=True).amps == 0
    previous = target_for(setpoint(9000), CP, live=True)
    assert target_for(setpoint(None), CP, live=True, previous=previous) == previous
    assert target_for(setpoint(None), CP, live=True).failsafe


def test_an_override_lowers_the_maximum_and_the_failsafe() -> None:
    assert target_for(setpoint(11_040), CP, live=True, override_a=10).amps == 10
    assert target_for(None, CP, live=False, override_a=0).amps == 0


def test_w_mode_sends_the_power_of_the_whole_amps() -> None:
    assert limit_value(6, "W", Basis(3, 230)) == 4140
    assert limit_value(6, "A", Basis(3, 230)) == 6
    profile = charging_profile(
        "1.6",
        purpose="TxDefaultProfile",
        connector_id=0,
        amps=7,
        unit="W",
        basis=Basis(1, 230),
        stack_level=3,
        start_schedule="2026-12-07T00:00:00.000Z",
    )
    schedule = profile["charging_schedule"]
    assert schedule["charging_rate_unit"] == "W"
    assert schedule["charging_schedule_period"] == [{"start_period": 0, "limit": 1610.0, "number_phases": 1}]
    assert profile["stack_level"] == 3
    assert "transaction_id" not in profile


def test_tx_profiles_name_their_transaction_in_each_version() -> None:
    common = {
        "purpose": "TxProfile",
        "connector_id": 1,
        "amps": 6,
        "unit": "A",
        "basis": Basis(3, 230),
        "stack_level": 1,
        "start_schedule": "2026-12-07T00:00:00.000Z",
    }
    v16 = charging_profile("1.6", transaction_id=42, **common)  # type: ignore[arg-type]
    v201 = charging_profile("2.0.1", transaction_id="tx-9", **common)  # type: ignore[arg-type]
    assert (v16["transaction_id"], v16["charging_profile_purpose"]) == (42, "TxProfile")
    assert (v201["transaction_id"], v201["charging_schedule"][0]["charging_rate_unit"]) == ("tx-9", "A")
    assert (
        v16["charging_profile_id"]
        != charging_profile("1.6", **{**common, "purpose": "TxDefaultProfile"})[  # type: ignore[arg-type]
            "charging_profile_id"
        ]
    )


def test_a_rejected_unit_is_retried_once_in_the_other() -> None:
    units = RateUnits("A")
    assert units.first() == "A"
    assert units.retry_after_rejection("A") == "W"
    units.accepted("W")
    assert units.first() == "W"  # what worked is used from now on
    only_current = RateUnits("W", allowed=("A",))
    assert only_current.first() == "A"  # the charger said it takes current only
    assert only_current.retry_after_rejection("A") is None


@pytest.mark.parametrize(
    ("value", "units"),
    [("Current", ("A",)), ("Power", ("W",)), ("Current,Power", ("A", "W")), ("W", ("W",)), (None, ("A", "W"))],
)
def test_allowed_rate_units_are_read_from_the_charger(value: str | None, units: tuple[str, ...]) -> None:
    assert allowed_units(value) == units


def test_stack_level_is_the_highest_allowed() -> None:
    assert (stack_level_for(None), stack_level_for(8), stack_level_for(0), stack_level_for(10_000)) == (1, 8, 0, 100)


def test_a_charger_ignoring_its_limit_is_reported_once_after_the_grace() -> None:
    watch = IgnoredLimitWatch(grace_s=30)
    assert not watch.observe(6, 16, 0.0)
    assert not watch.observe(6, 16, 30.0)
    assert watch.observe(6, 16, 30.5)
    assert not watch.observe(6, 16, 300.0)  # once
    assert not watch.observe(6, 6.5, 301.0)  # obeys: armed again
    assert not watch.observe(6, 16, 302.0)
    assert watch.observe(6, 16, 333.0)


def test_a_draw_that_follows_within_the_grace_is_not_reported() -> None:
    watch = IgnoredLimitWatch(grace_s=30)
    assert not any(watch.observe(6, 16 - t / 3, float(t)) for t in range(40))


# -- properties ---------------------------------------------------------------------------------------------------

points = st.builds(
    lambda lo, span, phases, volts, failsafe: OcppChargePointConfig(
        ocpp_id="WB-1",
        name="p",
        min_current_a=lo,
        max_current_a=lo + span,
        phases=phases,
        voltage_v=volts,
        failsafe_current_a=0 if failsafe == 0 else min(lo + span, max(lo, failsafe)),
    ),
    st.integers(6, 16),
    st.integers(0, 64),
    st.sampled_from([1, 3]),
    st.floats(90, 260),
    st.integers(0, 80),
)
setpoints = st.builds(
    lambda power, phases, volts, charge: Setpoint(
        evse_id="ocpp-p",
        power_w=power,
        phases=phases,
        voltage_v=volts,
        charge=charge,
        expires_at=EXPIRES + timedelta(seconds=1),
    ),
    st.one_of(st.none(), st.floats(0, 500_000, allow_nan=False)),
    st.one_of(st.none(), st.integers(1, 3)),
    st.one_of(st.none(), st.floats(90, 260)),
    st.one_of(st.none(), st.booleans()),
)


@given(points, st.one_of(st.none(), setpoints), st.booleans(), st.one_of(st.none(), st.integers(0, 80)))
def test_never_above_any_limit_and_never_in_the_forbidden_band(
    cp: OcppChargePointConfig, sp: Setpoint | None, live: bool, override: int | None
) -> None:
    target = target_for(sp, cp, live=live, override_a=override)
    cap = cp.max_current_a if override is None else min(cp.max_current_a, override)
    assert target.amps == 0 or cp.min_current_a <= target.amps <= cap
    assert isinstance(target.amps, int)
    if sp is not None and live and sp.power_w is not None and sp.charge is not False:
        basis = target.basis
        # whole amps that fit in the power: the power of the limit never exceeds the setpoint
        assert target.amps * basis.phases * basis.voltage_v <= sp.power_w + 1e-3
        wanted = math.floor(sp.power_w / (basis.phases * basis.voltage_v) + 1e-6)
        assert target.amps == (0 if wanted < cp.min_current_a or cap < cp.min_current_a else min(wanted, cap))
    if sp is None or not live:
        assert target.failsafe


@given(st.integers(0, 80), st.sampled_from(["A", "W"]), st.integers(1, 3), st.floats(90, 260))
def test_w_limits_are_whole_amps_at_the_basis(amps: int, unit: str, phases: int, volts: float) -> None:
    value = limit_value(amps, unit, Basis(phases, volts))  # type: ignore[arg-type]
    if unit == "A":
        assert value == amps
    else:
        assert amps * phases * volts - 0.1 <= value <= amps * phases * volts + 1e-6
        assert abs(value * 10 - round(value * 10)) < 1e-6
