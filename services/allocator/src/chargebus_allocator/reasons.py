"""The sentence shown with each charge point: what it gets and which limit decided it, with the numbers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NamedTuple

from chargebus_allocator import wording
from chargebus_allocator.fairshare import Share
from chargebus_allocator.model import ChargePoint, Delays, Phase, PointMode, ShareRule


def mode_phrase(mode: PointMode, point: ChargePoint, charge_now_until: float | None) -> str:
    if mode == "charge_now":
        until = charge_now_until if charge_now_until is not None else point.charge_now_until
        when = datetime.fromtimestamp(until, tz=UTC).strftime("%H:%M UTC") if until is not None else "later"
        return f"charge now until {when}"
    if mode == "schedule" and point.schedule_cap_w is not None:
        return f"schedule window, up to {wording.watts(point.schedule_cap_w)}"
    if mode == "plan" and point.plan_cap_w is not None:
        return f"departure plan slot, up to {wording.watts(point.plan_cap_w)}"
    return f"mode {mode}"


def read_only(point: ChargePoint) -> str:
    where = f"circuit {point.circuit}" if point.circuit is not None else "no circuit"
    return f"read-only: it takes no setpoints; its measured {wording.watts(point.power_w)} counts on {where}."


def offline(point: ChargePoint) -> str:
    # Not 0 W: a stop or a 0 A offer sent while a bridge is away would be carried out when it comes back,
    # when it knows better; its own failsafe covers a real outage.
    return f"offline: no fresh data from {point.current_target}; it is told to keep what it does until it reports."


def unplugged() -> str:
    return "unplugged: no car to charge."


def refused(point: ChargePoint) -> str:
    if point.vin is None:
        return "refused: its car's VIN is unknown, and an unknown VIN is not authorised to charge here."
    return f"refused: VIN {point.vin} is not authorised to charge here."


def full(point: ChargePoint) -> str:
    if point.soc_pct is not None and point.charge_limit_pct is not None:
        return f"full: the car is at {point.soc_pct:.0f} % of its {point.charge_limit_pct:.0f} % limit."
    return "full: the car reports its charge complete."


def switched_off() -> str:
    return "mode off: charging is switched off."


def limits_inverted(point: ChargePoint, max_w: float) -> str:
    return (
        f"kicked out: its maximum {wording.watts(max_w)} is below its minimum {wording.watts(point.min_power_w)}, "
        "so it cannot charge."
    )


def waiting_off(left_s: float, delays: Delays) -> str:
    return (
        f"waiting: it stopped recently and may start again in {wording.seconds(left_s)} "
        f"(min_off_s {wording.seconds(delays.min_off_s)})."
    )


def starting(point: ChargePoint, left_s: float, available_w: float, delays: Delays) -> str:
    return (
        f"starting in {wording.seconds(left_s)}: {wording.watts(available_w)} available covers its minimum "
        f"{wording.watts(point.min_power_w)} (enable delay {wording.seconds(delays.enable_delay_s)})."
    )


def stopping(point: ChargePoint, left_s: float, available_w: float) -> str:
    return (
        f"stopping in {wording.seconds(left_s)}: {wording.watts(available_w)} available no longer covers its "
        f"minimum {wording.watts(point.min_power_w)}; it holds the minimum until then."
    )


def stale_grid() -> str:
    return "the grid meter is stale, so no solar surplus is assumed"


class Context(NamedTuple):
    """What every charging charge point of one group and mode shares: built once, not per charge point."""

    phrase: str  # "mode solar", "charge now until 09:00 UTC", …
    available: str | None  # "4 000 W available"; None when unlimited
    sharing: int  # how many rise above their minimum together
    rule: ShareRule
    limit: str | None = None  # the site limit that sets the budget, when it does


def context(phrase: str, budget_w: float | None, sharing: int, rule: ShareRule, *, limit: str | None = None) -> Context:
    available = f"{wording.watts(budget_w)} available" if budget_w is not None else None
    if available is not None and limit is not None:
        available += f" under the {limit}"
    return Context(phrase, available, sharing, rule, limit)


def minimum_only(watts: float, amps: int, limit: str, context: Context) -> str:
    """A site limit and a stale grid meter: the house is unknown, so nobody rises above its minimum."""
    return f"charging at {amps} A ({wording.watts(watts)}), its minimum: {limit}; {context.phrase}."


def charging(
    point: ChargePoint,
    watts: float,
    amps: int,
    share: Share,
    context: Context,
    *,
    slot: tuple[str, Phase, float, bool] | None,
    in_band: bool = False,
    kept_slowly: bool = False,
) -> str:
    """`slot` is the circuit slot that stopped it rising: (circuit, phase, limit, held back for a slow car);
    `in_band`: the offer was kept because its new share is within the dead band around it; `kept_slowly`: a car set
    through its API held below its share while the wall connectors beside it take the sun's changes."""
    available = context.available
    if kept_slowly:
        why = ": kept for fewer API calls, the wall connectors beside it take the sun's changes"
    elif in_band and available is not None:
        why = f": kept, {available} is within the dead band around it"
    elif share.bound == "max" or watts >= point.max_power_w:
        why = ": its maximum"
    elif share.bound == "circuit" and slot is not None:
        circuit_id, phase, limit, transient = slot
        why = f": circuit {circuit_id} is full on {phase} ({wording.amps(limit)})"
        if transient:
            why += " until slower cars there have followed a decrease"
    elif available is None:
        why = ""
    elif watts <= point.min_power_w:
        why = f", its minimum: {available}"
    elif context.sharing <= 1:
        why = f": all of {available}"
    elif context.rule == "priority":
        why = f": what {available} leaves after higher priorities"
    else:
        why = f": fair share of {available} among {context.sharing} charge points"
    return f"charging at {amps} A ({wording.watts(watts)}){why}; {context.phrase}."
