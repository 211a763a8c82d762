"""Numbers from other people's JSON: the one lenient reading every adapter of a foreign API uses.

Our own payloads are strict (chargebus.schema). Foreign ones — the Fleet API, TeslaMate's topics, a Gen3's local API,
OCPP MeterValues — drift between firmware versions: a number may come as a string, and a bad value must read as
"unknown", never raise inside a service's loop.
"""

from __future__ import annotations

import math
from typing import Any


def lenient_number(value: Any) -> float | None:
    """A finite number from an int, a float or a numeric string; None for anything else (booleans, null, "",
    "NaN", inf, an integer too large for a float, lists, objects)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None
