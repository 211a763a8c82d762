"""TeslaMate goes silent mid-charge under a running tesla-bridge process, then comes back (issue 9.2)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chargebus.clock import SystemClock
from chargebus_sim.fleet_api import FakeFleetApi
from chargebus_sim.teslamate import TeslaMateSim

from tests.faults.fault_support import (
    VIN,
    TimedRecorder,
    assert_clean_log,
    background,
    fleet_calls,
    service_process,
    tesla_section,
    teslamate_feed,
    write_config,
)
from tests.support.broker_fixture import BrokerUnderTest

SCALE = 60.0
STALE_S = 120.0  # [tesla] teslamate_stale_s
RECHECK_S = 60.0  # the bridge re-evaluates a fresh feed this often (poll_policy.TESLAMATE_RECHECK_S)
STARTUP_GRACE_S = 120.0  # a car with a teslamate_car_id counts as fresh this long after start (README)
SLACK_S = 3.0  # simulated seconds: the fake API's clock and the bridge's have the same scale, not the same origin
#: How late the first poll may come beyond its deadline: at 60× a busy test machine's scheduling delay of 0.1–0.2 s
#: is 6–12 simulated seconds. Early is what this test guards against; late only by this much.
LATE_SLACK_S = 12.0
POLLS = ("state", "data")


def sources(bus: TimedRecorder, topic: str) -> list[tuple[float, str]]:
    return [(t, m.json()["source"]) for t, m in zip(bus.times, bus.messages, strict=True) if m.topic == topic]


def source_is(bus: TimedRecorder, topic: str, source: str) -> Callable[[], bool]:
    def check() -> bool:
        seen = sources(bus, topic)
        return bool(seen) and seen[-1][1] == source

    return check


async def test_teslamate_going_stale_mid_charge_switches_to_the_fleet_api_only_after_teslamate_stale_s(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    """Proves tesla-bridge's README TeslaMate rules with a real process in accelerated time (× 60): while TeslaMate
    reports a charging car there is not one Fleet API data call (the fake API's log is empty of them); when
    TeslaMate falls silent, the first data call comes only after `teslamate_stale_s` (120 s) since its last message
    — and it is the non-waking state call — and `source` of both the vehicle and the car EVSE switches from
    `teslamate` to `fleet_api` no earlier; when TeslaMate is back, `source` returns to `teslamate` and polling
    stops again."""
    clock = SystemClock(SCALE)
    async with (
        FakeFleetApi(clock=clock.time) as api,
        TimedRecorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        TeslaMateSim(mqtt_broker.url, f"{prefix}/teslamate", clock=clock.time) as tm,
    ):
        api.add_car(VIN, state="online", charging_state="Charging", charge_amps=16)
        tm.follow(1, api, VIN)
        await tm.summary(1, **tm.values_of(api.car(VIN), clock.time()))  # TeslaMate knows the car already
        tesla = tesla_section(
            api,
            tmp_path / "state" / "tesla-token.json",
            teslamate_prefix=f"{prefix}/teslamate",
            teslamate_stale_s=STALE_S,
        )
        config = write_config(
            tmp_path / "chargebus.toml",
            {"state_dir": tmp_path / "state", "mqtt": {"ha_discovery": False}, "tesla": tesla},
        )
        setpoint: dict[str, Any] = {
            "v": 1,
            "evse_id": f"car-{VIN}",
            "power_w": 16 * 230.0,
            "charge": True,
            "phases": 1,
            "voltage_v": 230.0,
            "expires_at": "2100-01-01T00:00:00.000Z",
        }
        await bus.publish(f"{prefix}/evse/car-{VIN}/setpoint", json.dumps(setpoint), retain=True)
        process = service_process("tesla-bridge", config, mqtt_broker.url, prefix, scale=SCALE)
        vehicle_topic, evse_topic = f"{prefix}/vehicle/{VIN}/state", f"{prefix}/evse/car-{VIN}/state"
        try:
            async with background(teslamate_feed(tm, period_s=0.1)):
                process.start(tmp_path / "tesla-bridge.log")
                await bus.wait_message(vehicle_topic, lambda m: m.json()["charging_state"] == "Charging", timeout=15)
                # Well past the start-up grace and several re-checks, all on TeslaMate's data alone.
                await asyncio.sleep((STARTUP_GRACE_S + 2 * RECHECK_S) / SCALE)
                assert fleet_calls(api, *POLLS) == []
                assert {source for _t, source in sources(bus, vehicle_topic)} == {"teslamate"}
            silent_since = tm.car(1).last_summary_at
            assert silent_since is not None
            # When the bridge may go stale, on this process's monotonic clock.
            stale_at = time.monotonic() - (clock.time() - silent_since) / SCALE + STALE_S / SCALE

            await bus.wait_for(lambda: fleet_calls(api, *POLLS), timeout=10, what="a Fleet API call")
            first = fleet_calls(api, *POLLS)[0]
            assert first.category == "state"  # the non-waking GET /vehicles/{vin} first
            assert STALE_S - SLACK_S <= first.at - silent_since <= STALE_S + RECHECK_S + LATE_SLACK_S
            await bus.wait_for(lambda: fleet_calls(api, "data"), timeout=10, what="vehicle_data after the state call")
            for topic in (vehicle_topic, evse_topic):
                await bus.wait_for(source_is(bus, topic, "fleet_api"), what=f"fleet_api on {topic}")
                switched = min(t for t, source in sources(bus, topic) if source == "fleet_api")
                assert switched >= stale_at - SLACK_S / SCALE, topic
            assert process.alive()

            async with background(teslamate_feed(tm, period_s=0.1)):
                for topic in (vehicle_topic, evse_topic):
                    await bus.wait_for(source_is(bus, topic, "teslamate"), timeout=10, what=f"teslamate on {topic}")
                await asyncio.sleep(RECHECK_S / SCALE)  # polling stops at the next step ...
                calls = len(fleet_calls(api, *POLLS))
                await asyncio.sleep(2.5 * 120 / SCALE)  # ... so no call in two 2-minute poll periods
                assert len(fleet_calls(api, *POLLS)) == calls
            assert process.alive()
        finally:
            await asyncio.to_thread(process.stop)
            await bus.publish(f"{prefix}/evse/car-{VIN}/setpoint", b"", retain=True)
    assert_clean_log(process)
