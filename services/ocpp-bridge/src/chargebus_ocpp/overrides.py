"""The `max_current` override of each OCPP connector (`<p>/evse/ocpp-<name>[-<n>]/max_current/set`, owned by this
bridge): whole amps from 0 to the charge point's `max_current_a`, kept in `<state_dir>/ocpp-bridge.json`. The
rules and the file format are the shared ones of `chargebus.max_current`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from chargebus import max_current

STATE_FILE_NAME = "ocpp-bridge.json"
_EVSE_ID = re.compile(r"^ocpp-[a-z0-9-]{1,32}$")
_MAX_STORED_AMPS = 80


def parse_max_current(value: Any, *, max_current_a: int, min_current_a: int) -> int | None:
    """Whole amps of a max_current command, or None for `default`; ValueError says what is wrong."""
    return max_current.parse_max_current(
        value, max_amps=max_current_a, min_amps=min_current_a, limit_name="the charge point's max_current_a"
    )


class OverrideStore(max_current.MaxCurrentStore):
    """`{"v": 1, "max_current_a": {"ocpp-garage": 10}}` in the state directory."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir / STATE_FILE_NAME, evse_id=_EVSE_ID, max_stored_amps=_MAX_STORED_AMPS)
