"""How much power each mode may use (docs/allocation.md §2).

Modes that act at once (`now`, a schedule window, charge-now) are served first, limited only by circuits and their
own caps. The solar surplus is computed with every controllable draw added back (what the house would export if
no charge point we control drew anything), less the reserve; what the first group was given comes off it, and the
rest is shared among solar and minsolar charge points, never below 0. Minsolar guarantees the minimums of what it
admits even beyond that. A stale grid meter makes the surplus unknown: 0 for solar, minimums only for minsolar.
The home battery's share of the surplus and the site's import limits are figured in site.py.
"""

from __future__ import annotations

from chargebus.schema import Mode

from chargebus_allocator.model import ChargePoint, GridReading, PointMode


def point_mode(point: ChargePoint, global_mode: Mode, charge_now_until: float | None, now: float) -> PointMode:
    """Precedence: charge-now (global or its EVSE) > a plan's slot or a schedule window, the larger cap winning >
    its EVSE's override > global."""
    if _running(charge_now_until, now) or _running(point.charge_now_until, now):
        return "charge_now"
    if point.plan_cap_w is not None and (point.schedule_cap_w is None or point.plan_cap_w >= point.schedule_cap_w):
        return "plan"
    if point.schedule_cap_w is not None:
        return "schedule"
    return point.mode if point.mode is not None else global_mode


def effective_global_mode(global_mode: Mode, charge_now_until: float | None, now: float) -> PointMode:
    return "charge_now" if _running(charge_now_until, now) else global_mode


def _running(until: float | None, now: float) -> bool:
    return until is not None and now < until


def served_first(mode: PointMode) -> bool:
    return mode in ("now", "schedule", "charge_now", "plan")


def delayed(mode: PointMode) -> bool:
    """Hysteresis applies in the solar modes only; everything else acts at once."""
    return mode in ("solar", "minsolar")


def max_power_w(point: ChargePoint, mode: PointMode) -> float:
    """Its own maximum, capped by a schedule window's or a plan slot's power while one covers it."""
    if mode == "schedule" and point.schedule_cap_w is not None:
        return min(point.max_power_w, point.schedule_cap_w)
    if mode == "plan" and point.plan_cap_w is not None:
        return min(point.max_power_w, point.plan_cap_w)
    return point.max_power_w


def grid_age_s(grid: GridReading | None, now: float) -> float | None:
    return None if grid is None else max(0.0, now - grid.at)


def grid_is_stale(grid: GridReading | None, stale_after_s: float, now: float) -> bool:
    age = grid_age_s(grid, now)
    return age is None or age > stale_after_s


def solar_surplus_w(grid_w: float, controllable_draw_w: float, reserve_w: float) -> float:
    """`−grid + Σ measured draw of controllable charge points − reserve`; negative when importing."""
    return -grid_w + controllable_draw_w - reserve_w


def solar_budget_w(surplus_w: float | None, served_first_w: float) -> float:
    """What solar and minsolar charge points share: the surplus less what the first group got; 0 when unknown."""
    if surplus_w is None:
        return 0.0
    return max(0.0, surplus_w - served_first_w)


def effective_budget_w(solar_budget: float, admitted_min_w: float, held_min_w: float) -> float:
    """The budget sharing works against: at least minsolar's admitted minimums and the minimums held in a stop
    delay. A held minimum is paid from the surplus first, the grid covering only what the surplus lacks: nobody
    rises above its minimum while another is held at its own on grid power."""
    return max(solar_budget, admitted_min_w + held_min_w)
