"""VIN entitlement through the engine: allowed, denied and unknown VINs, merged charge points, `vins/set`."""

from __future__ import annotations

from typing import Any

import pytest
from chargebus_allocator.commands import VinLists
from chargebus_allocator.engine import Engine, Round
from chargebus_allocator.overrides import VINS

from services.allocator.tests.alloc_builders import T0, VIN_A, VIN_B, feed_evse, feed_vehicle, make_engine

TWC_A, TWC_B, TWC_NO_VIN = "twc-000a", "twc-000b", "twc-0000"
CAR_A, CAR_B = f"car-{VIN_A}", f"car-{VIN_B}"
FULL_W = 32 * 240


def house(**allocator: Any) -> Engine:
    """Car A plugged into TWC A and car B into TWC B (each merged with its car-<VIN>), plus a TWC without a VIN."""
    engine = make_engine(mode="now", **allocator)
    for twc, vin, car in ((TWC_A, VIN_A, CAR_A), (TWC_B, VIN_B, CAR_B)):
        feed_evse(engine, twc, vin=vin)
        feed_evse(engine, car)
        feed_vehicle(engine, vin)
    feed_evse(engine, TWC_NO_VIN)
    return engine


def verdicts(result: Round) -> dict[str, str]:
    return {point.charge_point.id: point.state for point in result.allocation.points}


def told(result: Round) -> dict[str, tuple[float | None, bool | None]]:
    return {sp.evse_id: (sp.power_w, sp.charge) for sp in result.allocation.setpoints}


def test_an_open_house_ignores_the_lists_but_not_unknown_vin() -> None:
    result = house(authorization="open", denied_vins=[VIN_B]).compute(T0)
    assert set(verdicts(result).values()) == {"charging"}
    result = house(authorization="open", unknown_vin="deny").compute(T0)
    assert verdicts(result) == {TWC_A: "charging", TWC_B: "charging", TWC_NO_VIN: "refused"}


def test_allow_list_refuses_a_merged_charge_point_of_a_car_not_on_it() -> None:
    result = house(authorization="allow_list", allowed_vins=[VIN_A]).compute(T0)
    assert verdicts(result) == {TWC_A: "charging", TWC_B: "refused", TWC_NO_VIN: "charging"}
    assert told(result) == {
        TWC_A: (FULL_W, None),
        CAR_A: (None, True),
        TWC_B: (0, None),  # the TWC offers nothing…
        CAR_B: (None, False),  # …and the car is told to stop
        TWC_NO_VIN: (FULL_W, True),
    }
    (refused,) = [p for p in result.allocation.points if p.state == "refused"]
    assert refused.charge_point.members == (TWC_B, CAR_B)
    assert refused.reason == f"refused: VIN {VIN_B} is not authorised to charge here."
    assert "not authorised" in refused.reason


def test_deny_list_refuses_only_the_listed_car() -> None:
    result = house(authorization="deny_list", denied_vins=[VIN_A]).compute(T0)
    assert verdicts(result) == {TWC_A: "refused", TWC_B: "charging", TWC_NO_VIN: "charging"}
    assert told(result)[CAR_A] == (None, False)
    assert result.state is not None
    group = next(g for g in result.state.groups if g.vin == VIN_A)
    assert (group.state, group.allocated_w, group.evse_ids) == ("refused", 0, [TWC_A, CAR_A])
    assert f"VIN {VIN_A} is not authorised" in group.reason


@pytest.mark.parametrize("authorization", ["allow_list", "deny_list"])
def test_an_unknown_vin_follows_unknown_vin(authorization: str) -> None:
    allowed = house(authorization=authorization, allowed_vins=[VIN_A, VIN_B], unknown_vin="allow").compute(T0)
    assert verdicts(allowed)[TWC_NO_VIN] == "charging"
    denied = house(authorization=authorization, allowed_vins=[VIN_A, VIN_B], unknown_vin="deny").compute(T0)
    assert verdicts(denied) == {TWC_A: "charging", TWC_B: "charging", TWC_NO_VIN: "refused"}
    assert told(denied)[TWC_NO_VIN] == (0, False)
    reason = next(p.reason for p in denied.allocation.points if p.state == "refused")
    assert "VIN is unknown" in reason
    assert "not authorised" in reason


def test_a_car_on_its_own_connector_is_refused_through_its_api() -> None:
    engine = make_engine(mode="now", authorization="allow_list", allowed_vins=[VIN_A])
    feed_evse(engine, CAR_B)
    feed_vehicle(engine, VIN_B)
    result = engine.compute(T0)
    assert verdicts(result) == {CAR_B: "refused"}
    assert told(result) == {CAR_B: (0, False)}


def test_vins_set_replaces_both_lists_until_default() -> None:
    engine = house(authorization="allow_list", allowed_vins=[VIN_A], denied_vins=[VIN_B])
    assert verdicts(engine.compute(T0))[TWC_B] == "refused"
    engine.overrides.put(VINS, VinLists(allow=(VIN_B,)), T0)
    result = engine.compute(T0 + 1)
    assert verdicts(result) == {TWC_A: "refused", TWC_B: "charging", TWC_NO_VIN: "charging"}
    assert result.state is not None
    assert [(o.key, o.value) for o in result.state.overrides] == [(VINS, {"allow": [VIN_B], "deny": []})]
    engine.overrides.put(VINS, VinLists(), T0 + 2)  # both lists empty: nobody with a VIN is allowed
    assert verdicts(engine.compute(T0 + 2)) == {TWC_A: "refused", TWC_B: "refused", TWC_NO_VIN: "charging"}
    engine.overrides.put(VINS, None, T0 + 3)
    assert verdicts(engine.compute(T0 + 3))[TWC_A] == "charging"


def test_vins_set_deny_list_in_deny_mode() -> None:
    engine = house(authorization="deny_list")
    assert "refused" not in verdicts(engine.compute(T0)).values()
    engine.overrides.put(VINS, VinLists(deny=(VIN_B,)), T0)
    assert verdicts(engine.compute(T0 + 1))[TWC_B] == "refused"
