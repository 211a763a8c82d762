"""An EVSE whose bridge is offline (its LWT on `<p>/<bridge>/status`) counts as offline until the bridge is back."""

from __future__ import annotations

import pytest
from chargebus.topics import owning_bridge
from chargebus_allocator.engine import Engine, Round

from services.allocator.tests.alloc_builders import T0, VIN_A, VIN_B, feed_evse, feed_vehicle, make_engine

TWC = "twc-0001"
CAR_A = f"car-{VIN_A}"  # merged with TWC
CAR_B = f"car-{VIN_B}"  # on its own mobile connector


def states(result: Round) -> dict[str, str]:
    return {point.charge_point.id: point.state for point in result.allocation.points}


def told(result: Round) -> dict[str, tuple[float | None, bool | None]]:
    return {sp.evse_id: (sp.power_w, sp.charge) for sp in result.allocation.setpoints}


def garage(mode: str = "now") -> Engine:
    engine = make_engine(mode=mode)
    feed_evse(engine, TWC, vin=VIN_A)
    feed_evse(engine, CAR_A)
    feed_vehicle(engine, VIN_A)
    feed_evse(engine, CAR_B)
    feed_vehicle(engine, VIN_B)
    return engine


@pytest.mark.parametrize(
    ("evse_id", "bridge"),
    [("twc-4a1b", "twc-bridge"), (f"car-{VIN_A}", "tesla-bridge"), ("twc3-garage", "tesla-bridge")],
)
def test_which_bridge_owns_an_evse(evse_id: str, bridge: str) -> None:
    assert owning_bridge(evse_id) == bridge


def test_the_twc_bridge_going_offline_takes_its_twcs_offline_until_it_is_back() -> None:
    engine = garage()
    assert states(engine.compute(T0)) == {TWC: "charging", CAR_B: "charging"}
    assert engine.bridge_status("twc-bridge", b"offline")
    assert not engine.bridge_status("twc-bridge", b"offline")  # no change
    result = engine.compute(T0 + 1)
    assert states(result) == {TWC: "offline", CAR_B: "charging"}
    assert told(result)[TWC] == (None, None)  # "do not touch": no stop for a bridge that is away
    assert told(result)[CAR_A] == (None, None)
    reason = next(p.reason for p in result.allocation.points if p.charge_point.id == TWC)
    assert reason == f"offline: no fresh data from {TWC}; it is told to keep what it does until it reports."
    assert engine.bridge_status("twc-bridge", b"online")
    assert states(engine.compute(T0 + 2)) == {TWC: "charging", CAR_B: "charging"}


def test_the_tesla_bridge_going_offline_takes_the_cars_offline() -> None:
    engine = garage()
    assert engine.bridge_status("tesla-bridge", b"offline")
    result = engine.compute(T0)
    # The merged charge point's current is set by its TWC, whose bridge is alive: it stays up.
    assert states(result) == {TWC: "charging", CAR_B: "offline"}
    assert told(result)[CAR_B] == (None, None)


def test_other_services_and_other_words_change_nothing() -> None:
    engine = garage()
    assert not engine.bridge_status("allocator", b"offline")
    assert not engine.bridge_status("history", b"offline")
    assert not engine.bridge_status("twc-bridge", b"")  # a cleared status is no news
    assert not engine.bridge_status("twc-bridge", b"restarting")
    assert not engine.bridge_status("twc-bridge", b"online")  # already considered up
    assert engine.bridges_offline == set()
    engine.bridge_status("twc-bridge", b"offline")
    assert not engine.bridge_status("twc-bridge", b"\xff\xfe")
    assert engine.bridges_offline == {"twc-bridge"}


def test_an_offline_bridge_draw_is_not_added_back_to_the_solar_surplus() -> None:
    engine = make_engine(mode="solar")
    feed_evse(engine, TWC, power_w=3000, charging=True)
    engine.meter_message("p/power/grid", b"-2000", T0)
    online = engine.compute(T0)
    assert online.allocation.surplus_w == 5000  # 2 000 W export + its own 3 000 W draw
    engine.bridge_status("twc-bridge", b"offline")
    offline = engine.compute(T0 + 1)
    assert offline.allocation.surplus_w == 2000
    assert told(offline)[TWC] == (None, None)
