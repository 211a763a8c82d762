"""The fixed tariff: flat, or day/night at local wall-clock times across DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from chargebus.schema import Tariff
from chargebus_forecast.fixed import fixed_pieces
from chargebus_forecast.slots import price_slots
from hypothesis import given
from hypothesis import strategies as st

BERLIN = ZoneInfo("Europe/Berlin")


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN)


def day_night(
    now: datetime, days: int = 2, night_start: str = "22:00", night_end: str = "06:00"
) -> list[tuple[datetime, datetime, float]]:
    pieces = fixed_pieces(
        now, BERLIN, days, day_price=0.30, night_price=0.20, night_start=night_start, night_end=night_end
    )
    return [(p.start.astimezone(BERLIN), p.end.astimezone(BERLIN), p.value) for p in pieces]


def test_flat_price_covers_the_days_from_this_hour() -> None:
    now = datetime(2026, 6, 15, 9, 41, tzinfo=UTC)
    (piece,) = fixed_pieces(now, BERLIN, 2, price=0.25)
    assert (piece.start, piece.end, piece.value) == (
        now.replace(minute=0),
        now.replace(minute=0) + timedelta(days=2),
        0.25,
    )


def test_day_and_night_switch_at_local_times() -> None:
    pieces = day_night(local("2026-06-15T12:00"), days=1)
    assert pieces[0] == (local("2026-06-15T06:00"), local("2026-06-15T22:00"), 0.30)
    assert pieces[1] == (local("2026-06-15T22:00"), local("2026-06-16T06:00"), 0.20)
    assert pieces[2] == (local("2026-06-16T06:00"), local("2026-06-16T22:00"), 0.30)
    assert pieces[-1][1] >= local("2026-06-16T12:00")


def test_the_spring_night_is_an_hour_shorter() -> None:
    pieces = day_night(local("2026-03-28T23:00"), days=1)
    night = next(p for p in pieces if p[0] <= local("2026-03-29T01:00") < p[1])
    assert night[2] == 0.20
    assert night[1].astimezone(UTC) - night[0].astimezone(UTC) == timedelta(hours=7)


def test_the_autumn_night_is_an_hour_longer() -> None:
    pieces = day_night(local("2026-10-24T23:00"), days=1)
    night = next(p for p in pieces if p[0] <= local("2026-10-25T01:00") < p[1])
    assert night[1].astimezone(UTC) - night[0].astimezone(UTC) == timedelta(hours=9)


def test_a_switch_time_the_clock_skips_comes_an_hour_later() -> None:
    pieces = day_night(local("2026-03-28T12:00"), days=1, night_start="02:30", night_end="05:00")
    starts = [start for start, _end, price in pieces if price == 0.20]
    assert local("2026-03-29T03:30") in starts


def test_a_day_night_tariff_needs_both_prices() -> None:
    with pytest.raises(ValueError, match="day_price and night_price"):
        fixed_pieces(datetime(2026, 6, 15, tzinfo=UTC), BERLIN, 1, day_price=0.3)


times = st.builds("{:02d}:{:02d}".format, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))
moments = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC))  # noqa: DTZ001
zones = st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Sydney", "UTC", "Asia/Kolkata"])


@given(moments, zones, times, times, st.integers(1, 7))
def test_day_night_is_always_a_valid_tariff_covering_now_and_the_days(
    now: datetime, zone_name: str, night_start: str, night_end: str, days: int
) -> None:
    if night_start == night_end:
        return
    zone = ZoneInfo(zone_name)
    pieces = fixed_pieces(now, zone, days, day_price=0.3, night_price=0.2, night_start=night_start, night_end=night_end)
    slots = price_slots(pieces, now)
    Tariff(currency="EUR", slots=slots)
    assert len(slots) == len(pieces)  # contiguous already
    assert slots[0].start <= now < slots[0].end
    assert slots[-1].end >= now + timedelta(days=days)
    for slot in slots:
        wall = slot.start.astimezone(zone).strftime("%H:%M")
        expected = night_start if slot.price == 0.2 else night_end
        # each period starts at its own switch time, unless the DST change skipped that time on that day
        assert wall == expected or slot is slots[0] or skipped(slot.start.astimezone(zone), expected, zone)


def skipped(moment: datetime, hhmm: str, zone: ZoneInfo) -> bool:
    hours, minutes = map(int, hhmm.split(":"))
    naive = moment.replace(tzinfo=None, hour=hours, minute=minutes)
    return naive.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None) != naive
