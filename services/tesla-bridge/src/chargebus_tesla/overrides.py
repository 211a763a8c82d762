"""`max_current/set` overrides per car, kept across restarts in the state directory."""

from __future__ import annotations

import logging
from pathlib import Path

from chargebus.statefile import read_json, write_json

#: The log lines keep the logger they always had (`chargebus_tesla.bridge`), so filters and tests still match.
log = logging.getLogger("chargebus_tesla.bridge")

OVERRIDES_FILE = "tesla-bridge-overrides.json"


class Overrides:
    """`max_current` overrides per car, kept in `<state_dir>/tesla-bridge-overrides.json` across restarts."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self.max_current: dict[str, int] = {}
        if path is None:
            return
        try:
            data = read_json(path)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning(f"tesla_overrides_unreadable path={path} error={type(exc).__name__}")
            return
        stored = data.get("max_current") if isinstance(data, dict) else None
        if isinstance(stored, dict):
            self.max_current = {
                str(vin): amps
                for vin, amps in stored.items()
                if isinstance(amps, int) and not isinstance(amps, bool) and amps >= 0
            }

    def set_max_current(self, vin: str, amps: int | None) -> None:
        if amps is None:
            self.max_current.pop(vin, None)
        else:
            self.max_current[vin] = amps
        if self._path is not None:
            write_json(self._path, {"max_current": self.max_current})
