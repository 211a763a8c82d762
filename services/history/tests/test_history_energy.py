"""Energy per local day: DST days last 23 and 25 hours; the system zone is found by its IANA name."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import TZPATH, ZoneInfo

import pytest
from chargebus.zones import resolve_timezone
from chargebus_history.energy import energy_by_local_day, local_days, local_midnight
from chargebus_history.reconstruct import Segment

BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str, zone: ZoneInfo = BERLIN) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()


@pytest.mark.parametrize(
    ("day", "hours"),
    [(date(2026, 3, 29), 23), (date(2026, 10, 25), 25), (date(2026, 6, 1), 24)],
    ids=["spring-forward", "fall-back", "summer"],
)
def test_a_constant_kilowatt_over_a_dst_day_gives_its_true_length(day: date, hours: int) -> None:
    start, end = local_midnight(day, BERLIN), local_midnight(date.fromordinal(day.toordinal() + 1), BERLIN)
    result = energy_by_local_day([Segment(start - 3600, end + 3600, 1000.0)], start, end, BERLIN)
    (only,) = result.days
    assert only.day == day
    assert only.energy_wh == pytest.approx(hours * 1000)
    assert result.energy_wh == pytest.approx(hours * 1000)
    assert result.unknown_s == 0


def test_energy_splits_at_local_midnight_not_utc_midnight() -> None:
    # 23:00 to 01:00 Berlin summer time at 2 kW: 2 kWh on each side of local midnight (UTC midnight is 02:00).
    start, end = at("2026-07-01T23:00"), at("2026-07-02T01:00")
    result = energy_by_local_day([Segment(start, end, 2000.0)], start - 3600, end + 3600, BERLIN)
    assert [d.day.isoformat() for d in result.days] == ["2026-07-01", "2026-07-02"]
    assert [d.energy_wh for d in result.days] == pytest.approx([2000, 2000])


def test_unknown_parts_are_reported_and_an_unknown_day_has_no_figure() -> None:
    start = at("2026-07-01T00:00")
    segments = [Segment(start, start + 3600, 1000.0), Segment(start + 3600, start + 7200, None)]
    result = energy_by_local_day(segments, start, at("2026-07-03T00:00"), BERLIN)
    first, second = result.days
    assert first.energy_wh == pytest.approx(1000)
    assert first.unknown_s == pytest.approx(86400 - 3600)
    assert second.energy_wh is None
    assert result.energy_wh == pytest.approx(1000)
    assert energy_by_local_day([], start, start + 60, BERLIN).energy_wh is None


def test_local_days_clip_to_the_window() -> None:
    days = local_days(at("2026-03-28T12:00"), at("2026-03-30T06:00"), BERLIN)
    assert [(d.isoformat(), round((b - a) / 3600, 3)) for d, a, b in days] == [
        ("2026-03-28", 12),
        ("2026-03-29", 23),
        ("2026-03-30", 6),
    ]
    assert local_days(10.0, 10.0, BERLIN) == []


def test_a_zone_whose_midnight_does_not_exist_starts_the_day_at_the_shift() -> None:
    santiago = ZoneInfo("America/Santiago")  # clocks jump from 00:00 to 01:00 on 2026-09-06
    start = local_midnight(date(2026, 9, 6), santiago)
    assert datetime.fromtimestamp(start, santiago).isoformat() == "2026-09-06T01:00:00-03:00"
    days = local_days(start - 3600, start + 3600, santiago)
    assert [(d.isoformat(), (b - a) / 3600) for d, a, b in days] == [("2026-09-05", 1), ("2026-09-06", 1)]


def test_resolve_timezone_by_name_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert resolve_timezone("Europe/Berlin") == BERLIN
    with pytest.raises(ValueError, match="Mars/Olympus"):
        resolve_timezone("Mars/Olympus")
    assert resolve_timezone("", environ={"TZ": ":America/New_York"}) == ZoneInfo("America/New_York")
    assert resolve_timezone("", environ={}, localtime=tmp_path / "missing") == ZoneInfo("UTC")


def test_the_system_zone_is_found_by_its_iana_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    system_file = next(
        (Path(d) / "Europe" / "Berlin" for d in TZPATH if (Path(d) / "Europe" / "Berlin").is_file()), None
    )
    if system_file is None:
        pytest.skip("no system time zone database (TZPATH) to copy a zone file from")
    zone_dir = tmp_path / "usr" / "share" / "zoneinfo" / "Europe"
    zone_dir.mkdir(parents=True)
    (zone_dir / "Berlin").write_bytes(system_file.read_bytes())
    link = tmp_path / "localtime"
    link.symlink_to(zone_dir / "Berlin")
    assert (
        resolve_timezone("", environ={"TZ": "CET-1CEST"}, localtime=link) == BERLIN
    )  # a POSIX TZ string is no IANA key
    copy = tmp_path / "copied-localtime"  # some systems copy the file instead of linking it
    copy.write_bytes(system_file.read_bytes())
    copied = resolve_timezone("", environ={}, localtime=copy)
    assert datetime(2026, 7, 1, tzinfo=copied).utcoffset() == datetime(2026, 7, 1, tzinfo=BERLIN).utcoffset()
