"""Set a meter reading against the chargers' draw *at that reading's time* (docs/closed-loop-control.md §1).

The solar surplus is `−grid + Σ controllable draw − reserve`. The grid meter already contains every car's draw, so
the draw to add back is the one the cars had when the meter measured, not the one they report later: a car ramping
up after an increase would otherwise add its own ramp to the surplus, the next reading would take it back, and the
offers would ring. Each EVSE's measured draw is kept as a short step function (a report holds until the next one),
stamped with the EvseState's `updated_at` when that is plausible and with its arrival otherwise.

EVSE reports lag the meter (a bridge reports what a heartbeat told it, a car's API later still), so right after a
setpoint change the reported draw at the reading's time may not be the real one. A charge point in transit — its
commanded power changed, its reported draw has not followed and its kind's follow time has not passed — is therefore
known only to draw somewhere between what it reported and what it was commanded. The surplus keeps its previous
value while that is consistent with the reading for some draw in that range, and otherwise moves only as far as the
reading proves: change on evidence, not on a car's own ramp.

A reading's own time is not exact either: a plain number carries none (its arrival stands in), and a meter may
average or forward late. A charge point whose draw changed within `READING_LATENCY_S` before the reading may have
been seen at its old draw, so that reading is no evidence for offering it more (`settling`): the allocator does not
raise its offer on it (a fall, which cannot overload anything, still goes through).

Pure: no I/O; times are epoch seconds.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

#: Draw samples older than this are dropped (the oldest one kept, as the draw before the window).
HISTORY_S = 120.0
#: At most this many samples per EVSE, whatever the report rate: no input grows the state without bound.
MAX_SAMPLES = 256
#: An EvseState's `updated_at` is used as its measurement time when it is at most this far before its arrival...
PLAUSIBLE_PAST_S = 30.0
#: ...and at most this far after it (clocks of the bridges and the allocator may differ a little).
PLAUSIBLE_FUTURE_S = 2.0
#: How long a charge point may take to follow a new setpoint, by how its current is set.
FOLLOW_S_DIRECT = 5.0  # a wall connector on the wire (Gen2 TWC): the car ramps in about 2 s
FOLLOW_S_SLOW = 30.0  # a car through its API: the command, the car and the next poll
#: How far before its (stated or arrival) time a reading may really have been measured.
READING_LATENCY_S = 2.0


def measurement_time(reported_at: float | None, arrived_at: float) -> float:
    """The reported time when plausible (not long before nor after its arrival), else the arrival."""
    if reported_at is None:
        return arrived_at
    if arrived_at - PLAUSIBLE_PAST_S <= reported_at <= arrived_at + PLAUSIBLE_FUTURE_S:
        return min(reported_at, arrived_at)
    return arrived_at


@dataclass(slots=True)
class DrawHistory:
    """One EVSE's measured draw over the last `HISTORY_S`, in time order."""

    times: list[float] = field(default_factory=list)
    watts: list[float] = field(default_factory=list)

    def record(self, at: float, power_w: float) -> None:
        """A report measured at `at`. One that arrives out of order is put in its place; the same time replaces."""
        index = bisect.bisect_right(self.times, at)
        if index == len(self.times) and index > 0 and self.watts[-1] == power_w:
            return  # the same draw again: the step function does not change
        if index > 0 and self.times[index - 1] == at:
            self.watts[index - 1] = power_w
        else:
            self.times.insert(index, at)
            self.watts.insert(index, power_w)
        self._trim(self.times[-1])

    def _trim(self, newest: float) -> None:
        # Keep the last sample before the window: it is the draw at the window's start.
        cut = bisect.bisect_left(self.times, newest - HISTORY_S) - 1
        cut = max(cut, len(self.times) - MAX_SAMPLES)
        if cut > 0:
            del self.times[:cut]
            del self.watts[:cut]

    def changed_within(self, start: float, end: float) -> bool:
        """Whether the draw took more than one value at some moment from `start` to `end`."""
        first = max(0, bisect.bisect_right(self.times, start) - 1)
        last = bisect.bisect_right(self.times, end)
        return len(set(self.watts[first:last])) > 1

    def at(self, when: float) -> float | None:
        """The draw at `when`: the last report measured at or before it, else the earliest one known."""
        if not self.times:
            return None
        index = bisect.bisect_right(self.times, when)
        return self.watts[max(0, index - 1)]


@dataclass(frozen=True, slots=True)
class Command:
    """The power last commanded to a charge point's current-controlling EVSE, and since when."""

    power_w: float
    since: float


@dataclass(frozen=True, slots=True)
class PointDraw:
    """What the pairing needs of one controllable, online charge point."""

    key: str
    draw_w: float  # its reported draw at the reading's time
    step_w: float
    follow_s: float
    command: Command | None = None


@dataclass(frozen=True, slots=True)
class Pairing:
    chargers_w: float  # the controllable draw to add back to the reading
    surplus_w: float  # −grid + chargers − reserve
    in_transit: tuple[str, ...]  # keys of the charge points counted as anything between report and command


def in_transit(point: PointDraw, reading_at: float) -> bool:
    """Commanded before the reading, not followed in its report, and still within its follow time."""
    command = point.command
    if command is None or reading_at < command.since or reading_at >= command.since + point.follow_s:
        return False
    return abs(point.draw_w - command.power_w) > point.step_w


def pair(
    grid_w: float,
    reading_at: float,
    points: Iterable[PointDraw],
    reserve_w: float,
    previous_surplus_w: float | None,
) -> Pairing:
    """The surplus of one reading: exact where every draw is known, held within the evidence where one is not."""
    reported_w = low_w = high_w = 0.0
    moving: list[str] = []
    for point in points:
        reported_w += point.draw_w
        if in_transit(point, reading_at):
            assert point.command is not None
            low_w += min(point.draw_w, point.command.power_w)
            high_w += max(point.draw_w, point.command.power_w)
            moving.append(point.key)
        else:
            low_w += point.draw_w
            high_w += point.draw_w
    chargers_w = reported_w
    if moving and previous_surplus_w is not None:
        # The chargers' draw that would make the previous surplus true, as far as the reading allows it.
        chargers_w = min(high_w, max(low_w, previous_surplus_w + grid_w + reserve_w))
    return Pairing(chargers_w, -grid_w + chargers_w - reserve_w, tuple(moving))


def draw_at(histories: Mapping[str, DrawHistory], evse_id: str | None, when: float, fallback_w: float) -> float:
    """An EVSE's draw at `when` from its history, or `fallback_w` (its latest report) when it has none."""
    history = histories.get(evse_id) if evse_id is not None else None
    value = history.at(when) if history is not None else None
    return fallback_w if value is None else value
