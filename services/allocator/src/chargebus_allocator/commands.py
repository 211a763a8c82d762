"""Command values (docs/contract.md §3, §5): what each `/set` topic of the allocator accepts, checked before anything
changes.

Every function takes the command's value (the plain payload or the JSON envelope's `value`) and returns the new
setting, `None` for `default` (clear the override), or raises ValueError with a sentence for the ErrorEvent.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from chargebus.schema import (
    CLOCK_TIME_PATTERN,
    EVSE_ID_PATTERN,
    MODES,
    VIN_PATTERN,
    Mode,
    PlanRequest,
    describe_validation_error,
    vin_check_digit_ok,
)
from pydantic import ValidationError

from chargebus_allocator.plans import StoredPlan

DEFAULT = "default"
PRIORITY_MIN, PRIORITY_MAX = -1000, 1000
#: A charge-now timer longer than a week is a typo, not a plan.
CHARGE_NOW_MAX_S = 7 * 24 * 3600
#: Commands are a word or a small object; anything this large is rejected unread.
MAX_COMMAND_BYTES = 64 * 1024
#: At most this many VINs in each list of a `vins/set` command.
MAX_VINS = 1000
#: The largest grid limit accepted: 1 MW, far beyond any home connection.
GRID_LIMIT_MAX_W = 1_000_000.0

_EVSE_ID = re.compile(EVSE_ID_PATTERN)
_VIN = re.compile(VIN_PATTERN)
_CLOCK_TIME = re.compile(CLOCK_TIME_PATTERN)


def mode(value: Any) -> Mode | None:
    """`off|now|solar|minsolar`, or `default` (None)."""
    if value == DEFAULT:
        return None
    for known in MODES:
        if value == known:
            return known
    raise ValueError(f"unknown mode {_show(value)}: use one of {', '.join(MODES)} or {DEFAULT}")


def priority(value: Any) -> int | None:
    """An integer −1000…1000, or `default` (None)."""
    if value == DEFAULT:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(  # noqa: TRY004 - an input error: the runtime turns ValueError into an ErrorEvent
            f"priority must be an integer {PRIORITY_MIN}…{PRIORITY_MAX} or {DEFAULT}, got {_show(value)}"
        )
    if not PRIORITY_MIN <= value <= PRIORITY_MAX:
        raise ValueError(f"priority {value} is out of range {PRIORITY_MIN}…{PRIORITY_MAX}")
    return value


def charge_now(value: Any) -> tuple[float, str | None]:
    """(seconds, evse_id or None for every charge point); 0 seconds (or `default`) cancels."""
    evse_id: str | None = None
    seconds: Any = value
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"seconds", "evse_id"})
        if unknown:
            raise ValueError(f"charge_now object: unknown key {', '.join(unknown)} (use seconds and evse_id)")
        if "seconds" not in value:
            raise ValueError("charge_now object needs 'seconds'")
        seconds = value["seconds"]
        raw_id = value.get("evse_id")
        if raw_id is not None:
            evse_id = evse(raw_id)
    if seconds == DEFAULT:
        return 0.0, evse_id
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds):
        raise ValueError(f"charge_now takes seconds (0 cancels), got {_show(seconds)}")
    if not 0 <= seconds <= CHARGE_NOW_MAX_S:
        raise ValueError(f"charge_now {seconds:g} s is out of range 0…{CHARGE_NOW_MAX_S} (a week)")
    return float(seconds), evse_id


def grid_limit(value: Any) -> float | None:
    """A grid import cap in W, above 0 and at most `GRID_LIMIT_MAX_W`, or `default` (None: no runtime cap)."""
    if value == DEFAULT:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"grid_limit takes watts (a number) or {DEFAULT}, got {_show(value)}")
    if not 0 < value <= GRID_LIMIT_MAX_W:
        raise ValueError(
            f"grid_limit {value:g} W is out of range: above 0 and at most {GRID_LIMIT_MAX_W:g} W "
            f"({DEFAULT} clears it; to stop charging use mode off)"
        )
    return float(value)


def evse(evse_id: Any) -> str:
    """An id of the contract's patterns (docs/contract.md §4). It need not be known yet: an EVSE may appear later."""
    if not isinstance(evse_id, str) or not _EVSE_ID.fullmatch(evse_id):
        raise ValueError(f"unknown evse id {_show(evse_id)}: ids are twc-<4 hex>, car-<VIN> or twc3-<name>")
    return evse_id


def vin(value: Any) -> tuple[str, str | None]:
    """A VIN (17 of [A-HJ-NPR-Z0-9], upper case) and a warning when its ISO 3779 check digit is wrong."""
    if not isinstance(value, str) or not _VIN.fullmatch(value):
        raise ValueError(f"invalid VIN {_show(value)}: 17 characters of A-H, J-N, P, R-Z and 0-9, upper case")
    warning = None if vin_check_digit_ok(value) else f"VIN {value}: check digit does not match (accepted)"
    return value, warning


def schedules_enabled(value: Any) -> bool | None:
    """`true|false`, or `default` (None: schedules are enabled)."""
    if value == DEFAULT:
        return None
    if not isinstance(value, bool):
        raise ValueError(f"schedules_enabled takes true, false or {DEFAULT}, got {_show(value)}")  # noqa: TRY004
    return value


