"""When to call Tesla about one car, and which call: a pure decision from what is known and what was done.

The predecessor kept cars awake around the clock by calling `vehicle_data` every 5 minutes, and woke them every
30 minutes while it wanted to charge. The rules here, in order:

1. Fresh TeslaMate data → no data calls at all (TeslaMate already polls without keeping the car awake).
2. Asleep, offline or unknown → only `GET /vehicles/{vin}`, which never wakes the car nor resets its sleep
   timer, on a slow cadence that backs off while nothing changes (10 min, doubling up to 30 min; up to 60 min for
   a car known plugged in, which we wake ourselves when a setpoint wants it; 10 min while a setpoint wants it
   charging and no wake is allowed).
3. Online and charging → `vehicle_data?endpoints=charge_state`; often while we control its current, rarely
   when we only watch. Once the car's report confirms that it follows our commands (`CarView.follows_command`)
   the bridge trusts the current it commands and the cadence backs off (2 min, doubling up to 30 min), never past
   the car's own time to full; a report that contradicts the commanded current starts it at 2 min again.
4. Online and idle → one look after it comes online, then a quiet period with only state calls, so the car
   can fall asleep (it needs ~15 minutes without `vehicle_data`). Charging stopping starts a quiet period too.
5. Wake only when a setpoint asks to start charging a car known to be plugged in at home, at most
   `max_wakes_per_day` per UTC day and never twice within `WAKE_MIN_INTERVAL_S`.

No I/O and no clock: the caller passes `now` (epoch seconds), asks `next_call()`, performs the call when
`decision.due(now)`, and reports it with `record_*()`. Every decision names its `cause` (a `PollCause`, the key the
usage payload counts calls under: what the call bought). `next_call()` also notes transitions (came online,
charging stopped, TeslaMate went stale), so call it whenever the car's view changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Literal

OnlineState = Literal["online", "asleep", "offline", "unknown"]

#: State-only calls while the car is asleep, offline, or in a quiet period. Never wakes it, but Tesla may bill it
#: as a data call. The first gap after the car is seen asleep; TeslaMate (rule 1) makes even these unnecessary.
ASLEEP_STATE_POLL_S = 600.0
#: While the car stays asleep (offline, unknown) the gap grows with the time nothing changed, up to this: a car
#: that woke by itself (plugged in, driven) is noticed within 30 minutes; a wake we need (a setpoint asks to
#: charge) never waits for a poll.
ASLEEP_STATE_POLL_MAX_S = 1800.0
#: The cap for a sleeping car known to be plugged in: a plug-in cannot be missed, a wake we need is ours to make,
#: so only a car waking by itself (its own charge schedule, an unplug) can go unseen, for at most an hour.
ASLEEP_PLUGGED_POLL_MAX_S = 3600.0
#: While we control the current of a charging car: often enough that the allocator sees a decrease followed
#: within two minutes, rare enough to stay near 30 data calls an hour (a charging car is awake anyway).
CONTROLLED_CHARGING_DATA_S = 120.0
#: ... and at most this long once the car follows our commands and nothing changed: the commanded current is
#: trusted meanwhile, so only what the car does by itself (unplugged, stopped from the app, a limit of its own) can
#: go unseen, for at most this long.
CONTROLLED_CHARGING_MAX_S = 1800.0
#: A charging car we only watch (observe-only, or its current is set by a Wall Connector): SoC and energy only.
OBSERVED_CHARGING_DATA_S = 600.0
#: No `vehicle_data` for this long after charging stops or after an idle look: the car needs ~15 quiet minutes to
#: sleep; TeslaMate waits 21 minutes (`suspend_min`) for the same reason.
QUIET_S = 1260.0
#: A car seen online by surprise is looked at only if it stays online this long: cars wake for 2-3 minutes every
#: hour for self-checks, and a `vehicle_data` in that window would keep them awake for another 15 minutes.
ONLINE_SETTLE_S = 180.0
#: A state answer this recent confirms the car is online without another state call before `vehicle_data`.
STATE_CONFIRMS_FOR_S = 120.0
#: After `wake_up`, poll the state this often until online (cars take 10-30 s) ...
WAKE_CONFIRM_POLL_S = 10.0
#: ... for at most this long; a car still asleep then is left alone until the next allowed wake.
WAKE_CONFIRM_TIMEOUT_S = 90.0
#: Never two wakes of one car closer than this (a failed wake is not retried in a loop; wakes cost $0.02).
WAKE_MIN_INTERVAL_S = 1800.0
#: One `vehicle_data` this long after a start/stop command, to see that the car followed.
CONFIRM_AFTER_START_STOP_S = 30.0
#: One `vehicle_data` this long after a `set_charging_amps` the bridge does not trust yet (the car has not
#: confirmed since the last surprise that it follows commands).
CONFIRM_AFTER_COMMAND_S = 30.0
#: How often to re-evaluate while TeslaMate feeds us (no call is made; only staleness can change the answer).
TESLAMATE_RECHECK_S = 60.0
#: TeslaMate stays silent for its whole `suspend_min` (21 min) while `suspended`: never stale before this.
TESLAMATE_SUSPENDED_SILENCE_S = 1500.0

CHARGE_ENDPOINTS: tuple[str, ...] = ("charge_state",)
#: Position is only sent when `location_data` is asked for (firmware 2023.38+); a charging car does not move.
CHARGE_AND_LOCATION_ENDPOINTS: tuple[str, ...] = ("charge_state", "location_data")


class PollCause(StrEnum):
    """Why a call is made: the keys of `UsageCar.by_reason` (docs/contract.md §6.8)."""

    NONE = "none"
    FIRST_LOOK = "first_look"
    TESLAMATE_STALE = "teslamate_stale"
    ASLEEP_WATCH = "asleep_watch"
    WAKE = "wake"
    WAKE_CONFIRM = "wake_confirm"
    CAME_ONLINE = "came_online"
    IDLE_WATCH = "idle_watch"
    IDLE_LOOK = "idle_look"
    CHARGING_WATCH = "charging_watch"
    CONFIRM_START_STOP = "confirm_start_stop"
    CONFIRM_COMMAND = "confirm_command"
    REQUESTED = "requested"


class Action(StrEnum):
    NONE = "none"
    STATE = "vehicle_state"
    DATA = "vehicle_data"
    WAKE = "wake_up"


@dataclass(frozen=True)
class CarView:
    """What the bridge currently knows about the car, from TeslaMate or the API, and what the setpoint wants."""

    online_state: OnlineState = "unknown"
    charging: bool = False
    plugged_in: bool | None = None
    at_home: bool | None = None
    teslamate_fresh: bool = False
    #: a valid setpoint sets this car's current (power_w not null) — the car is charging under our control
    under_control: bool = False
    #: a valid setpoint says charge=true and the car is not charging (and it is controllable)
    wants_charge: bool = False
    #: `[[tesla.vehicles]] home` is configured, so position is worth asking for
    home_configured: bool = False
    rate_limited_until: float | None = None
    #: the car's newest report after our last `set_charging_amps` shows the current we commanded (or none was sent
    #: since it was last confirmed): the commanded current is trusted and the charging cadence may back off
    follows_command: bool = False
    #: the car's own estimate in its last report; the next look comes no later than that
    time_to_full_s: float | None = None


@dataclass(frozen=True)
class PollDecision:
    action: Action
    at: float
    reason: str
    endpoints: tuple[str, ...] = ()
    cause: PollCause = PollCause.NONE

    def due(self, now: float) -> bool:
        return self.action is not Action.NONE and self.at <= now


def teslamate_is_fresh(now: float, last_message_at: float | None, last_state: str | None, stale_s: float) -> bool:
    """TeslaMate counts as a live source: heard within `teslamate_stale_s`, longer while it is `suspended`."""
    if last_message_at is None:
        return False
    limit = max(stale_s, TESLAMATE_SUSPENDED_SILENCE_S) if last_state == "suspended" else stale_s
    return now - last_message_at <= limit


def utc_day_start(now: float) -> float:
    day = datetime.fromtimestamp(now, tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day.timestamp()


@dataclass
class _Memory:
    last_call_at: float | None = None
    last_state_at: float | None = None
    last_data_at: float | None = None
    online_at: float | None = None
    charging_stopped_at: float | None = None
    unverified_since: float | None = None
    data_requested_at: float | None = None
    data_requested_cause: PollCause = PollCause.REQUESTED
    #: since when the car is seen unreachable (asleep, offline, unknown) without change
    unreachable_since: float | None = None
    #: since when the car is charging under our control, following our commands, without a surprise
    steady_since: float | None = None
    #: the gap the schedule last promised between two answers (what `stale_after_s` allows for)
    gap_s: float = ASLEEP_STATE_POLL_S
    wakes: list[float] = field(default_factory=list)
    previous_online: OnlineState = "unknown"
    previous_charging: bool = False
    previous_teslamate_fresh: bool = False


class PollPolicy:
    """The call schedule of one car."""

    def __init__(self, max_wakes_per_day: int) -> None:
        self.max_wakes_per_day = max_wakes_per_day
        self._memory = _Memory()

    # -- decisions -----------------------------------------------------------------------------------------------

    def next_call(self, now: float, view: CarView) -> PollDecision:
        self._observe(now, view)
        if view.rate_limited_until is not None and view.rate_limited_until > now:
            return PollDecision(Action.NONE, view.rate_limited_until, "rate_limited")
        wake_at = self._wake_allowed_at(now, view)
        if wake_at is not None and wake_at <= now:
            return PollDecision(
                Action.WAKE, now, "setpoint wants to charge a sleeping car plugged in at home", cause=PollCause.WAKE
            )
        decision = self._poll(now, view)
        if wake_at is not None and wake_at < decision.at:
            return PollDecision(Action.WAKE, wake_at, "next allowed wake", cause=PollCause.WAKE)
        return decision

    def stale_after_s(self) -> float:
        """How long without an answer the car's data counts as stale: two missed polls of the current schedule."""
        return 2 * self._memory.gap_s + 60.0

    def wakes_today(self, now: float) -> int:
        day_start = utc_day_start(now)
        return sum(1 for at in self._memory.wakes if at >= day_start)

    # -- what happened -------------------------------------------------------------------------------------------

    def record_state_call(self, now: float) -> None:
        self._memory.last_call_at = self._memory.last_state_at = now

    def record_data_call(self, now: float) -> None:
        """A `vehicle_data` call was made (whatever its answer, a 408 included)."""
        memory = self._memory
        memory.last_call_at = memory.last_data_at = now
        memory.data_requested_at = None

    def record_wake(self, now: float) -> None:
        memory = self._memory
        memory.last_call_at = now
        memory.wakes = [at for at in memory.wakes if at >= now - 2 * 86_400] + [now]

    def record_start_stop(self, now: float) -> None:
        """A charge_start/charge_stop was sent: look once shortly after to see the car follow."""
        self.request_data(now + CONFIRM_AFTER_START_STOP_S, PollCause.CONFIRM_START_STOP)

    def record_untrusted_command(self, now: float) -> None:
        """A set_charging_amps the car has not yet shown it follows: look once shortly after."""
        self.request_data(now + CONFIRM_AFTER_COMMAND_S, PollCause.CONFIRM_COMMAND)

    def request_data(self, at: float, cause: PollCause = PollCause.REQUESTED) -> None:
        """One `vehicle_data` at `at` (a user's refresh, a command's confirmation), even in a quiet period."""
        memory = self._memory
        if memory.data_requested_at is None or at < memory.data_requested_at:
            memory.data_requested_at, memory.data_requested_cause = at, cause

    # -- internals -----------------------------------------------------------------------------------------------

    def _observe(self, now: float, view: CarView) -> None:
        memory = self._memory
        if view.online_state == "online" and memory.previous_online != "online":
            memory.online_at = now
        if memory.previous_charging and not view.charging:
            memory.charging_stopped_at = now
        if memory.previous_teslamate_fresh and not view.teslamate_fresh:
            # What TeslaMate last said may be old: confirm with the non-waking endpoint before anything else.
            memory.unverified_since = now
        if view.online_state == "online":
            memory.unreachable_since = None
        elif view.online_state != memory.previous_online or memory.unreachable_since is None:
            memory.unreachable_since = now
        steady = view.online_state == "online" and view.charging and view.under_control and view.follows_command
        if not steady:
            memory.steady_since = None
        elif memory.steady_since is None:
            memory.steady_since = now
        memory.previous_online = view.online_state
        memory.previous_charging = view.charging
        memory.previous_teslamate_fresh = view.teslamate_fresh

    def _poll(self, now: float, view: CarView) -> PollDecision:
        memory = self._memory
        memory.gap_s = ASLEEP_STATE_POLL_S
        if view.teslamate_fresh:
            return PollDecision(Action.NONE, now + TESLAMATE_RECHECK_S, "teslamate is fresh")
        if memory.unverified_since is not None and _before(memory.last_state_at, memory.unverified_since):
            return PollDecision(
                Action.STATE, now, "teslamate went stale: confirm the state", cause=PollCause.TESLAMATE_STALE
            )
        if view.online_state != "online":
            return self._while_unreachable(now, view)
        if view.charging:
            gap = self._charging_gap(view)
            memory.gap_s = max(gap, ASLEEP_STATE_POLL_S)
            at = now if memory.last_data_at is None else memory.last_data_at + gap
            return self._data(now, at, CHARGE_ENDPOINTS, "charging", PollCause.CHARGING_WATCH)
        endpoints = CHARGE_AND_LOCATION_ENDPOINTS if view.home_configured else CHARGE_ENDPOINTS
        if memory.online_at is not None and _before(memory.last_data_at, memory.online_at):
            settle = 0.0 if self._woke_it(memory.online_at) else ONLINE_SETTLE_S
            return self._look(now, memory.online_at + settle, endpoints, "came online", PollCause.CAME_ONLINE)
        quiet_since = [t for t in (memory.last_data_at, memory.charging_stopped_at) if t is not None]
        data_at = max(quiet_since) + QUIET_S if quiet_since else now
        return self._look(now, data_at, endpoints, "idle after the quiet period", PollCause.IDLE_LOOK)

    def _charging_gap(self, view: CarView) -> float:
        """The gap between two `vehicle_data` of a charging car: fixed, or backing off while it follows us."""
        memory = self._memory
        if not view.under_control:
            return OBSERVED_CHARGING_DATA_S
        if memory.steady_since is None or memory.last_data_at is None:
            return CONTROLLED_CHARGING_DATA_S
        steady_for = memory.last_data_at - memory.steady_since
        gap = backoff_gap(CONTROLLED_CHARGING_DATA_S, CONTROLLED_CHARGING_MAX_S, steady_for)
        if view.time_to_full_s is not None and view.time_to_full_s > 0:
            # The car stops by itself at its limit: look then, not up to a whole gap later.
            gap = min(gap, max(CONTROLLED_CHARGING_DATA_S, view.time_to_full_s))
        return gap

    def _while_unreachable(self, now: float, view: CarView) -> PollDecision:
        memory = self._memory
        if memory.last_call_at is None:
            return PollDecision(Action.STATE, now, "first look", cause=PollCause.FIRST_LOOK)
        if self._waking(now):
            return PollDecision(
                Action.STATE,
                max(now, memory.last_call_at + WAKE_CONFIRM_POLL_S),
                "waking",
                cause=PollCause.WAKE_CONFIRM,
            )
        since = memory.unreachable_since if memory.unreachable_since is not None else memory.last_call_at
        if view.wants_charge:
            cap = ASLEEP_STATE_POLL_S  # a setpoint wants it charging and no wake is allowed: watch for it waking
        elif view.plugged_in is True:
            cap = ASLEEP_PLUGGED_POLL_MAX_S
        else:
            cap = ASLEEP_STATE_POLL_MAX_S
        gap = backoff_gap(ASLEEP_STATE_POLL_S, cap, memory.last_call_at - since)
        memory.gap_s = gap
        return PollDecision(
            Action.STATE, max(now, memory.last_call_at + gap), view.online_state, cause=PollCause.ASLEEP_WATCH
        )

    def _look(
        self, now: float, data_at: float, endpoints: tuple[str, ...], reason: str, cause: PollCause
    ) -> PollDecision:
        """`vehicle_data` at `data_at`, after a state call shows the car still online; state calls until then."""
        memory = self._memory
        if memory.data_requested_at is not None and memory.data_requested_at < data_at:
            return self._data(now, memory.data_requested_at, endpoints, "requested", memory.data_requested_cause)
        next_state_at = (memory.last_call_at or now) + ASLEEP_STATE_POLL_S
        if next_state_at < data_at:
            return PollDecision(
                Action.STATE, max(now, next_state_at), f"{reason}: watching for sleep", cause=PollCause.IDLE_WATCH
            )
        if memory.last_state_at is None or memory.last_state_at < data_at - STATE_CONFIRMS_FOR_S:
            return PollDecision(Action.STATE, max(now, data_at), f"{reason}: still online?", cause=cause)
        return self._data(now, data_at, endpoints, reason, cause)

    def _data(self, now: float, at: float, endpoints: tuple[str, ...], reason: str, cause: PollCause) -> PollDecision:
        memory = self._memory
        requested = memory.data_requested_at
        if requested is not None and requested < at:
            at, reason, cause = requested, "requested", memory.data_requested_cause
        return PollDecision(Action.DATA, max(now, at), reason, endpoints, cause)

    def _wake_allowed_at(self, now: float, view: CarView) -> float | None:
        """When a wake may happen (the next UTC midnight once today's budget is spent), or None: no wake wanted."""
        if not view.wants_charge or view.online_state not in ("asleep", "offline") or self.max_wakes_per_day <= 0:
            return None
        if view.plugged_in is not True or view.at_home is not True or self._waking(now):
            return None
        if self.wakes_today(now) >= self.max_wakes_per_day:
            return next_utc_midnight(now)
        wakes = self._memory.wakes
        return now if not wakes else max(now, wakes[-1] + WAKE_MIN_INTERVAL_S)

    def _waking(self, now: float) -> bool:
        wakes = self._memory.wakes
        return bool(wakes) and now < wakes[-1] + WAKE_CONFIRM_TIMEOUT_S

    def _woke_it(self, online_at: float) -> bool:
        wakes = self._memory.wakes
        return bool(wakes) and wakes[-1] <= online_at <= wakes[-1] + WAKE_CONFIRM_TIMEOUT_S


def backoff_gap(base_s: float, cap_s: float, unchanged_for_s: float) -> float:
    """The gap to the next poll after `unchanged_for_s` seconds without change: `base_s` at first, then as long as
    nothing has changed so far (so the gaps double: base, base, 2 × base, 4 × base …), never above `cap_s`."""
    return min(cap_s, max(base_s, unchanged_for_s))


def _before(moment: float | None, reference: float) -> bool:
    """`moment` is unknown or earlier than `reference`."""
    return moment is None or moment < reference


def next_utc_midnight(now: float) -> float:
    return utc_day_start(now) + timedelta(days=1).total_seconds()
