"""The fake Fleet API behaves like the parts of Tesla's that the tesla-bridge relies on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from chargebus.clock import FakeClock
from chargebus_sim.fleet_api import SLEEP_AFTER_IDLE_S, FakeFleetApi

VIN = "5YJ3E1EA8KF000001"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[FakeFleetApi]:
    async with FakeFleetApi(clock=clock.time) as api:
        api.add_car(VIN)
        yield api


@pytest.fixture
async def http(sim: FakeFleetApi) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {sim.access_token}"}) as client:
        yield client


async def call(http: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    response = await http.request(method, url, **kwargs)
    return response.status_code, response.json()


async def test_binds_loopback_on_free_ports(sim: FakeFleetApi) -> None:
    assert sim.url.startswith("http://127.0.0.1:")
    assert sim.proxy_url.startswith("http://127.0.0.1:")
    assert sim.url != sim.proxy_url


async def test_asleep_car_answers_state_but_408_for_data_and_commands(
    sim: FakeFleetApi, http: httpx.AsyncClient
) -> None:
    status, body = await call(http, "GET", f"{sim.url}/api/1/vehicles/{VIN}")
    assert (status, body["response"]["state"]) == (200, "asleep")
    status, body = await call(http, "GET", f"{sim.url}/api/1/vehicles/{VIN}/vehicle_data")
    assert status == 408
    assert body["error"].startswith("vehicle unavailable:")
    status, _ = await call(http, "POST", f"{sim.proxy_url}/api/1/vehicles/{VIN}/command/charge_start", json={})
    assert status == 408
    assert [c.category for c in sim.calls] == ["state", "data", "command"]


async def test_wake_up_brings_the_car_online_after_a_delay(
    sim: FakeFleetApi, clock: FakeClock, http: httpx.AsyncClient
) -> None:
    status, body = await call(http, "POST", f"{sim.url}/api/1/vehicles/{VIN}/wake_up")
    assert (status, body["response"]["state"]) == (200, "asleep")
    clock.advance(sim.cars[VIN].wake_delay_s)
    _, body = await call(http, "GET", f"{sim.url}/api/1/vehicles/{VIN}")
    assert body["response"]["state"] == "online"
    assert sim.count("wake") == 1


async def test_an_unreachable_car_does_not_wake(sim: FakeFleetApi, clock: FakeClock, http: httpx.AsyncClient) -> None:
    sim.cars[VIN].wakeable = False
    await http.post(f"{sim.url}/api/1/vehicles/{VIN}/wake_up")
    clock.advance(600)
    assert sim.car(VIN).state == "asleep"


def test_no_address_before_start() -> None:
    with pytest.raises(RuntimeError, match="start"):
        _ = FakeFleetApi().url


async def test_car_sleeps_after_quiet_minutes_and_state_calls_do_not_keep_it_awake(
    sim: FakeFleetApi, clock: FakeClock, http: httpx.AsyncClient
) -> None:
    sim.cars[VIN].state = "online"
    clock.advance(SLEEP_AFTER_IDLE_S - 60)
    await call(http, "GET", f"{sim.url}/api/1/vehicles/{VIN}")
    clock.advance(60)
    assert sim.car(VIN).state == "asleep"


async def test_vehicle_data_keeps_the_car_awake(sim: FakeFleetApi, clock: FakeClock, http: httpx.AsyncClient) -> None:
    sim.cars[VIN].state = "online"
    clock.advance(SLEEP_AFTER_IDLE_S - 60)
    status, body = await call(
        http, "GET", f"{sim.url}/api/1/vehicles/{VIN}/vehicle_data", params={"endpoints": "charge_state"}
    )
    assert status == 200
    assert "charge_state" in body["response"]
    assert "drive_state" not in body["response"]
    clock.advance(60)
    assert sim.car(VIN).state == "online"


async def test_charging_raises_soc_until_the_limit(
    sim: FakeFleetApi, clock: FakeClock, http: httpx.AsyncClient
) -> None:
    car = sim.cars[VIN]
    car.state, car.battery_level, car.charge_limit_soc, car.charge_amps = "online", 50.0, 60, 16
    status, body = await call(http, "POST", f"{sim.proxy_url}/api/1/vehicles/{VIN}/command/charge_start", json={})
    assert (status, body["response"]) == (200, {"result": True, "reason": ""})
    clock.advance(3600)  # 16 A x 230 V = 3.68 kWh, about 4.9 % of 75 kWh
    _, body = await call(http, "GET", f"{sim.url}/api/1/vehicles/{VIN}/vehicle_data")
    charge = body["response"]["charge_state"]
    assert charge["charging_state"] == "Charging"
    assert charge["battery_level"] == 55
    assert charge["charge_energy_added"] == pytest.approx(3.68)
    assert charge["charger_actual_current"] == 16
    clock.advance(3 * 3600)
    assert sim.car(VIN).charging_state == "Complete"
    assert sim.car(VIN).battery_level >= 60


async def test_refusals_like_a_real_car(sim: FakeFleetApi, http: httpx.AsyncClient) -> None:
    car = sim.cars[VIN]
    car.state = "online"
    command = f"{sim.proxy_url}/api/1/vehicles/{VIN}/command"
    _, body = await call(http, "POST", f"{command}/charge_stop", json={})
    assert body["response"] == {"result": False, "reason": "not_charging"}
    _, body = await call(http, "POST", f"{command}/set_charge_limit", json={"percent": 80})
    assert body["response"] == {"result": False, "reason": "already_set"}
    car.unplug()
    _, body = await call(http, "POST", f"{command}/charge_start", json={})
    assert body["response"] == {"result": False, "reason": "disconnected"}


async def test_low_amps_take_effect_only_when_sent_twice(sim: FakeFleetApi, http: httpx.AsyncClient) -> None:
    sim.cars[VIN].state = "online"
    url = f"{sim.proxy_url}/api/1/vehicles/{VIN}/command/set_charging_amps"
    await call(http, "POST", url, json={"charging_amps": 3})
    assert sim.car(VIN).charge_amps == 5
    await call(http, "POST", url, json={"charging_amps": 3})
    assert sim.car(VIN).charge_amps == 3
    await call(http, "POST", url, json={"charging_amps": 12})
    assert sim.car(VIN).charge_amps == 12


async def test_fleet_host_demands_signed_commands(sim: FakeFleetApi, http: httpx.AsyncClient) -> None:
    sim.cars[VIN].state = "online"
    status, body = await call(http, "POST", f"{sim.url}/api/1/vehicles/{VIN}/command/charge_start", json={})
    assert status == 403
    assert "Vehicle Command Protocol required" in body["error"]
    sim.cars[VIN].signing_required = False  # a pre-2021 Model S/X
    status, _ = await call(http, "POST", f"{sim.url}/api/1/vehicles/{VIN}/command/charge_start", json={})
    assert status == 200


async def test_refresh_tokens_are_single_use(sim: FakeFleetApi) -> None:
    form = {"grant_type": "refresh_token", "client_id": sim.client_id, "refresh_token": sim.refresh_token}
    async with httpx.AsyncClient() as http:
        first = await http.post(sim.token_url, data=form)
        assert first.status_code == 200
        assert first.json()["refresh_token"] == sim.refresh_token != form["refresh_token"]
        again = await http.post(sim.token_url, data=form)
        assert (again.status_code, again.json()["error"]) == (401, "login_required")
        old = await http.get(f"{sim.url}/api/1/vehicles", headers={"Authorization": "Bearer access-0"})
        assert old.status_code == 401


async def test_expired_access_token_answers_401(sim: FakeFleetApi, http: httpx.AsyncClient) -> None:
    sim.expire_access_token()
    status, body = await call(http, "GET", f"{sim.url}/api/1/vehicles")
    assert (status, body["error"]) == (401, "token expired (401)")


async def test_injected_faults_carry_their_headers(sim: FakeFleetApi, http: httpx.AsyncClient) -> None:
    sim.fail_next(429, retry_after="30", category="state")
    sim.fail_next(421, alt_svc='h2="fleet-api.prd.eu.vn.cloud.tesla.com:443"')
    sim.fail_next(503, times=2)
    listed = await http.get(f"{sim.url}/api/1/vehicles")
    assert listed.status_code == 421
    assert "fleet-api.prd.eu" in listed.headers["Alt-Svc"]
    limited = await http.get(f"{sim.url}/api/1/vehicles/{VIN}")
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "30")
    statuses = [(await http.get(f"{sim.url}/api/1/vehicles")).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]


async def test_every_call_is_recorded_by_category_and_host(sim: FakeFleetApi, http: httpx.AsyncClient) -> None:
    await http.get(f"{sim.url}/api/1/vehicles")
    await http.get(f"{sim.url}/api/1/vehicles/{VIN}")
    await http.post(f"{sim.url}/api/1/vehicles/{VIN}/wake_up")
    await http.post(f"{sim.proxy_url}/api/1/vehicles/{VIN}/command/charge_stop", json={})
    assert [sim.count(c) for c in ("list", "state", "wake", "command", "data")] == [1, 1, 1, 1, 0]
    assert sim.count(host="proxy") == 1
    assert sim.count(vin=VIN) == 3


async def test_unknown_vehicle_is_404(sim: FakeFleetApi, http: httpx.AsyncClient) -> None:
    status, body = await call(http, "GET", f"{sim.url}/api/1/vehicles/5YJ3E1EA8KF999999")
    assert (status, body["error"]) == (404, "not_found")


# -- proxy mode: a BLE command proxy (TeslaBleHttpProxy) in front of the same cars ----------------------------------

#: Simulated seconds per real second: the proxy's default 3 s latency takes 30 ms here.
BLE_SCALE = 100.0


@pytest.fixture
async def ble(clock: FakeClock) -> AsyncIterator[FakeFleetApi]:
    async with FakeFleetApi(clock=clock.time, ble_proxy=True, ble_time_scale=BLE_SCALE) as api:
        api.add_car(VIN, state="online", charging_state="Stopped")
        yield api


async def ble_call(api: FakeFleetApi, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    async with httpx.AsyncClient() as plain:  # no token: a BLE proxy holds the car's key itself
        response = await plain.request(method, f"{api.ble_url}{path}", **kwargs)
    return response.status_code, response.json()


def test_no_ble_listener_unless_asked() -> None:
    with pytest.raises(RuntimeError, match="start"):
        _ = FakeFleetApi().ble_url


async def test_ble_proxy_answers_in_its_own_envelope_without_a_token(ble: FakeFleetApi) -> None:
    assert ble.ble_url not in (ble.url, ble.proxy_url)
    status, body = await ble_call(
        ble, "GET", f"/api/1/vehicles/{VIN}/vehicle_data", params={"endpoints": "charge_state"}
    )
    assert status == 200
    envelope = body["response"]
    assert (envelope["result"], envelope["vin"], envelope["command"]) == (True, VIN, "vehicle_data")
    assert envelope["response"]["charge_state"]["charging_state"] == "Stopped"
    status, body = await ble_call(
        ble, "POST", f"/api/1/vehicles/{VIN}/command/set_charging_amps?wait=true", json={"charging_amps": "7"}
    )
    assert (status, body["response"]["result"]) == (200, True)
    assert ble.car(VIN).charge_amps == 7  # numbers as strings, as the proxy's README sends them
    assert [(c.host, c.category, c.bearer) for c in ble.calls] == [("ble", "data", None), ("ble", "command", None)]
    assert ble.billed() == []


async def test_ble_sleep_state_never_wakes_and_data_needs_an_awake_car(ble: FakeFleetApi, clock: FakeClock) -> None:
    car = ble.cars[VIN]
    car.state = "asleep"
    path = f"/api/proxy/1/vehicles/{VIN}/body_controller_state"
    status, body = await ble_call(ble, "GET", path)
    assert status == 200
    assert body["response"]["response"]["vehicleSleepStatus"] == "VEHICLE_SLEEP_STATUS_ASLEEP"
    status, body = await ble_call(ble, "GET", f"/api/1/vehicles/{VIN}/vehicle_data")
    assert (status, body["response"]["result"], body["response"]["reason"]) == (503, False, "vehicle is sleeping")
    assert ble.car(VIN).state == "asleep"
    # wake_up over BLE works without the car's cellular link, after the car's wake delay.
    car.wakeable = False
    status, _ = await ble_call(ble, "POST", f"/api/1/vehicles/{VIN}/command/wake_up?wait=true", json={})
    assert status == 200
    clock.advance(car.wake_delay_s)
    _, body = await ble_call(ble, "GET", path)
    assert body["response"]["response"]["vehicleSleepStatus"] == "VEHICLE_SLEEP_STATUS_AWAKE"
    assert [c.category for c in ble.calls] == ["state", "data", "wake", "state"]


async def test_ble_state_calls_do_not_keep_the_car_awake(ble: FakeFleetApi, clock: FakeClock) -> None:
    clock.advance(SLEEP_AFTER_IDLE_S - 60)
    await ble_call(ble, "GET", f"/api/proxy/1/vehicles/{VIN}/body_controller_state")
    clock.advance(60)
    assert ble.car(VIN).state == "asleep"


async def test_a_ble_command_wakes_the_car_and_refusals_are_swallowed(ble: FakeFleetApi) -> None:
    ble.cars[VIN].state = "asleep"
    status, body = await ble_call(ble, "POST", f"/api/1/vehicles/{VIN}/command/charge_start", json={})
    assert (status, body["response"]["result"]) == (200, True)
    assert ble.car(VIN).charging_state == "Charging"
    # The car refuses (it already charges), but TeslaBleHttpProxy only reports that it processed the command.
    status, body = await ble_call(ble, "POST", f"/api/1/vehicles/{VIN}/command/charge_start", json={})
    assert (status, body["response"]["result"]) == (200, True)
    status, body = await ble_call(ble, "POST", f"/api/1/vehicles/{VIN}/command/honk_horn", json={})
    assert (status, body["response"]["result"]) == (503, False)


async def test_ble_not_in_range_is_503(ble: FakeFleetApi) -> None:
    ble.cars[VIN].ble_in_range = False
    for path in (f"/api/1/vehicles/{VIN}/vehicle_data", f"/api/proxy/1/vehicles/{VIN}/body_controller_state"):
        status, body = await ble_call(ble, "GET", path)
        assert status == 503
        assert body["response"]["result"] is False
        assert body["response"]["reason"].startswith("Vehicle is not in range")
    status, _ = await ble_call(ble, "GET", "/api/1/vehicles/5YJ3E1EA8KF999999/vehicle_data")
    assert status == 503  # an unknown car has no beacon either


async def test_ble_latency_is_scalable_and_requests_queue_one_at_a_time(ble: FakeFleetApi) -> None:
    ble.ble_latency_s = 5.0  # 50 ms each at this scale
    path = f"/api/proxy/1/vehicles/{VIN}/body_controller_state"
    started = time.monotonic()
    results = await asyncio.gather(*(ble_call(ble, "GET", path) for _ in range(4)))
    elapsed = time.monotonic() - started
    assert [status for status, _ in results] == [200] * 4
    assert elapsed >= 4 * 5.0 / BLE_SCALE * 0.9  # served one after the other
    assert ble.ble_max_in_service == 1
    assert ble.ble_max_queued == 4
    ble.ble_time_scale = 1e6
    started = time.monotonic()
    await ble_call(ble, "GET", path)
    assert time.monotonic() - started < 1.0


async def test_faults_can_target_one_host(ble: FakeFleetApi) -> None:
    ble.fail_next(503, host="ble")
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {ble.access_token}"}) as tesla:
        status, _ = await call(tesla, "GET", f"{ble.url}/api/1/vehicles/{VIN}")
    assert status == 200  # the fault waits for a BLE request
    status, body = await ble_call(ble, "GET", f"/api/1/vehicles/{VIN}/vehicle_data")
    assert status == 503
    assert body["response"] is None