@dataclass(frozen=True, slots=True)
class VinLists:
    """The allow and deny lists of `vins/set`, replacing `allowed_vins` and `denied_vins` of the config."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()

    def as_json(self) -> dict[str, list[str]]:
        return {"allow": list(self.allow), "deny": list(self.deny)}


def vin_lists(value: Any) -> tuple[VinLists | None, list[str]]:
    """`{"allow": [...], "deny": [...]}` (a missing list is empty), or `default` (None), and check-digit warnings.

    Every VIN must have the contract's form (upper case); one in both lists is a contradiction and rejected.
    """
    if value == DEFAULT:
        return None, []
    if not isinstance(value, dict):
        raise ValueError(  # noqa: TRY004 - an input error: the runtime turns ValueError into an ErrorEvent
            f'vins takes {{"allow": [VIN, ...], "deny": [VIN, ...]}} or {DEFAULT}, got {_show(value)}'
        )
    unknown = sorted(set(value) - {"allow", "deny"})
    if unknown:
        raise ValueError(f"vins object: unknown key {', '.join(map(repr, unknown))} (use allow and deny)")
    warnings: list[str] = []
    lists = {name: _vin_list(name, value.get(name, []), warnings) for name in ("allow", "deny")}
    both = sorted(set(lists["allow"]) & set(lists["deny"]))
    if both:
        raise ValueError(f"VIN {', '.join(both)} is in both allow and deny")
    return VinLists(lists["allow"], lists["deny"]), list(dict.fromkeys(warnings))


def _vin_list(name: str, raw: Any, warnings: list[str]) -> tuple[str, ...]:
    if not isinstance(raw, list):
        raise ValueError(f"vins.{name} must be a list of VINs, got {_show(raw)}")  # noqa: TRY004
    if len(raw) > MAX_VINS:
        raise ValueError(f"vins.{name}: at most {MAX_VINS} VINs, got {len(raw)}")
    checked = []
    for index, item in enumerate(raw):
        try:
            one, warning = vin(item)
        except ValueError as exc:
            raise ValueError(f"vins.{name}[{index}]: {exc}") from None
        checked.append(one)
        if warning is not None:
            warnings.append(warning)
    return tuple(dict.fromkeys(checked))


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


#: A new plan set in parts (say from Home Assistant's target-SoC number alone) departs at this local time.
DEFAULT_DEPARTURE = "07:00"


def plan_request(
    value: Any, existing: PlanRequest | None, target: Literal["soc_pct", "energy_wh"]
) -> PlanRequest | None:
    """`plan/set`: a plan, or `default` (None: clear it). Fields left out keep the plan's current ones, so one
    setting can change at a time; a new plan needs its target (`soc_pct` for a car, `energy_wh` for an EVSE) and
    departs at `DEFAULT_DEPARTURE` unless `by` says otherwise."""
    if value == DEFAULT:
        return None
    if not isinstance(value, dict):
        raise ValueError(  # noqa: TRY004 - an input error, reported as such
            f'plan takes an object like {{"{target}": …, "by": "07:00"}} or {DEFAULT}, got {_show(value)}'
        )
    other = "energy_wh" if target == "soc_pct" else "soc_pct"
    if other in value:
        where = (
            "a car's plan (vehicle/<vin>/plan/set)" if target == "soc_pct" else "an EVSE's plan (evse/<id>/plan/set)"
        )
        raise ValueError(f"{where} takes {target}, not {other}")
    base: dict[str, Any] = {"by": DEFAULT_DEPARTURE}
    if existing is not None:
        base = existing.model_dump(mode="json", exclude={"v"}, exclude_none=True)
        by = value.get("by")
        if isinstance(by, str) and "repeat" not in value and _CLOCK_TIME.fullmatch(by) is None:
            base.pop("repeat", None)  # a fixed departure (not HH:MM) replaces a repeating one
    merged = {**base, **value}
    if target not in merged:
        raise ValueError(f"no plan yet: give {target} (and by) to start one")
    try:
        return PlanRequest.model_validate(merged)
    except ValidationError as exc:
        raise ValueError(describe_validation_error(exc)) from None


def stored_plan(value: Any) -> StoredPlan:
    """A plan as the state file keeps it: `{"request": {...}, "deadline": ISO or null}`."""
    if not isinstance(value, dict) or set(value) != {"request", "deadline"}:
        raise ValueError('a plan override is {"request": {...}, "deadline": ...}')
    try:
        request = PlanRequest.model_validate(value["request"])
    except ValidationError as exc:
        raise ValueError(describe_validation_error(exc)) from None
    deadline = value["deadline"]
    if deadline is None:
        if request.repeat is None:
            raise ValueError("a plan that does not repeat needs its deadline")
        return StoredPlan(request, None)
    return StoredPlan(request, stored_time(deadline, "a plan's deadline"))


def stored_time(value: Any, what: str) -> float:
    """An ISO 8601 time with its offset, as the state file keeps end times and deadlines, in epoch seconds."""
    if not isinstance(value, str):
        raise ValueError(f"{what} is an ISO 8601 time, got {_show(value)}")  # noqa: TRY004 - an input error
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{what}: invalid time {value!r}") from None
    if moment.tzinfo is None:
        raise ValueError(f"{what}: time {value!r} has no time zone")
    return moment.timestamp()
