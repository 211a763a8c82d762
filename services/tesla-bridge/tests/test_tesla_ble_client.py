"""The client's BLE proxy transport against the fake proxy over real HTTP: no token, not billed, one request at a
time, a per-call timeout, the breaker, and the Fleet API fallback (billed)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from chargebus.clock import FakeClock
from chargebus_sim.fleet_api import FakeFleetApi
from chargebus_tesla.ble import BleSettings, Fallback
from chargebus_tesla.errors import BleUnavailable, RateLimited, VehicleAsleep
from chargebus_tesla.fleet import FleetClient

VIN = "5YJ3E1EA8KF000001"
OTHER_VIN = "5YJ3E1EA8KF000002"
#: Simulated seconds per real second on both sides: the proxy's 3 s latency takes 30 ms, the 30 s timeout 0.3 s.
SCALE = 100.0

ClientFactory = Callable[..., FleetClient]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def api(clock: FakeClock) -> AsyncIterator[FakeFleetApi]:
    async with FakeFleetApi(clock=clock.time, ble_proxy=True, ble_time_scale=SCALE) as fake:
        fake.add_car(VIN, state="online", charging_state="Charging")
        fake.add_car(OTHER_VIN, state="online", charging_state="Stopped")
        yield fake


@pytest.fixture
async def make(api: FakeFleetApi, clock: FakeClock, tmp_path: Path) -> AsyncIterator[ClientFactory]:
    token_file = tmp_path / "tesla-token.json"
    token_file.write_text(json.dumps(api.token_file_content()))
    made: list[FleetClient] = []

    def factory(fallback: Fallback = "none", vins: tuple[str, ...] = (VIN,), **settings: Any) -> FleetClient:
        ble = BleSettings(api.ble_url, fallback=fallback, **settings)
        client = FleetClient(
            api_base=api.url,
            command_base=api.proxy_url,
            token_url=api.token_url,
            client_id=api.client_id,
            token_file=token_file,
            clock=clock,
            rate_limit_file=tmp_path / "tesla-rate-limit.json",
            ble_proxies=dict.fromkeys(vins, ble),
            time_scale=SCALE,
        )
        made.append(client)
        return client

    yield factory
    for client in made:
        await client.aclose()


def counts(client: FleetClient, clock: FakeClock, vin: str = VIN) -> tuple[int, int, int, int, float]:
    calls = client.counter.snapshot(clock.time())[1].get(vin)
    assert calls is not None
    return calls.data, calls.command, calls.wake, calls.ble, calls.billed_usd


async def test_ble_calls_carry_no_token_and_are_counted_as_ble_not_billed(
    api: FakeFleetApi, clock: FakeClock, make: ClientFactory
) -> None:
    client = make()
    assert await client.vehicle_state(VIN) == "online"
    data = await client.vehicle_data(VIN, ["charge_state"])
    assert data["charge_state"]["charging_state"] == "Charging"
    result = await client.set_charging_amps(VIN, 10)
    assert result.result
    assert api.car(VIN).charge_amps == 10
    assert [(c.host, c.category, c.bearer) for c in api.calls] == [
        ("ble", "state", None),
        ("ble", "data", None),
        ("ble", "command", None),
    ]
    assert api.calls[0].path == f"/api/proxy/1/vehicles/{VIN}/body_controller_state"
    assert api.calls[1].query == {"endpoints": "charge_state"}
    assert api.calls[2].query == {"wait": "true"}  # the proxy answers once the car has, not on queueing
    assert counts(client, clock) == (0, 0, 0, 3, 0.0)
    assert client.via(VIN) == "ble_proxy"
    assert client.ble_outage(VIN) is None


async def test_the_state_call_never_wakes_and_a_sleeping_car_is_not_a_failure(
    api: FakeFleetApi, clock: FakeClock, make: ClientFactory
) -> None:
    client = make()
    api.cars[VIN].state = "asleep"
    for _ in range(5):
        assert await client.vehicle_state(VIN) == "asleep"
        with pytest.raises(VehicleAsleep):
            await client.vehicle_data(VIN, ["charge_state"])
    assert api.car(VIN).state == "asleep"
    assert client.ble_outage(VIN) is None  # the proxy reached the car ten times: no breaker failure
    assert counts(client, clock) == (0, 0, 0, 10, 0.0)


async def test_a_wake_over_ble_is_free(api: FakeFleetApi, clock: FakeClock, make: ClientFactory) -> None:
    client = make()
    api.cars[VIN].state = "asleep"
    api.cars[VIN].wakeable = False  # no cellular signal: BLE wakes it all the same
    assert await client.wake_up(VIN) == "asleep"  # waking
    clock.advance(15)
    assert await client.vehicle_state(VIN) == "online"
    assert counts(client, clock) == (0, 0, 0, 2, 0.0)


async def test_a_call_slower_than_the_timeout_is_a_failure(
    api: FakeFleetApi, clock: FakeClock, make: ClientFactory
) -> None:
    client = make(timeout_s=30.0)
    api.ble_latency_s = 100.0  # 1 s real; the client gives up after 0.3 s
    started = time.monotonic()
    with pytest.raises(BleUnavailable, match="no answer within 30 s"):
        await client.vehicle_data(VIN, ["charge_state"])
    assert time.monotonic() - started < 1.5
    assert VIN not in client.counter.snapshot(clock.time())[1]  # no answer, nothing counted
    assert client.ble_outage(VIN) is None  # one failure is no outage


async def test_an_outage_opens_the_breaker_and_without_fallback_nothing_goes_to_tesla(
    api: FakeFleetApi, clock: FakeClock, make: ClientFactory
) -> None:
    client = make(breaker_failures=3, breaker_open_s=300.0)
    api.cars[VIN].ble_in_range = False
    for _ in range(3):
        with pytest.raises(BleUnavailable, match="not in range"):
            await client.vehicle_data(VIN, ["charge_state"])
    outage = client.ble_outage(VIN)
    assert outage is not None
    assert api.ble_url in outage.message
    assert "not in range" in outage.message
    assert "not reached at all" in outage.message
    assert not client.uses_fleet(VIN)
    asked = len(api.calls)
    for _ in range(10):  # paused: refused at once, no request
        with pytest.raises(BleUnavailable, match="paused"):
            await client.charge_stop(VIN)
    assert len(api.calls) == asked
    assert api.billed() == []
    assert api.count("token") == 0
    # The pause ends with the car back in range: the trial gets through and the outage is over.
    api.cars[VIN].ble_in_range = True
    clock.advance(300)
    assert (await client.charge_stop(VIN)).result
    assert client.ble_outage(VIN) is None
    assert api.billed() == []
    assert counts(client, clock) == (0, 0, 0, 4, 0.0)


async def test_fallback_goes_to_the_fleet_api_and_is_billed(
    api: FakeFleetApi, clock: FakeClock, make: ClientFactory
) -> None:
    client = make(fallback="fleet", breaker_failures=2, breaker_open_s=300.0)
    api.cars[VIN].ble_in_range = False
    # A failed BLE call is made again at once through the Fleet API: the data is not lost.
    data = await client.vehicle_data(VIN, ["charge_state"])
    assert data["charge_state"]["charging_state"] == "Charging"
    assert [(c.host, c.status) for c in api.calls] == [("ble", 503), ("fleet", 200)]
    assert client.via(VIN) == "fleet_api"
    assert client.ble_outage(VIN) is None
    assert (await client.charge_stop(VIN)).result  # the second failure opens the breaker
    outage = client.ble_outage(VIN)
    assert outage is not None
    assert "Fleet API (billed)" in outage.message
    assert client.uses_fleet(VIN)
    # While open: straight to the Fleet API (the command through the signing proxy), not a BLE request.
    asked_ble = api.count(host="ble")
    assert await client.vehicle_state(VIN) == "online"
    assert (await client.set_charging_amps(VIN, 8)).result
    assert api.count(host="ble") == asked_ble
    assert [(c.host, c.category) for c in api.billed()] == [
        ("fleet", "data"),
        ("proxy", "command"),
        ("fleet", "state"),
        ("proxy", "command"),
    ]
    assert all(c.bearer == api.access_token for c in api.billed())
    data_calls, commands, wakes, ble, billed = counts(client, clock)
    assert (data_calls, commands, wakes, ble) == (2, 2, 0, 2)
    assert billed == pytest.approx(2 * 0.002 + 2 * 0.001)
    # Tesla's 429 now concerns this car too; once BLE is back it does not.
    api.fail_next(429, retry_after="60", host="fleet")
    with pytest.raises(RateLimited):
        await client.vehicle_state(VIN)
    assert client.rate_limited_until_for(VIN) is not None
    api.cars[VIN].ble_in_range = True
    clock.advance(300)
    assert await client.vehicle_state(VIN) == "online"
    assert client.via(VIN) == "ble_proxy"
    assert client.ble_outage(VIN) is None
    assert client.rate_limited_until_for(VIN) is None


async def test_one_request_at_a_time_per_proxy(api: FakeFleetApi, clock: FakeClock, make: ClientFactory) -> None:
    client = make(vins=(VIN, OTHER_VIN))
    calls = [client.vehicle_data(vin, ["charge_state"]) for vin in (VIN, OTHER_VIN) for _ in range(3)]
    started = time.monotonic()
    results = await asyncio.gather(*calls)
    assert len(results) == 6
    assert api.ble_max_queued == 1  # the proxy never saw a second request while one was open
    assert time.monotonic() - started >= 6 * 3.0 / SCALE * 0.9
    assert counts(client, clock, OTHER_VIN)[3] == 3


async def test_an_unreachable_proxy_is_a_failure(clock: FakeClock, tmp_path: Path) -> None:
    async with FleetClient(
        api_base="http://127.0.0.1:9",
        token_url="http://127.0.0.1:9/token",
        client_id="x",
        token_file=tmp_path / "none.json",
        clock=clock,
        ble_proxies={VIN: BleSettings("http://127.0.0.1:9", breaker_failures=1)},
    ) as client:
        with pytest.raises(BleUnavailable, match="ConnectError"):
            await client.vehicle_state(VIN)
        outage = client.ble_outage(VIN)
        assert outage is not None
        assert "ConnectError" in outage.message
