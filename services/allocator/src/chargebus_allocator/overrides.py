"""Runtime overrides set over MQTT (docs/contract.md §3, §5): they win over the config until cleared with `default`.

Each has a key, a value and the time it was set, exactly as `allocator/state` shows them and as the state file
keeps them across restarts:

| key | value |
|---|---|
| `mode` | global mode |
| `charge_now` | when the global charge-now timer ends (ISO 8601 UTC) |
| `evse/<evse_id>/mode` | that EVSE's mode |
| `evse/<evse_id>/priority` | that EVSE's priority |
| `evse/<evse_id>/charge_now` | when that EVSE's charge-now timer ends |
| `vehicle/<vin>/priority` | that car's priority |
| `vehicle/<vin>/plan`, `evse/<evse_id>/plan` | a departure plan: `{"request": PlanRequest, "deadline": ISO or null}` |
| `schedules` | the schedule windows in force instead of `[[allocator.schedules]]` (a list as in the config) |
| `schedules_enabled` | `false` switches every schedule window off (`true` = as without the override) |
| `vins` | `{"allow": [...], "deny": [...]}` instead of `allowed_vins` / `denied_vins` |
| `grid_limit` | a grid import cap in W (with `max_import_w` the lower binds) |

Pure: the file itself is read and written by `statefile`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chargebus.clock import iso_utc
from chargebus.config import ScheduleConfig
from chargebus.schema import Mode, Override, describe_validation_error
from pydantic import ValidationError

from chargebus_allocator import commands, schedules
from chargebus_allocator.commands import VinLists
from chargebus_allocator.plans import StoredPlan

MODE = "mode"
CHARGE_NOW = "charge_now"
SCHEDULES = "schedules"
SCHEDULES_ENABLED = "schedules_enabled"
VINS = "vins"
GRID_LIMIT = "grid_limit"
PLAN = "plan"
FILE_VERSION = 1

#: A mode, a priority, the epoch end of a charge-now timer, a switch, the schedule windows, the VIN lists or a plan.
Value = str | float | bool | tuple[ScheduleConfig, ...] | VinLists | StoredPlan


def evse_key(evse_id: str, setting: str) -> str:
    return f"{evse_key_prefix(evse_id)}{setting}"


def vehicle_key(vin: str, setting: str) -> str:
    return f"{vehicle_key_prefix(vin)}{setting}"


def evse_key_prefix(evse_id: str) -> str:
    return f"evse/{evse_id}/"


def vehicle_key_prefix(vin: str) -> str:
    return f"vehicle/{vin}/"


@dataclass(frozen=True, slots=True)
class Entry:
    value: Value
    since: float


@dataclass(slots=True)
class Overrides:
    entries: dict[str, Entry] = field(default_factory=dict)

    def names(self, prefix: str) -> bool:
        """Is any override's key under `prefix` (an EVSE's or a car's)?"""
        return any(key.startswith(prefix) for key in self.entries)

    def put(self, key: str, value: Value | None, now: float) -> bool:
        """Set (or with None clear) one override; True when something changed."""
        if value is None:
            return self.entries.pop(key, None) is not None
        current = self.entries.get(key)
        if current is not None and current.value == value:
            return False
        self.entries[key] = Entry(value, now)
        return True

    def expire(self, now: float) -> list[str]:
        """Drop charge-now timers that have ended; returns their keys."""
        ended = [key for key, entry in self.entries.items() if _is_timer(key) and _number(entry.value) <= now]
        for key in ended:
            del self.entries[key]
        return ended

    def timer_ends(self) -> list[float]:
        """When each charge-now timer ends (epoch seconds)."""
        return [_number(entry.value) for key, entry in self.entries.items() if _is_timer(key)]

    def _value(self, key: str) -> Value | None:
        entry = self.entries.get(key)
        return entry.value if entry is not None else None

    def _number(self, key: str) -> float | None:
        value = self._value(key)
        return _number(value) if value is not None else None

    def mode(self) -> Mode | None:
        return _as_mode(self._value(MODE))

    def charge_now_until(self) -> float | None:
        return self._number(CHARGE_NOW)

    def evse_mode(self, evse_id: str) -> Mode | None:
        return _as_mode(self._value(evse_key(evse_id, "mode")))

    def evse_priority(self, evse_id: str) -> int | None:
        value = self._number(evse_key(evse_id, "priority"))
        return int(value) if value is not None else None

    def evse_charge_now_until(self, evse_id: str) -> float | None:
        return self._number(evse_key(evse_id, "charge_now"))

    def vehicle_priority(self, vin: str) -> int | None:
        value = self._number(vehicle_key(vin, "priority"))
        return int(value) if value is not None else None

    def schedules(self) -> tuple[ScheduleConfig, ...] | None:
        """The windows set by `schedules/set`, or None for the config's."""
        value = self._value(SCHEDULES)
        return value if isinstance(value, tuple) else None

    def schedules_enabled(self) -> bool:
        return self._value(SCHEDULES_ENABLED) is not False

    def vins_lists(self) -> VinLists | None:
        """The lists set by `vins/set`, or None for the config's."""
        value = self._value(VINS)
        return value if isinstance(value, VinLists) else None

    def grid_limit_w(self) -> float | None:
        return self._number(GRID_LIMIT)

    def plans(self) -> dict[str, StoredPlan]:
        """Every departure plan, by the VIN or EVSE id it was set for."""
        found = {}
        for key, entry in self.entries.items():
            parts = key.split("/")
            if len(parts) == 3 and parts[2] == PLAN and isinstance(entry.value, StoredPlan):
                found[parts[1]] = entry.value
        return found

    def plans_entry(self, key: str) -> StoredPlan | None:
        value = self._value(key)
        return value if isinstance(value, StoredPlan) else None

    def evse_ids(self) -> set[str]:
        return {key.split("/")[1] for key in self.entries if key.startswith("evse/")}

    def vins(self) -> set[str]:
        return {key.split("/")[1] for key in self.entries if key.startswith("vehicle/")}

    def listing(self) -> list[Override]:
        """As `allocator/state` shows them, sorted by key; timers as their end time."""
        return [
            Override(key=key, value=_shown(key, entry.value), since=datetime.fromtimestamp(entry.since, tz=UTC))
            for key, entry in sorted(self.entries.items())
        ]

    def dump(self) -> dict[str, Any]:
        """The state file's content."""
        return {"v": FILE_VERSION, "overrides": [item.model_dump(mode="json") for item in self.listing()]}


