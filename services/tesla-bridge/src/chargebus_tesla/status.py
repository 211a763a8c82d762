"""The car EVSE's `status_text` and `online`, from the merged snapshot and how the car is reached. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from chargebus.clock import iso_utc

from chargebus_tesla.car_state import Snapshot
from chargebus_tesla.fleet import BleOutage


@dataclass(frozen=True)
class LinkFacts:
    """How the car is reached right now."""

    #: why the Tesla login failed, when this car's calls go to the Fleet API (else None)
    login_failure: str | None
    #: Tesla's 429 deadline, when this car's calls go to the Fleet API (else None)
    rate_limited_until: float | None
    ble_outage: BleOutage | None


@dataclass(frozen=True)
class WakeFacts:
    """What waking the car depends on."""

    controllable: bool
    #: the setpoint (or failsafe) asks this controlled car to charge
    wants_start: bool
    budget: int
    used_today: int


def status_text(snap: Snapshot, link: LinkFacts, wake: WakeFacts) -> str:
    """A readable sentence: the login or rate limit if either stops us, else state, outage, control, wake note."""
    if link.login_failure is not None:
        return f"Tesla login needed: {link.login_failure}"
    if link.rate_limited_until is not None:
        return f"rate limited by Tesla until {iso_utc(link.rate_limited_until)}"
    parts: list[str] = [snap.online_state]
    outage = link.ble_outage
    if outage is not None:
        fallback = "using the Fleet API" if outage.fallback == "fleet" else "not reached"
        parts.append(f"BLE proxy not answering, {fallback}; next BLE try {iso_utc(outage.open_until)}")
    if snap.report.charging_state is not None:
        parts.append(snap.report.charging_state)
    if not wake.controllable:
        parts.append("observe only")
    elif snap.at_home is False:
        parts.append("away from home: not controlled")
    elif snap.at_home is None:
        parts.append("location unknown: not controlled")
    note = wake_note(snap, wake)
    if note:
        parts.append(note)
    return "; ".join(parts)


def wake_note(snap: Snapshot, wake: WakeFacts) -> str | None:
    """Why a car the setpoint wants charging is left asleep, if it is."""
    if not wake.wants_start or snap.charging:
        return None
    if snap.online_state not in ("asleep", "offline"):
        return None
    if wake.budget == 0:
        return "not woken: max_wakes_per_day = 0"
    if wake.used_today >= wake.budget:
        return f"not woken: {wake.used_today} of {wake.budget} wakes used today"
    if snap.plugged_in is not True:
        return "not woken: not known to be plugged in"
    return None


def evse_online(snap: Snapshot, link: LinkFacts, wake: WakeFacts) -> bool:
    """Reachable for control: online, or asleep/offline but wakeable today; never without usable tokens, nor
    while the car's BLE proxy is out and nothing stands in for it."""
    if link.login_failure is not None:
        return False
    if link.ble_outage is not None and link.ble_outage.fallback == "none":
        return False
    if snap.online_state == "online":
        return True
    return snap.online_state in ("asleep", "offline") and wake.controllable and wake.used_today < wake.budget
