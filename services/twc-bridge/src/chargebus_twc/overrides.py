"""The `max_current` override of each TWC: the command's value (pure) and the state file that keeps it.

`<p>/evse/twc-<id>/max_current/set` is owned by this bridge (docs/contract.md §5). A value is whole amps from 0 to the
wiring limit — 0 stops charging, 1 to `min_amps − 1` is refused, because such an offer would be 0 anyway and
silently turning it into 0 would surprise — or `default`, which removes the override. Overrides survive restarts in
`<state_dir>/twc-bridge.json`, written atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from chargebus.statefile import write_json

STATE_FILE_NAME = "twc-bridge.json"
DEFAULT_WORD = "default"
_EVSE_ID = re.compile(r"^twc-[0-9a-f]{4}$")
#: Largest override a file may hold: the largest Gen2 rating.
_MAX_STORED_AMPS = 80


def parse_max_current(value: Any, *, wiring_max_amps: int, min_amps: int) -> int | None:
    """Whole amps of a max_current command, or None for `default`; ValueError says what is wrong."""
    if isinstance(value, str):
        if value.strip().lower() == DEFAULT_WORD:
            return None
        raise ValueError(f"max_current must be a number of amps or 'default', got the text {value[:40]!r}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(  # noqa: TRY004 - an input error, reported as such
            f"max_current must be a number of amps or 'default', got {type(value).__name__}"
        )
    if not math.isfinite(value):
        raise ValueError("max_current must be a finite number of amps")
    if value < 0:
        raise ValueError(f"max_current {value:g} A is negative")
    if value != math.floor(value):
        raise ValueError(f"max_current {value:g} A is not whole amps (TWCs take whole amps only)")
    amps = int(value)
    if amps > wiring_max_amps:
        raise ValueError(f"max_current {amps} A is above twc.wiring_max_amps ({wiring_max_amps} A)")
    if 0 < amps < min_amps:
        raise ValueError(f"max_current {amps} A is below the minimum of {min_amps} A (0 stops charging)")
    return amps


class OverrideStore:
    """`{"v": 1, "max_current_a": {"twc-4a1b": 16}}` in the state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / STATE_FILE_NAME

    def load(self) -> tuple[dict[str, int], str | None]:
        """The stored overrides, and a problem description when the file could not be used (then: none)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}, None
        except OSError as exc:
            return {}, f"cannot read {self.path}: {exc.strerror or exc}"
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            return {}, f"{self.path} is not valid JSON ({exc.msg}); starting without max_current overrides"
        stored = data.get("max_current_a") if isinstance(data, dict) else None
        if not isinstance(stored, dict):
            return {}, f"{self.path} has no 'max_current_a' object; starting without max_current overrides"
        overrides: dict[str, int] = {}
        skipped: list[str] = []
        for evse_id, amps in stored.items():
            valid = isinstance(amps, int) and not isinstance(amps, bool) and 0 <= amps <= _MAX_STORED_AMPS
            if _EVSE_ID.fullmatch(evse_id) and valid:
                overrides[evse_id] = amps
            else:
                skipped.append(evse_id)
        problem = f"{self.path}: ignored invalid entries {', '.join(sorted(skipped))}" if skipped else None
        return overrides, problem

    def save(self, overrides: dict[str, int]) -> None:
        """Replace the file atomically: a crash leaves the old or the new file, never half of one."""
        write_json(self.path, {"v": 1, "max_current_a": dict(sorted(overrides.items()))}, indent=2)
