"""The `max_current` override of each OCPP connector: the command's value (pure) and the file that keeps it.

`<p>/evse/ocpp-<name>[-<n>]/max_current/set` is owned by this bridge. A value is whole amps from 0 to the charge
point's `max_current_a` — 0 stops charging, 1 to `min_current_a − 1` is refused (it would be 0 anyway) — or
`default`, which removes the override. Overrides survive restarts in `<state_dir>/ocpp-bridge.json`, written
atomically.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from chargebus.statefile import write_json

STATE_FILE_NAME = "ocpp-bridge.json"
DEFAULT_WORD = "default"
_EVSE_ID = re.compile(r"^ocpp-[a-z0-9-]{1,32}$")
_MAX_STORED_AMPS = 80


def parse_max_current(value: Any, *, max_current_a: int, min_current_a: int) -> int | None:
    """Whole amps of a max_current command, or None for `default`; ValueError says what is wrong."""
    if isinstance(value, str):
        if value.strip().lower() == DEFAULT_WORD:
            return None
        raise ValueError(f"max_current must be a number of amps or 'default', got the text {value[:40]!r}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(  # noqa: TRY004 - an input error, reported as such
            f"max_current must be a number of amps or 'default', got {type(value).__name__}"
        )
    if not math.isfinite(value) or value < 0 or value != math.floor(value):
        raise ValueError(f"max_current {value!r} is not whole non-negative amps")
    amps = int(value)
    if amps > max_current_a:
        raise ValueError(f"max_current {amps} A is above the charge point's max_current_a ({max_current_a} A)")
    if 0 < amps < min_current_a:
        raise ValueError(f"max_current {amps} A is below the minimum of {min_current_a} A (0 stops charging)")
    return amps


class OverrideStore:
    """`{"v": 1, "max_current_a": {"ocpp-garage": 10}}` in the state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / STATE_FILE_NAME

    def load(self) -> tuple[dict[str, int], str | None]:
        """The stored overrides, and a problem description when the file could not be used (then: none)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}, None
        except (OSError, ValueError) as exc:
            return {}, f"cannot use {self.path} ({exc}); starting without max_current overrides"
        stored = data.get("max_current_a") if isinstance(data, dict) else None
        if not isinstance(stored, dict):
            return {}, f"{self.path} has no 'max_current_a' object; starting without max_current overrides"
        found = {
            evse_id: amps
            for evse_id, amps in stored.items()
            if _EVSE_ID.fullmatch(evse_id)
            and isinstance(amps, int)
            and not isinstance(amps, bool)
            and 0 <= amps <= _MAX_STORED_AMPS
        }
        skipped = sorted(set(stored) - set(found))
        return found, (f"{self.path}: ignored invalid entries {', '.join(skipped)}" if skipped else None)

    def save(self, overrides: dict[str, int]) -> None:
        write_json(self.path, {"v": 1, "max_current_a": dict(sorted(overrides.items()))}, indent=2)
