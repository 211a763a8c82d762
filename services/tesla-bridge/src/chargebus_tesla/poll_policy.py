"""When to call Tesla about one car, and which call: a pure decision from what is known and what was done.

The predecessor kept cars awake around the clock by calling `vehicle_data` every 5 minutes, and woke them every
30 minutes while it wanted to charge. The rules here, in order:

1. Fresh TeslaMate data → no data calls at all (TeslaMate already polls without keeping the car awake).
2. Asleep, offline or unknown → only `GET /vehicles/{vin}`, which never wakes the car nor resets its sleep
   timer, on a slow cadence.
3. Online and charging → `vehicle_data?endpoints=charge_state`; often while we control its current, rarely
   when we only watch.
4. Online and idle → one look after it comes online, then a quiet period with only state calls, so the car
   can fall asleep (it needs ~15 minutes without `vehicle_data`). Charging stopping starts a quiet period too.
5. Wake only when a setpoint asks to start charging a car known to be plugged in at home, at most
   `max_wakes_per_day` per UTC day and never twice within `WAKE_MIN_INTERVAL_S`.

No I/O and no clock: the caller passes `now` (epoch seconds), asks `next_call()`, performs the call when
`decision.due(now)`, and reports it with `record_*()`. `next_call()` also notes transitions (came online,
charging stopped, TeslaMate went stale), so call it whenever the car's view changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Literal

OnlineState = Literal["online", "asleep", "offline", "unknown"]

#: State-only calls while the car is asleep, offline, or in a quiet period. Never wakes it, but Tesla may bill it
#: as a data call: 10 minutes bounds that to 144 calls a day and still notices within 10 minutes a car that woke
#: by itself (plugged in, driven). TeslaMate (rule 1) makes even these unnecessary.
ASLEEP_STATE_POLL_S = 600.0
#: While we control the current of a charging car: often enough that the allocator sees a decrease followed
#: within two minutes, rare enough to stay near 30 data calls an hour (a charging car is awake anyway).
CONTROLLED_CHARGING_DATA_S = 120.0
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
#: How often to re-evaluate while TeslaMate feeds us (no call is made; only staleness can change the answer).
TESLAMATE_RECHECK_S = 60.0
#: TeslaMate stays silent for its whole `suspend_min` (21 min) while `suspended`: never stale before this.
TESLAMATE_SUSPENDED_SILENCE_S = 1500.0

CHARGE_ENDPOINTS: tuple[str, ...] = ("charge_state",)
#: Position is only sent when `location_data` is asked for (firmware 2023.38+); a charging car does not move.
CHARGE_AND_LOCATION_ENDPOINTS: tuple[str, ...] = ("charge_state", "location_data")


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


@dataclass(frozen=True)
class PollDecision:
    action: Action
    at: float
    reason: str
    endpoints: tuple[str, ...] = ()

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
            return PollDecision(Action.WAKE, now, "setpoint wants to charge a sleeping car plugged in at home")
        decision = self._poll(now, view)
        if wake_at is not None and wake_at < decision.at:
            return PollDecision(Action.WAKE, wake_at, "next allowed wake")
        return decision

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
        self.request_data(now + CONFIRM_AFTER_START_STOP_S)

    def request_data(self, at: float) -> None:
        """One `vehicle_data` at `at` (a user's refresh, a command's confirmation), even in a quiet period."""
        requested = self._memory.data_requested_at
        self._memory.data_requested_at = at if requested is None else min(requested, at)

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
        memory.previous_online = view.online_state
        memory.previous_charging = view.charging
        memory.previous_teslamate_fresh = view.teslamate_fresh

    def _poll(self, now: float, view: CarView) -> PollDecision:
        memory = self._memory
        if view.teslamate_fresh:
            return PollDecision(Action.NONE, now + TESLAMATE_RECHECK_S, "teslamate is fresh")
        if memory.unverified_since is not None and _before(memory.last_state_at, memory.unverified_since):
            return PollDecision(Action.STATE, now, "teslamate went stale: confirm the state")
        if view.online_state != "online":
            return self._while_unreachable(now, view)
        if view.charging:
            cadence = CONTROLLED_CHARGING_DATA_S if view.under_control else OBSERVED_CHARGING_DATA_S
            at = now if memory.last_data_at is None else memory.last_data_at + cadence
            return self._data(now, at, CHARGE_ENDPOINTS, "charging")
        endpoints = CHARGE_AND_LOCATION_ENDPOINTS if view.home_configured else CHARGE_ENDPOINTS
        if memory.online_at is not None and _before(memory.last_data_at, memory.online_at):
            settle = 0.0 if self._woke_it(memory.online_at) else ONLINE_SETTLE_S
            return self._look(now, memory.online_at + settle, endpoints, "came online")
        quiet_since = [t for t in (memory.last_data_at, memory.charging_stopped_at) if t is not None]
        data_at = max(quiet_since) + QUIET_S if quiet_since else now
        return self._look(now, data_at, endpoints, "idle after the quiet period")

    def _while_unreachable(self, now: float, view: CarView) -> PollDecision:
        memory = self._memory
        if memory.last_call_at is None:
            return PollDecision(Action.STATE, now, "first look")
        if self._waking(now):
            return PollDecision(Action.STATE, max(now, memory.last_call_at + WAKE_CONFIRM_POLL_S), "waking")
        cadence_at = memory.last_call_at + ASLEEP_STATE_POLL_S
        return PollDecision(Action.STATE, max(now, cadence_at), view.online_state)

    def _look(self, now: float, data_at: float, endpoints: tuple[str, ...], reason: str) -> PollDecision:
        """`vehicle_data` at `data_at`, after a state call shows the car still online; state calls until then."""
        memory = self._memory
        if memory.data_requested_at is not None and memory.data_requested_at < data_at:
            return self._data(now, memory.data_requested_at, endpoints, "requested")
        next_state_at = (memory.last_call_at or now) + ASLEEP_STATE_POLL_S
        if next_state_at < data_at:
            return PollDecision(Action.STATE, max(now, next_state_at), f"{reason}: watching for sleep")
        if memory.last_state_at is None or memory.last_state_at < data_at - STATE_CONFIRMS_FOR_S:
            return PollDecision(Action.STATE, max(now, data_at), f"{reason}: still online?")
        return self._data(now, data_at, endpoints, reason)

    def _data(self, now: float, at: float, endpoints: tuple[str, ...], reason: str) -> PollDecision:
        requested = self._memory.data_requested_at
        if requested is not None and requested < at:
            at, reason = requested, "requested"
        return PollDecision(Action.DATA, max(now, at), reason, endpoints)

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


def _before(moment: float | None, reference: float) -> bool:
    """`moment` is unknown or earlier than `reference`."""
    return moment is None or moment < reference


def next_utc_midnight(now: float) -> float:
    return utc_day_start(now) + timedelta(days=1).total_seconds()
