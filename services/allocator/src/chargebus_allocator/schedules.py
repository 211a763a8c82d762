"""Schedule windows (`[[allocator.schedules]]`, `<p>/allocator/schedules/set`): which are active, and their caps.

Pure: time comes in as epoch seconds and the zone as a `ZoneInfo`; nothing here reads the clock.

- A window runs from `start` to `end` local time on each of its `days`; when `end` is earlier than `start` it
  crosses midnight and its START day decides (fri 23:00-06:00 covers Saturday 03:00, not Friday 03:00). The start
  is inclusive, the end exclusive, so at an edge the new state already holds.
- Daylight saving: a local time that does not exist (the spring-forward gap) means the first valid instant after
  it, i.e. the moment of the jump; an ambiguous one (fall back) means its first occurrence. Both edges follow these
  rules, so a window lying wholly inside a gap is empty that day, and 01:30-02:30 on a fall-back night ends at the
  first 02:30.
- Cap of a charge point: `power_w`, or `current_a` x its voltage_v x phases (the car's basis after a VIN merge).
  When several active windows cover the same charge point, the LARGEST cap wins: each window permits charging at
  up to its power, and permissions add up (a narrower scope does not restrict a wider one).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from chargebus.config import WEEKDAYS, ScheduleConfig
from pydantic import TypeAdapter, ValidationError

from chargebus_allocator.model import ChargePoint

#: At most this many windows in one `schedules/set` list.
MAX_SCHEDULES = 100

_LIST = TypeAdapter(list[ScheduleConfig])


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One concrete run of a schedule: `[start, end)` in epoch seconds."""

    schedule: ScheduleConfig
    start: float
    end: float


def local_to_epoch(day: date, at: time, tz: ZoneInfo) -> float:
    """The instant of a local wall time: the jump's instant inside a gap, the first occurrence when ambiguous."""
    naive = datetime.combine(day, at)
    first = naive.replace(tzinfo=tz, fold=0).timestamp()
    if datetime.fromtimestamp(first, tz).replace(tzinfo=None) == naive:
        return first  # exists; fold=0 is the earlier of two occurrences
    # In a gap: fold=0 maps with the offset before the jump (a later instant), fold=1 with the one after. The jump
    # lies between them; find the first whole second that already has the new offset.
    second = naive.replace(tzinfo=tz, fold=1).timestamp()
    low, high = math.floor(min(first, second)), math.ceil(max(first, second))
    before = _offset(low, tz)
    while high - low > 1:
        middle = (low + high) // 2
        if _offset(middle, tz) == before:
            low = middle
        else:
            high = middle
    return float(high)


def occurrences(schedules: Iterable[ScheduleConfig], tz: ZoneInfo, first: date, last: date) -> Iterator[Occurrence]:
    """Every non-empty run of `schedules` that starts on a local day from `first` to `last` (both included)."""
    for schedule in schedules:
        start_at, end_at = _hhmm(schedule.start), _hhmm(schedule.end)
        day = first
        while day <= last:
            if WEEKDAYS[day.weekday()] in schedule.days:
                end_day = day if end_at > start_at else day + timedelta(days=1)
                start, end = local_to_epoch(day, start_at, tz), local_to_epoch(end_day, end_at, tz)
                if end > start:
                    yield Occurrence(schedule, start, end)
            day += timedelta(days=1)


def active_windows(schedules: Sequence[ScheduleConfig], tz: ZoneInfo, now: float) -> tuple[ScheduleConfig, ...]:
    """The schedules with a run covering `now`, in their given order."""
    today = _local_day(now, tz)
    running = {
        id(run.schedule)
        for run in occurrences(schedules, tz, today - timedelta(days=2), today)
        if run.start <= now < run.end
    }
    return tuple(schedule for schedule in schedules if id(schedule) in running)


def next_change(schedules: Sequence[ScheduleConfig], tz: ZoneInfo, now: float) -> float | None:
    """The next window edge strictly after `now` (epoch seconds), or None without schedules."""
    today = _local_day(now, tz)
    edges = [
        edge
        for run in occurrences(schedules, tz, today - timedelta(days=2), today + timedelta(days=8))
        for edge in (run.start, run.end)
        if edge > now
    ]
    return min(edges, default=None)


def covers(schedule: ScheduleConfig, evse_ids: Iterable[str], vin: str | None) -> bool:
    """Whether a window's scope includes a charge point: no scope means every charge point."""
    if schedule.evse_id is not None:
        return schedule.evse_id in evse_ids
    if schedule.vin is not None:
        return schedule.vin == vin
    return True


def cap_w(schedule: ScheduleConfig, voltage_v: float, phases: int) -> float:
    """A window's power for one charge point: `power_w`, or `current_a` x voltage x phases."""
    if schedule.power_w is not None:
        return schedule.power_w
    assert schedule.current_a is not None  # the model demands exactly one of the two
    return schedule.current_a * voltage_v * phases


def schedule_cap_w(
    active: Iterable[ScheduleConfig],
    *,
    evse_ids: Iterable[str],
    vin: str | None,
    voltage_v: float,
    phases: int,
) -> float | None:
    """The largest cap among the active windows covering this charge point, or None when none does."""
    ids = tuple(evse_ids)
    caps = [cap_w(window, voltage_v, phases) for window in active if covers(window, ids, vin)]
    return max(caps, default=None)


def with_schedule_caps(points: Iterable[ChargePoint], active: Sequence[ScheduleConfig]) -> tuple[ChargePoint, ...]:
    """Charge points (after the VIN merge) with `schedule_cap_w` set from the active windows, None elsewhere."""
    return tuple(
        replace(
            point,
            schedule_cap_w=schedule_cap_w(
                active, evse_ids=point.members, vin=point.vin, voltage_v=point.voltage_v, phases=point.phases
            ),
        )
        for point in points
    )


def parse_schedules(value: Any) -> tuple[ScheduleConfig, ...] | None:
    """The value of a `schedules/set` command: a list of windows as in the config, or "default" (→ None).

    Raises ValueError with one readable line naming every problem, e.g.
    `schedules[1].start: must be local time "HH:MM" (00:00-23:59)`.
    """
    if value == "default":
        return None
    if not isinstance(value, list):
        # ValueError, not TypeError: the command handler turns it into one ErrorEvent.
        raise ValueError(f'expected a JSON list of schedules (or "default"), got {_kind(value)}')  # noqa: TRY004
    if len(value) > MAX_SCHEDULES:
        raise ValueError(f"at most {MAX_SCHEDULES} schedules, got {len(value)}")
    try:
        schedules = _LIST.validate_python(value, strict=True)  # strict: `true` is not 1 W
    except ValidationError as exc:
        raise ValueError(_describe(exc)) from None
    for index, schedule in enumerate(schedules):
        if schedule.power_w is not None and not math.isfinite(schedule.power_w):
            raise ValueError(f"schedules[{index}].power_w: must be a finite number of watts")
    return tuple(schedules)


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors(include_url=False):
        index, *fields = item["loc"]
        where = f"schedules[{index}]" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in fields)
        why = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            why = "unknown field (misspelt?)"
        problems.append(f"{where}: {why}")
    return "; ".join(problems)


def _kind(value: Any) -> str:
    kinds = {bool: "a boolean", int: "a number", float: "a number", str: "a string", dict: "an object"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def _hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def _local_day(now: float, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(now, tz).date()


def _offset(epoch: int, tz: ZoneInfo) -> timedelta | None:
    return datetime.fromtimestamp(epoch, tz).utcoffset()
