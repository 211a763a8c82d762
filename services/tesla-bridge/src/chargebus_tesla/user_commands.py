"""Validation of the users' command values and the refresh rate limit, pure.

`<p>/vehicle/<vin>/charge_limit/set` takes a whole percent 50–100 (Tesla's own bounds); the value is billed, so a
wrong one is refused here without a call. `<p>/vehicle/<vin>/refresh/set` takes any payload and costs one data
call, so it is allowed once per `REFRESH_MIN_INTERVAL_S` per car; `<p>/evse/car-<VIN>/max_current/set` takes whole
amps — 0 (the car stops), or `[tesla] min_amps` up to the largest current a Tesla requests — or `default`.
"""

from __future__ import annotations

from typing import Any

from chargebus.clock import iso_utc
from chargebus.max_current import parse_max_current

CHARGE_LIMIT_MIN_PCT = 50
CHARGE_LIMIT_MAX_PCT = 100
#: One billed refresh per car per minute: enough for a user pressing a button, useless for a polling script.
REFRESH_MIN_INTERVAL_S = 60.0
DEFAULT = "default"


def _whole_number(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a whole number, got {type(value).__name__} {value!r}")  # noqa: TRY004
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{what} must be a whole number, got {value!r}")
    return int(value)


def charge_limit_percent(value: Any) -> int:
    """The percent of a charge_limit command; ValueError says why it is refused."""
    percent = _whole_number(value, "charge limit")
    if not CHARGE_LIMIT_MIN_PCT <= percent <= CHARGE_LIMIT_MAX_PCT:
        raise ValueError(f"charge limit {percent} % is out of range {CHARGE_LIMIT_MIN_PCT}..{CHARGE_LIMIT_MAX_PCT} %")
    return percent


def max_current_amps(value: Any, min_amps: int, max_amps: int) -> int | None:
    """The amps of a car's max_current command, or None for `default` (the override is cleared): the same rule as
    every bridge's (`chargebus.max_current`), 0 stopping the car."""
    return parse_max_current(
        value, max_amps=max_amps, min_amps=min_amps, limit_name="the largest current a Tesla requests"
    )


class RefreshLimiter:
    """At most one refresh per `interval_s`; a refused one learns when the next is allowed."""

    def __init__(self, interval_s: float = REFRESH_MIN_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._last: float | None = None

    def take(self, now: float) -> None:
        """Use the allowance now, or raise ValueError naming when the next refresh is allowed."""
        if self._last is not None and now < self._last + self.interval_s:
            next_at = self._last + self.interval_s
            raise ValueError(
                f"refresh refused: one refresh per {self.interval_s:g} s per car; the next is allowed at "
                f"{iso_utc(next_at)} (in {next_at - now:.0f} s)"
            )
        self._last = now
