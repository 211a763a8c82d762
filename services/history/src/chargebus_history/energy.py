"""Energy per local calendar day.

A day is [local midnight, next local midnight) in the configured IANA zone, so a spring-forward day lasts 23 h
and a fall-back day 25 h. Where midnight itself does not exist (zones that shift at 00:00) the day starts at the
first instant of that date, which is what zoneinfo gives for fold=0. Days at the edges of the asked window are
clipped to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from chargebus_history.reconstruct import Segment, SeriesIndex


@dataclass(frozen=True, slots=True)
class DayEnergy:
    day: date
    energy_wh: float | None  # None when nothing at all is known about that day
    unknown_s: float


@dataclass(frozen=True, slots=True)
class DailyEnergy:
    energy_wh: float | None
    unknown_s: float
    days: list[DayEnergy]


def local_midnight(day: date, zone: tzinfo) -> float:
    return datetime.combine(day, time.min, tzinfo=zone).timestamp()


def local_days(start: float, end: float, zone: tzinfo) -> list[tuple[date, float, float]]:
    """(date, from, to) for every local day that [start, end) touches, clipped to the window."""
    days: list[tuple[date, float, float]] = []
    day = datetime.fromtimestamp(start, tz=UTC).astimezone(zone).date()
    while True:
        day_start = max(start, local_midnight(day, zone))
        day_end = min(end, local_midnight(day + timedelta(days=1), zone))
        if day_start >= end:
            return days
        if day_end > day_start:
            days.append((day, day_start, day_end))
        day += timedelta(days=1)


def energy_by_local_day(segments: Sequence[Segment], start: float, end: float, zone: tzinfo) -> DailyEnergy:
    """Known energy per day (a lower bound where part of the day is unknown) and the unknown seconds."""
    index = SeriesIndex(segments)
    days: list[DayEnergy] = []
    for day, day_start, day_end in local_days(start, end, zone):
        part = index.integrate(day_start, day_end)
        days.append(DayEnergy(day, part.energy_wh if part.known_s > 0 else None, part.unknown_s))
    known = [d.energy_wh for d in days if d.energy_wh is not None]
    return DailyEnergy(sum(known) if known else None, sum(d.unknown_s for d in days), days)
