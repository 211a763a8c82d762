"""Where the allocator keeps its runtime overrides (written with `chargebus.statefile`)."""

from __future__ import annotations

from pathlib import Path

FILE_NAME = "allocator.json"


def path_in(state_dir: Path) -> Path:
    return state_dir / FILE_NAME
