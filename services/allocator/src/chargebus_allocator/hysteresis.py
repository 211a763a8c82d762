"""Start and stop slowly in solar modes (docs/allocation.md §6), so passing clouds do not cycle a car.

idle → starting when admitted; starting → charging once admitted for `enable_delay_s` (the minimum is reserved all
along but the setpoint stays 0); charging → stopping when no longer admitted, holding the minimum; stopping →
idle after `disable_delay_s` and not before `min_on_s` of charging; then `min_off_s` before it may start again.
Outside solar and minsolar everything acts at once. The state is the allocator's own, seeded from the EVSE's
`charging` report after a restart so that a restart never stops a charging car.
"""

from __future__ import annotations

from typing import Literal

from chargebus_allocator.model import Delays, Timer

Outcome = Literal["admitted", "held", "dropped"]


def seed(charging: bool, now: float) -> Timer:
    if charging:
        return Timer("charging", since=now, charged_since=now)
    return Timer("idle", since=now)


def counts_as_charging(timer: Timer) -> bool:
    return timer.phase in ("charging", "stopping")


def min_off_left_s(timer: Timer, delays: Delays, now: float) -> float:
    """Seconds until a stopped charge point may start again (0 when it may)."""
    if timer.phase != "idle" or timer.stopped_at is None:
        return 0.0
    return max(0.0, timer.stopped_at + delays.min_off_s - now)


def stop_left_s(timer: Timer, delays: Delays, now: float) -> float:
    """Seconds until a charge point that is (or would now become) stopping may stop."""
    delay_from = timer.since if timer.phase == "stopping" else now
    charged_since = timer.charged_since if timer.charged_since is not None else now
    return max(0.0, delay_from + delays.disable_delay_s - now, charged_since + delays.min_on_s - now)


def start_left_s(timer: Timer, delays: Delays, now: float) -> float:
    delay_from = timer.since if timer.phase == "starting" else now
    return max(0.0, delay_from + delays.enable_delay_s - now)


def may_hold(timer: Timer, delays: Delays, now: float) -> bool:
    """Charging, and a stop would not be due yet: it may keep its minimum while the budget is short."""
    return counts_as_charging(timer) and stop_left_s(timer, delays, now) > 0


def advance(timer: Timer, outcome: Outcome, delays: Delays, now: float, *, delayed: bool) -> Timer:
    """The state after this round. `delayed` is False in the modes that act at once."""
    if outcome == "admitted":
        return _admitted(timer, delays, now, delayed=delayed)
    if outcome == "held":
        since = timer.since if timer.phase == "stopping" else now
        return Timer("stopping", since=since, charged_since=timer.charged_since, stopped_at=timer.stopped_at)
    if counts_as_charging(timer):
        return Timer("idle", since=now, stopped_at=now)
    if timer.phase == "starting":
        return Timer("idle", since=now, stopped_at=timer.stopped_at)
    return timer


def _admitted(timer: Timer, delays: Delays, now: float, *, delayed: bool) -> Timer:
    if timer.phase == "charging":
        return timer
    if timer.phase == "stopping":
        started = timer.charged_since if timer.charged_since is not None else now
        return Timer("charging", since=started, charged_since=started, stopped_at=timer.stopped_at)
    if not delayed or start_left_s(timer, delays, now) <= 0:
        return Timer("charging", since=now, charged_since=now, stopped_at=timer.stopped_at)
    since = timer.since if timer.phase == "starting" else now
    return Timer("starting", since=since, stopped_at=timer.stopped_at)


def unplugged(timer: Timer, now: float) -> Timer:
    """A new session starts fresh: a re-plug is a person's decision, not a cloud, so min_off_s does not apply."""
    if timer.phase == "idle" and timer.stopped_at is None:
        return timer
    return Timer("idle", since=now)
