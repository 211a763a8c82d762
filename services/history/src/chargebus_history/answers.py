"""The `data` of a HistoryRequest answer (docs/contract.md §6), from a reconstructed series. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import tzinfo
from typing import Any

from chargebus.clock import iso_utc

from chargebus_history.energy import energy_by_local_day
from chargebus_history.reconstruct import Segment, resample
from chargebus_history.sessions import Session

# A request may not make us build an unbounded list: a year at one minute is 525 600 points.
MAX_POWER_POINTS = 20_000


def _rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def power_data(
    segments: Sequence[Segment], start: float, end: float, step_s: float, max_points: int = MAX_POWER_POINTS
) -> list[dict[str, Any]]:
    """`[{ts, power_w}]`: the mean power of each step starting at `ts`, null where any part is unknown."""
    if step_s <= 0:
        raise ValueError(f"step_s must be positive, got {step_s}")
    if (end - start) / step_s > max_points:
        raise ValueError(f"more than {max_points} points: use a larger step_s or a shorter range")
    return [{"ts": iso_utc(ts), "power_w": _rounded(p)} for ts, p in resample(segments, start, end, step_s)]


def energy_data(segments: Sequence[Segment], start: float, end: float, zone: tzinfo) -> dict[str, Any]:
    """`{energy_wh, days: [{date, energy_wh}]}`: known energy, null for a day (or range) with nothing known."""
    daily = energy_by_local_day(segments, start, end, zone)
    return {
        "energy_wh": _rounded(daily.energy_wh),
        "days": [{"date": day.day.isoformat(), "energy_wh": _rounded(day.energy_wh)} for day in daily.days],
    }


def sessions_data(sessions: Iterable[Session]) -> list[dict[str, Any]]:
    """`[{start, end, energy_wh, vin, evse_ids, peak_power_w}]`; `end` null while a session goes on."""
    return [
        {
            "start": iso_utc(session.start),
            "end": None if session.end is None else iso_utc(session.end),
            "energy_wh": _rounded(session.energy_wh),
            "vin": session.vin,
            "evse_ids": list(session.evse_ids),
            "peak_power_w": _rounded(session.peak_power_w),
        }
        for session in sessions
    ]