def load(data: Any) -> tuple[Overrides, list[str]]:
    """Overrides from a state file's content, and one problem line per entry that was skipped."""
    overrides = Overrides()
    if not isinstance(data, dict) or data.get("v") != FILE_VERSION or not isinstance(data.get("overrides"), list):
        return overrides, [f"not an allocator state file (expected {{'v': {FILE_VERSION}, 'overrides': [...]}})"]
    problems = []
    for raw in data["overrides"]:
        try:
            item = Override.model_validate(raw)
            overrides.entries[item.key] = Entry(_checked(item.key, item.value), item.since.timestamp())
        except ValidationError as exc:
            problems.append(f"override {_key_of(raw)}: {describe_validation_error(exc)}")
        except ValueError as exc:
            problems.append(f"override {_key_of(raw)}: {exc}")
    return overrides, problems


def _checked(key: str, value: Any) -> Value:
    """The same rules as the commands that set them: a hand-edited file cannot smuggle in a bad value."""
    parts = key.split("/")
    setting = parts[-1]
    if len(parts) == 3 and parts[0] == "evse" and setting in (MODE, "priority", CHARGE_NOW, PLAN):
        commands.evse(parts[1])
    elif len(parts) == 3 and parts[0] == "vehicle" and setting in ("priority", PLAN):
        commands.vin(parts[1])
    elif len(parts) != 1 or setting not in (MODE, CHARGE_NOW, SCHEDULES, SCHEDULES_ENABLED, VINS, GRID_LIMIT):
        raise ValueError("unknown override key")
    checked = _CHECKS.get(setting, _timer_end)(value)
    if checked is None:
        raise ValueError("'default' is not a stored value")
    return checked


def _vin_lists(value: Any) -> VinLists | None:
    return commands.vin_lists(value)[0]  # check digits were warned about when it was set


#: How each stored setting's value is checked; anything else is a charge-now timer's end.
_CHECKS: dict[str, Callable[[Any], Value | None]] = {
    MODE: commands.mode,
    "priority": commands.priority,
    SCHEDULES: schedules.parse_schedules,
    SCHEDULES_ENABLED: commands.schedules_enabled,
    VINS: _vin_lists,
    GRID_LIMIT: commands.grid_limit,
    PLAN: commands.stored_plan,
}


def _timer_end(value: Any) -> float:
    return commands.stored_time(value, "a charge-now override's end time")


def _is_timer(key: str) -> bool:
    return key.endswith(CHARGE_NOW)


def _as_mode(value: Value | None) -> Mode | None:
    return commands.mode(value) if value is not None else None


def _number(value: Value) -> float:
    if isinstance(value, tuple | VinLists | str | StoredPlan):
        raise TypeError(f"not a number: {value!r}")  # a key holding another kind of value: a programming error
    return float(value)


def _shown(key: str, value: Value) -> Any:
    """An override's value as JSON, as `allocator/state` shows it and the state file keeps it."""
    if _is_timer(key):
        return iso_utc(_number(value))
    if isinstance(value, tuple):
        return [window.model_dump(mode="json") for window in value]
    if isinstance(value, VinLists):
        return value.as_json()
    if isinstance(value, StoredPlan):
        deadline = iso_utc(value.deadline) if value.deadline is not None else None
        return {"request": value.request.model_dump(mode="json", exclude={"v"}), "deadline": deadline}
    return value


def _key_of(raw: Any) -> str:
    return repr(raw.get("key")) if isinstance(raw, dict) else "(not an object)"
