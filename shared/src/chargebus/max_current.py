"""`<p>/evse/<id>/max_current/set` at the bridges that take it in whole amps (the TWC and OCPP bridges): the
command's value (pure) and the state file that keeps each EVSE's override across restarts.

A value is whole amps from 0 to the EVSE's limit — 0 stops charging, 1 to the minimum − 1 is refused, because such
an offer would be 0 anyway and silently turning it into 0 would surprise — or `default`, which removes the
override. The file is `{"v": 1, "max_current_a": {"<evse_id>": <amps>}}`, replaced atomically (temporary file,
fsync, rename), so a crash leaves the old or the new file, never half of one.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from chargebus.statefile import write_json

DEFAULT_WORD = "default"


def parse_max_current(value: Any, *, max_amps: int, min_amps: int, limit_name: str) -> int | None:
    """Whole amps of a max_current command, or None for `default`; ValueError says what is wrong. `limit_name`
    names the setting `max_amps` comes from, for the message."""
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
        raise ValueError(f"max_current {value:g} A is not whole amps (the charger takes whole amps only)")
    amps = int(value)
    if amps > max_amps:
        raise ValueError(f"max_current {amps} A is above {limit_name} ({max_amps} A)")
    if 0 < amps < min_amps:
        raise ValueError(f"max_current {amps} A is below the minimum of {min_amps} A (0 stops charging)")
    return amps


class MaxCurrentStore:
    """The overrides of one bridge's EVSEs in `path`; entries whose id does not match `evse_id` or whose amps lie
    outside 0..`max_stored_amps` are skipped on load (and named)."""

    def __init__(self, path: Path, *, evse_id: re.Pattern[str], max_stored_amps: int) -> None:
        self.path = path
        self._evse_id = evse_id
        self._max_stored_amps = max_stored_amps

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
            valid = isinstance(amps, int) and not isinstance(amps, bool) and 0 <= amps <= self._max_stored_amps
            if self._evse_id.fullmatch(evse_id) and valid:
                overrides[evse_id] = amps
            else:
                skipped.append(evse_id)
        problem = f"{self.path}: ignored invalid entries {', '.join(sorted(skipped))}" if skipped else None
        return overrides, problem

    def save(self, overrides: dict[str, int]) -> None:
        write_json(self.path, {"v": 1, "max_current_a": dict(sorted(overrides.items()))}, indent=2)
