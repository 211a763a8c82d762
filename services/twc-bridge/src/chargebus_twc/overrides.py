"""The `max_current` override of each TWC (docs/contract.md §5): whole amps from 0 to `twc.wiring_max_amps`, kept
in `<state_dir>/twc-bridge.json`. The rules and the file format are the shared ones of `chargebus.max_current`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from chargebus import max_current

STATE_FILE_NAME = "twc-bridge.json"
_EVSE_ID = re.compile(r"^twc-[0-9a-f]{4}$")
#: Largest override a file may hold: the largest Gen2 rating.
_MAX_STORED_AMPS = 80


def parse_max_current(value: Any, *, wiring_max_amps: int, min_amps: int) -> int | None:
    """Whole amps of a max_current command, or None for `default`; ValueError says what is wrong."""
    return max_current.parse_max_current(
        value, max_amps=wiring_max_amps, min_amps=min_amps, limit_name="twc.wiring_max_amps"
    )


class OverrideStore(max_current.MaxCurrentStore):
    """`{"v": 1, "max_current_a": {"twc-4a1b": 16}}` in the state directory."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir / STATE_FILE_NAME, evse_id=_EVSE_ID, max_stored_amps=_MAX_STORED_AMPS)
