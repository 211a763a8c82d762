"""Departure plans through the allocator's own process over a real broker: tariff and forecast topics, plan/set,
the plan in `allocator/state`, a slot that is served at once, partial updates and restarts."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chargebus.clock import iso_utc
from chargebus.schema import to_json

from services.allocator.tests.alloc_builders import VIN_A, evse_state, vehicle_state
from services.allocator.tests.test_alloc_service import FAST, TWC, allocator, last_json, state_where, write_config
from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Recorder

HOUR = 3600.0


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def price_slots(start: float, prices: list[float]) -> list[dict[str, Any]]:
    return [
        {"start": iso(start + h * HOUR), "end": iso(start + (h + 1) * HOUR), "price": price}
        for h, price in enumerate(prices)
    ]


def plan_of(state: Any) -> Any:
    return state["groups"][0]["plan"] if state["groups"] else None


async def test_a_plan_is_made_on_the_tariff_served_in_its_slot_and_kept_across_a_restart(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "c.toml", prefix, allocator={"mode": "solar", "timezone": "UTC", **FAST, "house_load_w": [300]}
    )
    hour = time.time() // HOUR * HOUR
    # Cheap from an hour ago to two hours from now, dear after: the plan needs all the cheap time that is left.
    tariff = {"v": 1, "currency": "EUR", "slots": price_slots(hour - HOUR, [0.05, 0.05, 0.05, 0.40, 0.40, 0.40])}
    by = iso(hour + 5 * HOUR)
    errors = f"{prefix}/allocator/error"
    async with Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus:
        await bus.publish(f"{prefix}/evse/{TWC}/state", to_json(evse_state(TWC, vin=VIN_A)), retain=True)
        await bus.publish(f"{prefix}/vehicle/{VIN_A}/state", to_json(vehicle_state(VIN_A)), retain=True)
        await bus.publish(f"{prefix}/power/grid", "300", retain=True)
        await bus.publish(f"{prefix}/tariff/grid", json.dumps(tariff), retain=True)
        service = allocator(mqtt_broker, prefix, config)
        try:
            await bus.wait_for(state_where(bus, prefix, lambda s: len(s["groups"]) == 1), timeout=15, what="state")
            # Not configured and not seen: refused like any other command.
            await bus.publish(f"{prefix}/vehicle/5YJ3E1EA8KF000009/plan/set", json.dumps({"soc_pct": 80}))
            refused = await bus.wait_message(errors, lambda m: "5YJ3E1EA8KF000009" in m.json()["error"], timeout=15)
            assert "not configured and not seen" in refused.json()["error"]

            # What is left of the cheap time is read now, not before the process started: the planner starts from
            # its own now, and a slow start would eat the 9 s margin below.
            left_h = (hour + 2 * HOUR - time.time()) / HOUR
            # All of it but 20 Wh (9 s at full power): the present quarter is needed too, unless less than that is
            # left of it.
            need_wh = round(32 * 240 * left_h - 20)
            await bus.publish(f"{prefix}/evse/{TWC}/plan/set", json.dumps({"energy_wh": need_wh, "by": by}))
            state = await bus.wait_for(
                state_where(bus, prefix, lambda s: plan_of(s) is not None and plan_of(s)["slots"]),
                timeout=15,
                what="a plan with slots",
            )
            plan = plan_of(state)
            assert plan["status"] == "on_track", plan
            assert plan["target"] == {"energy_wh": need_wh, "soc_pct": None}
            assert plan["by"] == by.replace("+00:00", ".000Z")
            assert plan["currency"] == "EUR"
            assert plan["slots"][-1]["end"] == iso(hour + 2 * HOUR).replace("+00:00", ".000Z")
            assert abs(plan["cost"] - need_wh / 1000 * 0.05) < 0.01
            # The slot covers now: served like `now`, at once.
            state = await bus.wait_for(
                state_where(bus, prefix, lambda s: s["groups"][0]["state"] == "charging"),
                timeout=15,
                what="charging in the slot",
            )
            group = state["groups"][0]
            assert group["mode"] == "now"
            assert "departure plan slot" in group["reason"]
            setpoint = last_json(bus, f"{prefix}/evse/{TWC}/setpoint")
            assert setpoint["power_w"] > 0

            # One field at a time (as Home Assistant's entities send them): the rest of the plan stays.
            await bus.publish(f"{prefix}/evse/{TWC}/plan/set", json.dumps({"strategy": "solar_only"}))
            state = await bus.wait_for(
                state_where(bus, prefix, lambda s: plan_of(s) is not None and plan_of(s)["strategy"] == "solar_only"),
                timeout=15,
                what="solar_only",
            )
            assert plan_of(state)["status"] == "at_risk"  # no sun forecast: solar_only cannot make it
            assert plan_of(state)["slots"] == []
            assert plan_of(state)["target"]["energy_wh"] == need_wh
            overrides = {o["key"]: o["value"] for o in state["overrides"]}
            assert overrides[f"evse/{TWC}/plan"]["request"]["strategy"] == "solar_only"
        finally:
            service.stop()
        assert "Traceback" not in service.log()

        # Restarted, the plan is still there (from the state file).
        restarted_at = iso_utc(time.time())  # the same form as computed_at, so the strings compare
        service = allocator(mqtt_broker, prefix, config)
        try:
            await bus.wait_for(
                state_where(
                    bus,
                    prefix,
                    lambda s: s["computed_at"] > restarted_at and plan_of(s) and plan_of(s)["strategy"] == "solar_only",
                ),
                timeout=15,
                what="the plan after a restart",
            )
            await bus.publish(f"{prefix}/evse/{TWC}/plan/set", "default")
            await bus.wait_for(state_where(bus, prefix, lambda s: plan_of(s) is None), timeout=15, what="plan cleared")
            # A broken tariff is reported; planning goes on with the last good one.
            await bus.publish(f"{prefix}/tariff/grid", b'{"v":1,"currency":"EUR","slots":[1]}', retain=True)
            bad = await bus.wait_message(errors, lambda m: m.json()["topic"] == f"{prefix}/tariff/grid", timeout=15)
            assert "slots" in bad.json()["error"]
            assert service.alive()
        finally:
            service.stop()
        assert "Traceback" not in service.log()
