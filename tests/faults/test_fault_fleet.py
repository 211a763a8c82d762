"""The Tesla Fleet API goes away, answers 5xx, and rate-limits with Retry-After under a running tesla-bridge
process (issue 9.2). The bridge runs in accelerated time (`CHARGEBUS_TIME_SCALE` = 120: its 2-minute poll of a
charging car under control is 1 s), with no TeslaMate, so every fact comes from the (fake) Fleet API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from chargebus.clock import SystemClock
from chargebus_sim.fleet_api import FakeFleetApi

from tests.faults.fault_support import (
    VIN,
    TcpGate,
    assert_clean_log,
    fleet_calls,
    last_json,
    service_process,
    tesla_section,
    write_config,
)
from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Recorder, ServiceProcess

SCALE = 120.0
#: Simulated seconds of slack when comparing the fake API's clock with the bridge's (same scale, other origin).
SLACK_S = 3.0
#: The storm: three 429 answers in a row, each with its own Retry-After (simulated seconds), all longer than the
#: 120 s poll cadence so that only honouring the header explains the gaps.
RETRY_AFTER_S = (300, 180, 240)


@dataclass
class Bridge:
    process: ServiceProcess
    api: FakeFleetApi
    gates: tuple[TcpGate, TcpGate]
    bus: Recorder
    clock: SystemClock
    prefix: str

    def topic(self, rest: str) -> str:
        return f"{self.prefix}/{rest}"

    def errors(self) -> list[dict[str, Any]]:
        return [m.json() for m in self.bus.on(self.topic("tesla-bridge/error"))]

    def answered_data(self, since: float = float("-inf")) -> int:
        return len([c for c in fleet_calls(self.api, "data", since=since) if c.status == 200])


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


@pytest.fixture
async def bridge(mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path) -> AsyncIterator[Bridge]:
    """A car charging at 16 A under a setpoint that never expires, the bridge reaching the fake API (data host and
    command proxy) through gates that a test can cut."""
    clock = SystemClock(SCALE)
    async with FakeFleetApi(clock=clock.time) as api:
        api.add_car(VIN, state="online", charging_state="Charging", charge_amps=16)
        async with (
            TcpGate(port_of(api.url)) as data_gate,
            TcpGate(port_of(api.proxy_url)) as proxy_gate,
            Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus,
        ):
            tesla = tesla_section(
                api,
                tmp_path / "state" / "tesla-token.json",
                api_base=data_gate.url,
                command_base=proxy_gate.url,
                token_url=f"{data_gate.url}/oauth2/v3/token",
                teslamate_prefix="",
            )
            document = {"state_dir": tmp_path / "state", "mqtt": {"ha_discovery": False}, "tesla": tesla}
            config = write_config(tmp_path / "chargebus.toml", document)
            setpoint = {
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
            process.start(tmp_path / "tesla-bridge.log")
            running = Bridge(process, api, (data_gate, proxy_gate), bus, clock, prefix)
            try:
                await bus.wait_message(running.topic("tesla-bridge/status"), lambda m: m.text == "online", timeout=15)
                await bus.wait_for(lambda: running.answered_data() >= 2, timeout=20, what="two vehicle_data polls")
                yield running
            finally:
                await asyncio.to_thread(process.stop)  # the fake API in this loop keeps answering meanwhile
                await bus.publish(f"{prefix}/evse/car-{VIN}/setpoint", b"", retain=True)
        assert_clean_log(process)


def vehicle(bridge: Bridge) -> dict[str, Any]:
    state: dict[str, Any] = last_json(bridge.bus, bridge.topic(f"vehicle/{VIN}/state"))
    return state


async def test_fleet_api_unreachable_then_5xx_is_reported_once_each_and_the_bridge_recovers(bridge: Bridge) -> None:
    """Proves tesla-bridge's README error handling against a real outage: with the data host and the command proxy
    gone (connections refused) for 3 s (6 simulated minutes, 3 polls with their retries) the process keeps running
    and reports exactly one ErrorEvent (topic: the car's state topic, payload null); when the host is back the next
    poll succeeds and the state shows what changed meanwhile. A following 5xx burst is a new outage: one more
    ErrorEvent, retried a bounded number of times (at most 1 + 3 requests per poll), then recovery again."""
    assert vehicle(bridge)["source"] == "fleet_api"
    for gate in bridge.gates:
        await gate.cut()
    cut_at = bridge.clock.time()
    bridge.api.car(VIN).charge_limit_soc = 90  # the user changed it in the app meanwhile
    await bridge.bus.wait_for(bridge.errors, timeout=10, what="the outage reported")
    await asyncio.sleep(3.0)
    (outage,) = bridge.errors()
    assert outage["topic"] == bridge.topic(f"evse/car-{VIN}/state")
    assert outage["payload"] is None
    assert "unavailable" in outage["error"]
    assert bridge.process.alive()
    assert bridge.answered_data(since=cut_at) == 0

    for gate in bridge.gates:
        await gate.restore()
    restored_at = bridge.clock.time()
    await bridge.bus.wait_for(
        lambda: vehicle(bridge)["charge_limit_pct"] == 90, timeout=10, what="fresh data after the outage"
    )
    assert bridge.answered_data(since=restored_at) >= 1
    assert len(bridge.errors()) == 1  # recovery is no error

    bridge.api.fail_next(503, times=8)  # two polls' worth of 1 + 3 attempts
    fail_from = bridge.clock.time()
    await bridge.bus.wait_for(lambda: len(bridge.errors()) == 2, timeout=10, what="the 5xx outage reported")
    await bridge.bus.wait_for(
        lambda: bridge.answered_data(since=fail_from) >= 1, timeout=15, what="a poll answered after the 5xx burst"
    )
    failed = [c for c in fleet_calls(bridge.api, since=fail_from) if c.status == 503]
    assert len(failed) == 8
    bursts: list[list[float]] = []  # one poll's attempts lie within its backoff (≤ 14 s); polls are 120 s apart
    for call in failed:
        if bursts and call.at - bursts[-1][0] <= 60:
            bursts[-1].append(call.at)
        else:
            bursts.append([call.at])
    assert [len(b) for b in bursts] == [4, 4]
    await asyncio.sleep(1.0)
    errors = bridge.errors()
    assert len(errors) == 2
    assert "503" in errors[1]["error"]
    assert bridge.process.alive()


async def test_a_429_storm_is_honoured_to_the_second_reported_once_and_survived(bridge: Bridge) -> None:
    """Proves the Retry-After rule (README: no request to Tesla at all until it has passed) from the fake API's own
    request log: three 429 answers in a row with `Retry-After` 300, 180 and 240 s (all longer than the 120 s poll
    cadence); after each one the next request of any kind reaches the API only once its own Retry-After is over;
    the Usage topic shows `rate_limited_until`; the storm is reported once when it starts and once when it ends
    (never once per 429, nor per suppressed attempt); then polling resumes and the car's state is fresh again, with
    the process alive throughout."""
    for seconds in RETRY_AFTER_S:
        bridge.api.fail_next(429, retry_after=str(seconds))
    storm_from = bridge.clock.time()
    await bridge.bus.wait_for(
        lambda: len([c for c in fleet_calls(bridge.api, since=storm_from) if c.status == 429]) == 3,
        timeout=20,
        what="three 429 answers",
    )
    await bridge.bus.wait_for(
        lambda: bridge.answered_data(since=storm_from) >= 1, timeout=10, what="polling after the storm"
    )
    calls = fleet_calls(bridge.api, since=storm_from)
    limited = [i for i, call in enumerate(calls) if call.status == 429]
    assert len(limited) == 3
    for i, retry_after in zip(limited, RETRY_AFTER_S, strict=True):
        follower = calls[i + 1]  # the very next request the API saw, whatever its kind
        assert retry_after - SLACK_S <= follower.at - calls[i].at <= retry_after + 60, (calls[i], follower)
    usage = [m.json() for m in bridge.bus.on(bridge.topic("tesla-bridge/usage"))]
    assert any(u["rate_limited_until"] is not None for u in usage)
    await asyncio.sleep(1.0)
    errors = bridge.errors()
    assert len(errors) == 2, errors
    assert "rate limited by Tesla until" in errors[0]["error"]
    assert "rate limit by Tesla over" in errors[1]["error"]
    assert "3 answered 429" in errors[1]["error"]
    assert bridge.process.alive()
