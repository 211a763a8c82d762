"""Numbers as people read them in reasons: `4 000 W`, `6 A`, `45 s`."""

from __future__ import annotations


def watts(value: float) -> str:
    return f"{round(value):,} W".replace(",", " ")


def amps(value: float) -> str:
    rounded = round(value, 1)
    if rounded == int(rounded):
        return f"{int(rounded)} A"
    return f"{rounded:.1f} A"


def seconds(value: float) -> str:
    return f"{max(0, round(value))} s"


def kilowatt_hours(value_wh: float) -> str:
    return f"{value_wh / 1000:.1f} kWh"
