"""Watts <-> amps at the edge.

All policy maths is in watts; amps exist only on the wire. These helpers are the one place the conversion
happens, so every bridge floors the same way and never offers the forbidden 1-4 A band.
"""

from __future__ import annotations

import math

# Guards against 4600 / 230 = 19.999999999999996 flooring to 19 A.
_FLOOR_EPSILON = 1e-6

#: Below this a car does not charge reliably; offers between 0 and this are never made.
ABSOLUTE_MIN_AMPS = 5


def watts_per_amp(voltage_v: float, phases: int) -> float:
    """Power of one ampere per phase: the step of an EVSE on this supply."""
    if voltage_v <= 0 or phases <= 0:
        raise ValueError(f"voltage_v and phases must be positive, got {voltage_v} V x {phases}")
    return voltage_v * phases


def watts_to_amps(power_w: float, voltage_v: float, phases: int) -> int:
    """Whole amps per phase that fit in `power_w`: always floored, never negative."""
    if power_w <= 0 or math.isnan(power_w):
        return 0
    return max(0, math.floor(power_w / watts_per_amp(voltage_v, phases) + _FLOOR_EPSILON))


def amps_to_watts(amps: float, voltage_v: float, phases: int) -> float:
    """Power drawn by `amps` per phase."""
    return amps * watts_per_amp(voltage_v, phases)


def clamp_offer(amps: int, min_amps: int, max_amps: int) -> int:
    """Clamp whole amps into [min_amps, max_amps], where anything below the minimum becomes 0.

    `max_amps` below `min_amps` means the EVSE cannot be offered anything safely: 0.
    """
    if amps < min_amps or max_amps < min_amps:
        return 0
    return min(amps, max_amps)


def offer_amps(power_w: float, voltage_v: float, phases: int, min_amps: int, max_amps: int) -> int:
    """The whole amps to offer for a power setpoint: floored, capped at `max_amps`, 0 below `min_amps`."""
    return clamp_offer(watts_to_amps(power_w, voltage_v, phases), min_amps, max_amps)


def split_phase_voltage(reported_v: float, phases: int) -> float:
    """A phase-to-neutral voltage from a car's report: 3-phase cars may report line-to-line (~400 V)."""
    if phases == 3 and reported_v > 300:
        return reported_v / math.sqrt(3)
    return reported_v
