"""Schedule windows: when they are active, across midnight and DST, their caps, their next edge, their parsing."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from chargebus.config import WEEKDAYS, ScheduleConfig
from chargebus.zones import resolve_timezone
from chargebus_allocator.schedules import (
    MAX_SCHEDULES,
    active_windows,
    local_to_epoch,
    next_change,
    parse_schedules,
    schedule_cap_w,
    with_schedule_caps,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from services.allocator.tests.alloc_builders import VIN_A, VIN_B, point

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def window(days: list[str], start: str, end: str, **fields: Any) -> ScheduleConfig:
    fields.setdefault("power_w", 7400)
    return ScheduleConfig.model_validate({"days": days, "start": start, "end": end, **fields})


def at(tz: ZoneInfo, text: str, fold: int = 0) -> float:
    """Epoch of a local wall time that exists, e.g. `at(BERLIN, "2025-06-06 23:00")`."""
    return datetime.fromisoformat(text).replace(tzinfo=tz, fold=fold).timestamp()


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def is_active(schedule: ScheduleConfig, tz: ZoneInfo, now: float) -> bool:
    return active_windows([schedule], tz, now) == (schedule,)


# --- entering, leaving, crossing midnight ---------------------------------------------------------------------------


def test_entering_and_leaving_a_window() -> None:
    weekday_mornings = window(["mon", "tue", "wed", "thu", "fri"], "08:00", "10:00")
    start = at(BERLIN, "2025-06-02 08:00")  # a Monday
    assert not is_active(weekday_mornings, BERLIN, start - 1)
    assert is_active(weekday_mornings, BERLIN, start)  # the start is included
    assert is_active(weekday_mornings, BERLIN, start + 2 * 3600 - 1)
    assert not is_active(weekday_mornings, BERLIN, start + 2 * 3600)  # the end is not
    assert not is_active(weekday_mornings, BERLIN, at(BERLIN, "2025-06-07 09:00"))  # Saturday


def test_a_window_across_midnight_belongs_to_its_start_day() -> None:
    friday_night = window(["fri"], "23:00", "06:00")
    assert is_active(friday_night, BERLIN, at(BERLIN, "2025-06-07 03:00"))  # Saturday 03:00
    assert not is_active(friday_night, BERLIN, at(BERLIN, "2025-06-06 03:00"))  # Friday 03:00: Thursday's night
    assert is_active(friday_night, BERLIN, at(BERLIN, "2025-06-06 23:00"))
    assert not is_active(friday_night, BERLIN, at(BERLIN, "2025-06-06 22:59"))
    assert not is_active(friday_night, BERLIN, at(BERLIN, "2025-06-07 06:00"))
    assert not is_active(friday_night, BERLIN, at(BERLIN, "2025-06-07 23:30"))  # Saturday night is not in days


def test_only_active_windows_are_returned_in_their_order() -> None:
    night, morning, weekend = (
        window(["mon"], "22:00", "02:00"),
        window(["tue"], "01:00", "03:00"),
        window(["sat", "sun"], "00:00", "23:59"),
    )
    assert active_windows([weekend, morning, night], BERLIN, at(BERLIN, "2025-06-03 01:30")) == (morning, night)
    assert active_windows([], BERLIN, at(BERLIN, "2025-06-03 01:30")) == ()


# --- daylight saving time -------------------------------------------------------------------------------------------


def test_berlin_spring_forward_starts_at_the_jump() -> None:
    # Sunday 2025-03-30: 02:00 CET becomes 03:00 CEST at 01:00 UTC; 02:00-02:59 local does not exist.
    in_gap = window(["sun"], "02:30", "05:00")
    assert not is_active(in_gap, BERLIN, utc("2025-03-30 00:59:59"))
    assert is_active(in_gap, BERLIN, utc("2025-03-30 01:00"))  # 03:00 CEST, the first valid instant
    assert is_active(in_gap, BERLIN, at(BERLIN, "2025-03-30 04:59"))
    assert not is_active(in_gap, BERLIN, at(BERLIN, "2025-03-30 05:00"))
    ending_in_gap = window(["sat"], "23:00", "02:30")
    assert is_active(ending_in_gap, BERLIN, utc("2025-03-30 00:59:59"))
    assert not is_active(ending_in_gap, BERLIN, utc("2025-03-30 01:00"))
    wholly_in_gap = window(["sun"], "02:10", "02:50")
    assert next_change([wholly_in_gap], BERLIN, at(BERLIN, "2025-03-29 12:00")) == at(BERLIN, "2025-04-06 02:10")


def test_berlin_fall_back_uses_the_first_occurrence() -> None:
    # Sunday 2025-10-26: 03:00 CEST becomes 02:00 CET at 01:00 UTC; 02:00-02:59 local happens twice.
    starts_ambiguous = window(["sun"], "02:30", "04:00")
    assert not is_active(starts_ambiguous, BERLIN, utc("2025-10-26 00:29:59"))
    assert is_active(starts_ambiguous, BERLIN, utc("2025-10-26 00:30"))  # 02:30 CEST, the first one
    assert is_active(starts_ambiguous, BERLIN, utc("2025-10-26 01:45"))  # 02:45 CET, the second pass
    assert is_active(starts_ambiguous, BERLIN, utc("2025-10-26 02:59:59"))
    assert not is_active(starts_ambiguous, BERLIN, utc("2025-10-26 03:00"))  # 04:00 CET
    ends_ambiguous = window(["sun"], "01:00", "02:30")
    assert is_active(ends_ambiguous, BERLIN, utc("2025-10-26 00:29:59"))
    assert not is_active(ends_ambiguous, BERLIN, utc("2025-10-26 00:30"))
    assert not is_active(ends_ambiguous, BERLIN, utc("2025-10-26 01:15"))  # 02:15 CET: the window is over


def test_new_york_spring_forward_and_fall_back() -> None:
    # 2025-03-09: 02:00 EST becomes 03:00 EDT at 07:00 UTC. 2025-11-02: 02:00 EDT becomes 01:00 EST at 06:00 UTC.
    spring = window(["sun"], "02:15", "04:00")
    assert not is_active(spring, NEW_YORK, utc("2025-03-09 06:59:59"))
    assert is_active(spring, NEW_YORK, utc("2025-03-09 07:00"))
    assert not is_active(spring, NEW_YORK, utc("2025-03-09 08:00"))  # 04:00 EDT
    fall = window(["sun"], "01:30", "03:00")
    assert not is_active(fall, NEW_YORK, utc("2025-11-02 05:29:59"))
    assert is_active(fall, NEW_YORK, utc("2025-11-02 05:30"))  # 01:30 EDT
    assert is_active(fall, NEW_YORK, utc("2025-11-02 06:45"))  # 01:45 EST, second pass
    assert not is_active(fall, NEW_YORK, utc("2025-11-02 08:00"))  # 03:00 EST
    overnight = window(["sat"], "22:00", "06:00")  # 9 hours long that night
    start = at(NEW_YORK, "2025-11-01 22:00")
    assert next_change([overnight], NEW_YORK, start) == start + 9 * 3600


@given(
    zone=st.sampled_from([BERLIN, NEW_YORK, ZoneInfo("Australia/Lord_Howe"), ZoneInfo("UTC")]),
    local=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31)),  # noqa: DTZ001
)
def test_local_to_epoch_keeps_existing_times_and_maps_gaps_to_the_jump(zone: ZoneInfo, local: datetime) -> None:
    local = local.replace(second=0, microsecond=0)
    epoch = local_to_epoch(local.date(), local.time(), zone)
    back = datetime.fromtimestamp(epoch, zone)
    if back.replace(tzinfo=None) == local:
        assert epoch == local.replace(tzinfo=zone, fold=0).timestamp()  # the first of two, when ambiguous
    else:  # a gap: the jump instant, just after the wall time
        assert back.replace(tzinfo=None) > local
        assert datetime.fromtimestamp(epoch - 1, zone).utcoffset() != back.utcoffset()
        assert datetime.fromtimestamp(epoch - 1, zone).replace(tzinfo=None) < local


# --- caps and scopes ------------------------------------------------------------------------------------------------


def test_scope_by_evse_id_and_by_vin() -> None:
    for_twc = window(["mon"], "01:00", "05:00", evse_id="twc-4a1b", power_w=3000)
    for_car = window(["mon"], "01:00", "05:00", vin=VIN_A, power_w=5000)
    active = [for_twc, for_car]
    assert schedule_cap_w(active, evse_ids=["twc-4a1b"], vin=None, voltage_v=230, phases=1) == 3000
    assert schedule_cap_w(active, evse_ids=["twc-0001"], vin=VIN_A, voltage_v=230, phases=1) == 5000
    assert schedule_cap_w(active, evse_ids=["twc-0001"], vin=VIN_B, voltage_v=230, phases=1) is None
    merged = ["twc-4a1b", f"car-{VIN_A}"]
    assert schedule_cap_w(active, evse_ids=merged, vin=VIN_A, voltage_v=230, phases=1) == 5000  # the largest wins
    by_car_evse = window(["mon"], "01:00", "05:00", evse_id=f"car-{VIN_A}", power_w=6000)
    assert schedule_cap_w([by_car_evse], evse_ids=merged, vin=VIN_A, voltage_v=230, phases=1) == 6000
    everyone = window(["mon"], "01:00", "05:00", power_w=1000)
    assert schedule_cap_w([everyone], evse_ids=["twc-0001"], vin=None, voltage_v=230, phases=1) == 1000


def test_current_a_is_converted_at_each_charge_points_basis() -> None:
    by_amps = [window(["mon"], "01:00", "05:00", power_w=None, current_a=32)]
    assert schedule_cap_w(by_amps, evse_ids=["twc-0001"], vin=None, voltage_v=230, phases=3) == 32 * 230 * 3
    assert schedule_cap_w(by_amps, evse_ids=["twc-0001"], vin=None, voltage_v=240, phases=1) == 32 * 240
    mixed = [*by_amps, window(["mon"], "01:00", "05:00", power_w=7400)]
    assert schedule_cap_w(mixed, evse_ids=["twc-0001"], vin=None, voltage_v=240, phases=1) == 7680
    assert schedule_cap_w(mixed, evse_ids=["twc-0001"], vin=None, voltage_v=230, phases=1) == 7400


def test_with_schedule_caps_sets_and_clears_the_cap() -> None:
    three_phase = point("twc-0001", volts=230, phases=3, schedule_cap_w=1.0)
    car = point("twc-0002", volts=240, evse_ids=("twc-0002", f"car-{VIN_A}"), vin=VIN_A)
    active = [window(["mon"], "01:00", "05:00", vin=VIN_A, power_w=None, current_a=16)]
    first, second = with_schedule_caps([three_phase, car], active)
    assert first.schedule_cap_w is None  # a stale cap from the last round goes away
    assert second.schedule_cap_w == 16 * 240
    assert second.vin == VIN_A


# --- next change ----------------------------------------------------------------------------------------------------


def test_next_change_walks_the_edges() -> None:
    schedules = [window(["fri"], "23:00", "06:00"), window(["sat"], "05:00", "07:00", vin=VIN_A)]
    now = at(BERLIN, "2025-06-06 12:00")  # Friday noon
    edges: list[float] = []
    while len(edges) < 5:
        edge = next_change(schedules, BERLIN, now)
        assert edge is not None
        edges.append(edge)
        now = edge
    assert edges == [
        at(BERLIN, "2025-06-06 23:00"),
        at(BERLIN, "2025-06-07 05:00"),
        at(BERLIN, "2025-06-07 06:00"),
        at(BERLIN, "2025-06-07 07:00"),
        at(BERLIN, "2025-06-13 23:00"),
    ]
    assert next_change([], BERLIN, now) is None


def test_next_change_inside_a_window_is_its_end() -> None:
    friday_night = window(["fri"], "23:00", "06:00")
    assert next_change([friday_night], BERLIN, at(BERLIN, "2025-06-07 03:00")) == at(BERLIN, "2025-06-07 06:00")
    assert next_change([friday_night], BERLIN, at(BERLIN, "2025-06-06 23:00")) == at(BERLIN, "2025-06-07 06:00")


_edges = st.tuples(
    st.sampled_from(["00:00", "01:30", "02:30", "06:00", "12:15", "23:00", "23:59"]),
    st.sampled_from(["00:30", "02:00", "02:45", "06:00", "07:00", "22:00"]),
).filter(lambda edges: edges[0] != edges[1])
_schedules = st.lists(
    st.builds(
        lambda days, edges: window(days, *edges),
        days=st.lists(st.sampled_from(WEEKDAYS), min_size=1, max_size=7, unique=True),
        edges=_edges,
    ),
    min_size=1,
    max_size=3,
)


@settings(max_examples=60, deadline=None)
@given(
    schedules=_schedules,
    zone=st.sampled_from([BERLIN, NEW_YORK]),
    now=st.floats(min_value=utc("2025-01-01"), max_value=utc("2027-01-01")),
    probe=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_nothing_changes_before_next_change(
    schedules: list[ScheduleConfig], zone: ZoneInfo, now: float, probe: float
) -> None:
    edge = next_change(schedules, zone, now)
    assert edge is not None
    assert now < edge <= now + 8 * 86400
    ids = [id(s) for s in active_windows(schedules, zone, now)]
    for later in (now + probe * (edge - 0.001 - now), edge - 0.001):
        if later >= now:
            assert [id(s) for s in active_windows(schedules, zone, later)] == ids


@given(
    start=st.times().map(lambda t: t.replace(second=0, microsecond=0)),
    length_min=st.integers(min_value=1, max_value=23 * 60),
    day=st.dates(min_value=date(2025, 1, 6), max_value=date(2025, 12, 28)),
)
def test_a_utc_window_is_active_exactly_on_its_span(start: time, length_min: int, day: date) -> None:
    zone = ZoneInfo("UTC")
    begin = datetime.combine(day, start, tzinfo=UTC)
    finish = begin + timedelta(minutes=length_min)
    daily = window(list(WEEKDAYS), start.strftime("%H:%M"), finish.strftime("%H:%M"))
    assert is_active(daily, zone, begin.timestamp())
    assert is_active(daily, zone, finish.timestamp() - 1)
    assert not is_active(daily, zone, finish.timestamp())
    assert next_change([daily], zone, begin.timestamp()) == finish.timestamp()


# --- time zone ------------------------------------------------------------------------------------------------------


def test_resolve_timezone(tmp_path: Path) -> None:
    assert resolve_timezone("Europe/Berlin") == BERLIN
    assert resolve_timezone("", environ={"TZ": "America/New_York"}) == NEW_YORK
    assert resolve_timezone("", environ={"TZ": ":Europe/Berlin"}) == BERLIN
    local = tmp_path / "localtime"
    shutil.copyfile("/usr/share/zoneinfo/America/New_York", local)
    from_file = resolve_timezone("", environ={"TZ": "CET-1CEST"}, localtime=local)  # a POSIX rule: the file
    assert from_file.utcoffset(datetime(2025, 7, 1)) == timedelta(hours=-4)  # noqa: DTZ001
    assert resolve_timezone("", environ={}, localtime=tmp_path / "missing") == ZoneInfo("UTC")


# --- parsing `<p>/allocator/schedules/set` --------------------------------------------------------------------------


def test_parse_a_valid_list() -> None:
    value = [
        {"days": ["mon", "tue"], "start": "23:00", "end": "06:00", "power_w": 7400},
        {"days": ["sat"], "start": "10:00", "end": "12:00", "current_a": 16, "vin": VIN_A},
    ]
    parsed = parse_schedules(value)
    assert parsed is not None
    assert [s.power_w for s in parsed] == [7400, None]
    assert parsed[1].current_a == 16
    assert parse_schedules([]) == ()  # no windows at all
    assert parse_schedules("default") is None  # back to the config's list


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (7400, 'expected a JSON list of schedules (or "default"), got a number'),
        ({"days": ["mon"]}, "got an object"),
        ("nightly", "got a string"),
        (None, "got null"),
        ([5], "schedules[0]: Input should be a valid dictionary"),
        ([{"days": ["mon"], "start": "24:00", "end": "06:00", "power_w": 1}], "schedules[0].start: must be local"),
        ([{"days": ["mon"], "start": "1:00", "end": "06:00", "power_w": 1}], "schedules[0].start: must be local"),
        ([{"days": ["mon"], "start": "01:00", "end": "06:00"}], "schedules[0]: give exactly one of power_w"),
        (
            [{"days": ["mon"], "start": "01:00", "end": "06:00", "power_w": 1, "current_a": 6}],
            "schedules[0]: give exactly one of power_w and current_a",
        ),
        ([{"days": ["mon"], "start": "01:00", "end": "01:00", "power_w": 1}], "empty window"),
        ([{"days": [], "start": "01:00", "end": "02:00", "power_w": 1}], "schedules[0].days: List should have"),
        ([{"days": ["monday"], "start": "01:00", "end": "02:00", "power_w": 1}], "schedules[0].days[0]: Input"),
        ([{"days": ["mon"], "start": "01:00", "end": "02:00", "power_w": -5}], "schedules[0].power_w: Input should"),
        ([{"days": ["mon"], "start": "01:00", "end": "02:00", "current_a": 99}], "schedules[0].current_a: Input"),
        ([{"days": ["mon"], "start": "01:00", "end": "02:00", "power_w": 1e400}], "must be a finite number"),
        (
            [{"days": ["mon"], "start": "01:00", "end": "02:00", "power_w": 1, "evse_id": "twc-XYZ"}],
            "schedules[0].evse_id: String should match",
        ),
        (
            [{"days": ["mon"], "start": "01:00", "end": "02:00", "power_w": 1, "evse_id": "twc-4a1b", "vin": VIN_A}],
            "scope is evse_id or vin, not both",
        ),
        ([{"days": ["mon"], "start": "01:00", "end": "02:00", "power": 1}], "schedules[0].power: unknown field"),
        ([{"days": ["mon"], "start": "01:00", "end": "02:00", "power_w": 1}] * (MAX_SCHEDULES + 1), "at most 100"),
    ],
)
def test_bad_lists_are_rejected_with_one_clear_line(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=r".") as caught:
        parse_schedules(value)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text


def test_every_problem_is_named_on_the_one_line() -> None:
    good = {"days": ["mon"], "start": "01:00", "end": "02:00", "power_w": 1}
    bad = [good, {**good, "start": "25:00"}, {**good, "vin": "nope"}]
    with pytest.raises(ValueError, match=r"schedules\[1\]\.start: .*; schedules\[2\]\.vin: "):
        parse_schedules(bad)
