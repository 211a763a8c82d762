"""A fixed tariff without any provider: one flat price, or a day and a night price switching at local times.

The switch times are wall-clock times in the configured zone, so across a DST change the night is an hour longer or
shorter, as the meter's own clock sees it. A switch time the change skips (02:30 on the spring-forward night) comes
one hour later, a repeated one (the autumn fall-back) is taken the first time.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from chargebus_forecast.slots import Piece


def _local(day: datetime, at: time, zone: ZoneInfo) -> datetime:
    naive = datetime.combine(day.date(), at)
    aware = naive.replace(tzinfo=zone, fold=0)
    # A time the clock skips does not survive the round trip through UTC: take the first real instant after it.
    if aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != naive:
        aware = (naive + timedelta(hours=1)).replace(tzinfo=zone)
    return aware.astimezone(UTC)


def _hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def fixed_pieces(
    now: datetime,
    zone: ZoneInfo,
    days: int,
    *,
    price: float | None = None,
    day_price: float | None = None,
    night_price: float | None = None,
    night_start: str = "22:00",
    night_end: str = "06:00",
) -> list[Piece]:
    """Prices from the start of the current local hour (flat) or the current rate period (day/night) to at least
    `days` days after `now`: contiguous, one piece per rate period."""
    if price is not None:
        start = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        return [Piece(start, start + timedelta(days=days), price)]
    if day_price is None or night_price is None:
        raise ValueError("a day/night tariff needs day_price and night_price")
    local_now = now.astimezone(zone)
    boundaries: dict[datetime, float] = {}
    for offset in range(-1, days + 2):
        day = local_now + timedelta(days=offset)
        boundaries[_local(day, _hhmm(night_start), zone)] = night_price
        boundaries[_local(day, _hhmm(night_end), zone)] = day_price
    times = sorted(boundaries)
    pieces = [Piece(a, b, boundaries[a]) for a, b in itertools.pairwise(times)]
    horizon = now + timedelta(days=days)
    return [piece for piece in pieces if piece.end > now and piece.start < horizon]
