"""The car EVSE's status text and reachability, and what a failed call is reported as: pure functions."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import pytest
from chargebus_tesla.car_state import Snapshot
from chargebus_tesla.errors import AuthFailed, BleUnavailable, FleetError, RateLimited
from chargebus_tesla.fleet import BleOutage
from chargebus_tesla.fleet_problems import ProblemReport, problem_for
from chargebus_tesla.problems import RATE_LIMITED
from chargebus_tesla.status import LinkFacts, WakeFacts, evse_online, status_text, wake_note
from chargebus_tesla.vehicle_data import CarReport

VIN = "5YJ3E1EA8KF000001"
T0 = 1_800_000_000.0
CLEAR = LinkFacts(login_failure=None, rate_limited_until=None, ble_outage=None)
WAKE = WakeFacts(controllable=True, wants_start=False, budget=6, used_today=0)


def snap(online: str = "online", **changes: object) -> Snapshot:
    base = Snapshot(
        online_state=online,  # type: ignore[arg-type]
        report=CarReport(charging_state="Stopped"),
        plugged_in=True,
        plugged_in_at=None,
        at_home=True,
        source="fleet_api",
        observed_at=T0,
        teslamate_fresh=False,
        stale=False,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def outage(fallback: Literal["none", "fleet"]) -> BleOutage:
    return BleOutage(vin=VIN, url="http://ble", failures=3, open_s=300, reason="x", fallback=fallback, open_until=T0)


def test_the_login_and_the_rate_limit_come_first() -> None:
    assert status_text(snap(), replace(CLEAR, login_failure="refused"), WAKE) == "Tesla login needed: refused"
    limited = status_text(snap(), replace(CLEAR, rate_limited_until=T0), WAKE)
    assert limited.startswith("rate limited by Tesla until 2027-01-15")


def test_state_outage_control_and_wake_note_in_order() -> None:
    text = status_text(snap("asleep"), replace(CLEAR, ble_outage=outage("fleet")), replace(WAKE, wants_start=True))
    assert text.startswith("asleep; BLE proxy not answering, using the Fleet API; next BLE try ")
    assert text.endswith("; Stopped")
    assert status_text(snap(at_home=False), CLEAR, WAKE) == "online; Stopped; away from home: not controlled"
    assert status_text(snap(at_home=None), CLEAR, WAKE) == "online; Stopped; location unknown: not controlled"
    assert status_text(snap(), CLEAR, replace(WAKE, controllable=False)) == "online; Stopped; observe only"


@pytest.mark.parametrize(
    ("wake", "plugged", "note"),
    [
        (
            WakeFacts(controllable=True, wants_start=True, budget=0, used_today=0),
            True,
            "not woken: max_wakes_per_day = 0",
        ),
        (
            WakeFacts(controllable=True, wants_start=True, budget=6, used_today=6),
            True,
            "not woken: 6 of 6 wakes used today",
        ),
        (
            WakeFacts(controllable=True, wants_start=True, budget=6, used_today=1),
            None,
            "not woken: not known to be plugged in",
        ),
        (WakeFacts(controllable=True, wants_start=True, budget=6, used_today=1), True, None),
        (WakeFacts(controllable=True, wants_start=False, budget=0, used_today=0), True, None),
    ],
)
def test_wake_note(wake: WakeFacts, plugged: bool | None, note: str | None) -> None:
    assert wake_note(snap("asleep", plugged_in=plugged), wake) == note


def test_evse_online() -> None:
    assert evse_online(snap(), CLEAR, WAKE)
    assert not evse_online(snap(), replace(CLEAR, login_failure="refused"), WAKE)
    assert not evse_online(snap(), replace(CLEAR, ble_outage=outage("none")), WAKE)
    assert evse_online(snap(), replace(CLEAR, ble_outage=outage("fleet")), WAKE)
    assert evse_online(snap("asleep"), CLEAR, WAKE)  # wakeable today
    assert not evse_online(snap("asleep"), CLEAR, replace(WAKE, used_today=6))
    assert not evse_online(snap("asleep"), CLEAR, replace(WAKE, controllable=False))
    assert not evse_online(snap("unknown"), CLEAR, WAKE)


def reported(exc: FleetError, *, storm_reported: bool = False) -> ProblemReport | None:
    return problem_for(exc, vin=VIN, key="poll", what=f"polling car {VIN}", now=T0, storm_reported=storm_reported)


def test_what_a_failure_is_reported_as() -> None:
    assert reported(BleUnavailable(VIN, "http://ble", "timeout")) is None
    storm = reported(RateLimited(T0 + 30))
    assert storm is not None
    assert (storm.scope, storm.key) == ("*", RATE_LIMITED)
    assert "(in 30 s)" in storm.message
    assert storm.message.endswith(f"polling car {VIN} is retried after it")
    assert reported(RateLimited(T0 + 30), storm_reported=True) is None
    auth = reported(AuthFailed("login_required"))
    assert auth is not None
    assert (auth.scope, auth.key) == ("*", "auth")
    assert reported(FleetError("HTTP 404")) == ProblemReport(VIN, "poll", f"polling car {VIN} failed: HTTP 404")
