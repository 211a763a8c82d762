"""Users' command values and the refresh rate limit."""

from __future__ import annotations

from typing import Any

import pytest
from chargebus_tesla.user_commands import (
    REFRESH_MIN_INTERVAL_S,
    RefreshLimiter,
    charge_limit_percent,
    max_current_amps,
)

T0 = 1_800_000_000.0


@pytest.mark.parametrize("value", [50, 80, 100, 80.0])
def test_charge_limit_accepts_whole_percent_50_to_100(value: Any) -> None:
    assert charge_limit_percent(value) == int(value)


@pytest.mark.parametrize("value", [49, 101, 0, -5, 80.5, "80", True, None, [80], {"p": 80}])
def test_charge_limit_refuses_the_rest(value: Any) -> None:
    with pytest.raises(ValueError, match="charge limit"):
        charge_limit_percent(value)


def test_max_current_range_and_default_as_at_every_bridge() -> None:
    assert max_current_amps(16, 5, 48) == 16
    assert max_current_amps(16.0, 5, 48) == 16
    assert max_current_amps(0, 5, 48) == 0  # stops the car, as 0 stops a TWC or an OCPP charger
    assert max_current_amps("default", 5, 48) is None
    assert max_current_amps(" Default ", 5, 48) is None
    for bad in (4, 49, "16", 10.5, False, -1, float("inf")):
        with pytest.raises(ValueError, match="max_current"):
            max_current_amps(bad, 5, 48)


def test_refresh_is_allowed_once_a_minute_and_says_when_next() -> None:
    limiter = RefreshLimiter()
    limiter.take(T0)
    with pytest.raises(ValueError, match=r"next is allowed at .* \(in 30 s\)"):
        limiter.take(T0 + 30)
    limiter.take(T0 + REFRESH_MIN_INTERVAL_S)
