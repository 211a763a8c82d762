"""Setpoint watts → the amps offered to each slave (docs/contract.md §6 and §9). Pure.

The offer never exceeds min(wiring limit, the unit's advertised maximum, the max_current override, the setpoint's
amps) — there is no "spike" above the setpoint to make a car ramp — and the offers on one bus never add up to more
than `bus_max_amps`, failsafe included. An offer is 0 or at least the slave's minimum, never 1–4 A.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from chargebus.config import GEN2_MAX_AMPS, TwcConfig
from chargebus.schema import Setpoint
from chargebus.units import clamp_offer, offer_amps

#: A slave's own floor by protocol version (docs/twc-gen2-protocol.md §6, §7).
PROTOCOL_MIN_AMPS = {1: 5, 2: 6}

COMMAND_NO_CHANGE = 0x00
#: An offer that means "send no change": the slave keeps the limit it applies (a slave we have just linked, told
#: "do not touch" while we do not know its limit yet — after a restart of this bridge it is the previous master's).
HOLD_OFFER = -1
COMMAND_LIMIT_P1 = 0x05
COMMAND_LIMIT_P2 = 0x09


@dataclass(frozen=True, slots=True)
class BusLimits:
    """The `[twc]` amps settings of one bus.

    They are validated once, when the configuration loads (`chargebus.config.TwcConfig`): a wiring limit above the
    largest Gen2 rating, a minimum below 5 A or a failsafe in the forbidden band refuse to start, never clamped.
    """

    wiring_max_amps: int
    bus_max_amps: int
    min_amps: int
    failsafe_amps: int

    @classmethod
    def from_config(cls, twc: TwcConfig) -> BusLimits:
        return cls(twc.wiring_max_amps, twc.bus_max_amps, twc.min_amps, twc.failsafe_amps)


def rating_problem(wiring_max_amps: int, advertised_max_amps: float) -> str | None:
    """Run-time check when a slave links: a unit rated below the wiring limit is driven at its rating.

    Only the largest Gen2 rating is known before the bus is up, so this is reported once on `…/error` and the
    service keeps running (docs/contract.md §2), rather than refusing to start.
    """
    if advertised_max_amps < wiring_max_amps:
        return (
            f"twc.wiring_max_amps = {wiring_max_amps} is above the unit's advertised maximum of "
            f"{advertised_max_amps:g} A; offering at most {math.floor(advertised_max_amps)} A"
        )
    return None


def slave_min_amps(config_min_amps: int, protocol: int) -> int:
    """max(configured minimum, the slave's own: 5 A protocol 1, 6 A protocol 2)."""
    return max(config_min_amps, PROTOCOL_MIN_AMPS.get(protocol, max(PROTOCOL_MIN_AMPS.values())))


def slave_max_amps(wiring_max_amps: int, advertised_max_amps: float | None, override_amps: float | None) -> int:
    """Whole amps a slave may be offered at most: the lowest of wiring, unit rating and user override."""
    limits = [float(wiring_max_amps), float(GEN2_MAX_AMPS)]
    if advertised_max_amps is not None:
        limits.append(advertised_max_amps)
    if override_amps is not None:
        limits.append(override_amps)
    return max(0, math.floor(min(limits)))


@dataclass(frozen=True, slots=True)
class SlaveDemand:
    """Everything the offer of one slave depends on."""

    slave_id: int
    min_amps: int
    max_amps: int
    #: The bridge's own electrical basis, used where the setpoint does not carry one.
    voltage_v: float
    phases: int
    setpoint: Setpoint | None = None
    #: Epoch seconds when `setpoint` arrived (its ttl_s counts from here).
    received_at: float = 0.0
    #: What the slave is offered now: kept when the setpoint says "do not touch the current" (power_w null).
    current_offer: int = 0


def setpoint_live(setpoint: Setpoint | None, received_at: float, now: float) -> bool:
    return setpoint is not None and now < setpoint.expires_at_epoch(received_at)


def wanted_amps(demand: SlaveDemand, now: float) -> int | None:
    """The offer a live setpoint asks for, within this slave's limits; None when the slave is in failsafe."""
    setpoint = demand.setpoint
    if setpoint is None or not setpoint_live(setpoint, demand.received_at, now):
        return None
    if setpoint.power_w is None:
        return clamp_offer(demand.current_offer, demand.min_amps, demand.max_amps)
    voltage_v = setpoint.voltage_v if setpoint.voltage_v is not None else demand.voltage_v
    phases = setpoint.phases if setpoint.phases is not None else demand.phases
    return offer_amps(setpoint.power_w, voltage_v, phases, demand.min_amps, demand.max_amps)


def failsafe_offer(failsafe_amps: int, bus_max_amps: int, slave_count: int, min_amps: int, max_amps: int) -> int:
    """min(failsafe_amps, equal share of the bus), 0 below the slave's minimum."""
    share = bus_max_amps // max(1, slave_count)
    return clamp_offer(min(failsafe_amps, share), min_amps, max_amps)


def cut_to_bus(wanted: Mapping[int, int], minimums: Mapping[int, int], bus_max_amps: int) -> dict[int, int]:
    """Cut wanted offers so they add up to at most `bus_max_amps` (docs/contract.md §9).

    While a proportional cut would push an offer below its minimum, the smallest such wanted offer goes to 0
    (ties: lowest ID); the others are then cut proportionally in whole amps, and the amps lost to flooring go back
    one by one to the largest remainders, never above what was wanted.
    """
    offers = dict.fromkeys(wanted, 0)
    active = {slave_id: amps for slave_id, amps in wanted.items() if amps > 0}
    budget = max(0, bus_max_amps)
    while active:
        total = sum(active.values())
        if total <= budget:
            offers.update(active)
            return offers
        shares = {slave_id: amps * budget / total for slave_id, amps in active.items()}
        starved = [slave_id for slave_id, share in shares.items() if math.floor(share) < minimums[slave_id]]
        if starved:
            del active[min(starved, key=lambda slave_id: (active[slave_id], slave_id))]
            continue
        cut = {slave_id: math.floor(share) for slave_id, share in shares.items()}
        spare = budget - sum(cut.values())
        by_remainder = sorted(active, key=lambda slave_id: (cut[slave_id] - shares[slave_id], slave_id))
        for slave_id in by_remainder[:spare]:
            cut[slave_id] = min(cut[slave_id] + 1, active[slave_id])
        offers.update(cut)
        return offers
    return offers


def plan_offers(demands: Sequence[SlaveDemand], limits: BusLimits, now: float) -> dict[int, int]:
    """The amps to offer each slave on the bus now (`now` in epoch seconds)."""
    wanted: dict[int, int] = {}
    for demand in demands:
        amps = wanted_amps(demand, now)
        if amps is None:
            amps = failsafe_offer(
                limits.failsafe_amps, limits.bus_max_amps, len(demands), demand.min_amps, demand.max_amps
            )
        wanted[demand.slave_id] = amps
    minimums = {demand.slave_id: demand.min_amps for demand in demands}
    return cut_to_bus(wanted, minimums, limits.bus_max_amps)


def stage_with_holds(
    planned: Mapping[int, int],
    committed: Mapping[int, int],
    minimums: Mapping[int, int],
    holding: Mapping[int, int],
    bus_max_amps: int,
) -> dict[int, int]:
    """`stage_offers`, with the `holding` slaves (id → their maximum) sent "no change" until their limit is known.

    A held slave may be drawing up to its maximum, so staging counts it there: another slave's increase goes out
    only as far as the bus cap allows with that counted (a decrease always goes out).
    """
    counted = {**committed, **{slave_id: max(committed.get(slave_id, 0), amps) for slave_id, amps in holding.items()}}
    staged = stage_offers(planned, counted, minimums, bus_max_amps)
    return {**staged, **dict.fromkeys(holding, HOLD_OFFER)}


def stage_offers(
    planned: Mapping[int, int], committed: Mapping[int, int], minimums: Mapping[int, int], bus_max_amps: int
) -> dict[int, int]:
    """The offers safe to put on the wire now, one heartbeat at a time, while `planned` is being reached.

    Heartbeats go out one slave after another, so moving amps from one slave to another would briefly let both
    draw the higher value. `committed` is what each slave may be drawing already (the higher of our last offer and
    the limit it reports). A decrease goes out at once. An increase goes out once the bus cap minus the others'
    committed amps has room for it; while others' decreases are still on their way it waits for them, so a car sees
    one change (0 → 20 A a heartbeat later) rather than two (0 → 8 → 20 A). With nothing on its way it goes as far
    as the room allows. An increase that cannot reach the slave's minimum keeps the current offer, and nothing is
    ever 1–4 A.
    """
    staged: dict[int, int] = {}
    for slave_id, amps in planned.items():
        current = committed.get(slave_id, 0)
        if amps <= current:
            staged[slave_id] = amps
            continue
        others = sum(drawn for other, drawn in committed.items() if other != slave_id)
        room = min(amps, bus_max_amps - others)
        freeing = any(committed[o] > planned[o] for o in committed if o != slave_id and o in planned)
        if room < amps and freeing:
            room = current  # wait for the decreases on their way: one change instead of two
        offer = max(room if room >= minimums[slave_id] else 0, current)
        staged[slave_id] = offer if offer >= minimums[slave_id] else 0
    return staged


def heartbeat_command(offer: int, protocol: int, reported_limit_centiamps: int | None) -> tuple[int, int]:
    """(command, limit in 0.01 A) of the next master heartbeat.

    "No change" (00) only when the slave already applies a non-zero offer; 0 A is always sent explicitly, because
    an all-zero heartbeat at 0 A made slaves click their relay every second (docs/twc-gen2-protocol.md §7). Protocol
    2 slaves ignore 05 once charging, so they get 09.
    """
    limit = offer * 100
    if offer == HOLD_OFFER or (offer > 0 and reported_limit_centiamps == limit):
        return COMMAND_NO_CHANGE, 0
    return (COMMAND_LIMIT_P1 if protocol == 1 else COMMAND_LIMIT_P2), limit
