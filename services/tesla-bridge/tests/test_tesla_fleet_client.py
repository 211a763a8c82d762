"""FleetClient against the fake Fleet API over real HTTP: routing, tokens, 401/408/421/429/5xx, counting."""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from chargebus.clock import FakeClock
from chargebus.config import TeslaConfig
from chargebus_sim.fleet_api import FakeFleetApi, RecordedCall
from chargebus_tesla.errors import (
    AuthFailed,
    CommandProtocolRequired,
    FleetUnavailable,
    RateLimited,
    RegionMismatch,
    VehicleAsleep,
)
from chargebus_tesla.fleet import RATE_LIMIT_FILE, FleetClient, fleet_client_from_config
from chargebus_tesla.ratelimit import DEFAULT_RETRY_AFTER_S
from chargebus_tesla.usage import Category

VIN = "5YJ3E1EA8KF000001"
ClientFactory = Callable[..., FleetClient]


async def wake(sim: FakeFleetApi, clock: FakeClock, client: FleetClient) -> None:
    await client.wake_up(VIN)
    clock.advance(sim.cars[VIN].wake_delay_s)


# -- routing and the happy path ------------------------------------------------------------------------------------


async def test_state_call_does_not_wake_and_counts_as_data(sim: FakeFleetApi, client: FleetClient) -> None:
    assert await client.vehicle_state(VIN) == "asleep"
    assert sim.car(VIN).state == "asleep"
    assert sim.count("state") == 1
    assert client.counter.count(VIN, Category.DATA, sim.calls[0].at) == 1


async def test_vehicle_data_asks_only_for_the_wanted_endpoints(
    sim: FakeFleetApi, clock: FakeClock, client: FleetClient
) -> None:
    await wake(sim, clock, client)
    data = await client.vehicle_data(VIN, ["charge_state", "location_data"])
    assert data["charge_state"]["charging_state"] == "Stopped"
    assert "latitude" in data["drive_state"]
    assert sim.calls[-1].query == {"endpoints": "charge_state;location_data"}


async def test_commands_go_to_the_proxy_and_data_to_the_fleet_host(
    sim: FakeFleetApi, clock: FakeClock, client: FleetClient
) -> None:
    await wake(sim, clock, client)
    result = await client.charge_start(VIN)
    assert result.result
    await client.set_charging_amps(VIN, 10)
    await client.vehicle_data(VIN, ["charge_state"])
    assert sim.count("command", host="proxy") == 2
    assert sim.count("command", host="fleet") == 0
    assert sim.count("data", host="fleet") == 1
    assert sim.car(VIN).charge_amps == 10
    assert sim.calls[-2].body == {"charging_amps": 10}


async def test_a_car_refusal_is_a_result_not_an_error(sim: FakeFleetApi, clock: FakeClock, client: FleetClient) -> None:
    await wake(sim, clock, client)
    sim.car(VIN).unplug()
    result = await client.charge_start(VIN)
    assert not result.result
    assert result.reason == "disconnected"


async def test_unsigned_command_to_the_fleet_host_is_a_clear_error(
    sim: FakeFleetApi, clock: FakeClock, make_client: ClientFactory
) -> None:
    client = make_client(command_base=None)
    await wake(sim, clock, client)
    with pytest.raises(CommandProtocolRequired, match="command_base"):
        await client.charge_start(VIN)


async def test_calls_are_counted_by_category_and_priced(
    sim: FakeFleetApi, clock: FakeClock, client: FleetClient
) -> None:
    await wake(sim, clock, client)
    await client.vehicle_data(VIN, ["charge_state"])
    await client.charge_start(VIN)
    _, cars = client.counter.snapshot(clock.time())
    assert (cars[VIN].data, cars[VIN].command, cars[VIN].wake, cars[VIN].ble) == (1, 1, 1, 0)
    assert cars[VIN].billed_usd == pytest.approx(0.002 + 0.001 + 0.02)
    assert cars[VIN].last_call_at == clock.time()


# -- tokens ---------------------------------------------------------------------------------------------------------


async def test_401_refreshes_once_and_retries_once(sim: FakeFleetApi, client: FleetClient, token_file: Path) -> None:
    sim.expire_access_token()
    assert await client.vehicle_state(VIN) == "asleep"
    assert [call.category for call in sim.calls] == ["state", "token", "state"]
    assert [call.status for call in sim.calls] == [401, 200, 200]
    token_call = sim.calls[1]
    assert token_call.body["grant_type"] == "refresh_token"
    assert token_call.body["refresh_token"] == "refresh-0"
    assert sim.calls[2].bearer == sim.access_token
    assert json.loads(token_file.read_text())["refresh_token"] == sim.refresh_token == "refresh-1"


async def test_the_new_refresh_token_is_used_next_time(
    sim: FakeFleetApi, make_client: ClientFactory, token_file: Path
) -> None:
    sim.expire_access_token()
    await make_client().vehicle_state(VIN)
    sim.expire_access_token()
    await make_client().vehicle_state(VIN)  # a restart: only the file carries the rotated token
    refresh_tokens = [call.body["refresh_token"] for call in sim.calls if call.category == "token"]
    assert refresh_tokens == ["refresh-0", "refresh-1"]
    assert json.loads(token_file.read_text())["refresh_token"] == "refresh-2"


async def test_concurrent_401s_share_one_refresh(sim: FakeFleetApi, client: FleetClient) -> None:
    sim.expire_access_token()
    sim.token_delay_s = 0.05  # every call is waiting on the refresh while it is in flight
    states = await asyncio.gather(*(client.vehicle_state(VIN) for _ in range(8)))
    assert states == ["asleep"] * 8
    assert sim.count("token") == 1
    assert all(call.bearer == "access-1" for call in sim.calls if call.status == 200 and call.category == "state")


async def test_concurrent_proactive_refresh_is_single_flight(
    sim: FakeFleetApi, clock: FakeClock, make_client: ClientFactory, token_file: Path
) -> None:
    token_file.write_text(json.dumps(sim.token_file_content(expires_at=clock.time() + 600)))
    client = make_client()
    sim.token_delay_s = 0.05
    await asyncio.gather(*(client.vehicle_state(VIN) for _ in range(8)))
    assert sim.count("token") == 1
    assert [call.status for call in sim.calls if call.category == "state"] == [200] * 8


async def test_token_file_is_replaced_atomically_0600_before_the_new_token_is_used(
    sim: FakeFleetApi, client: FleetClient, token_file: Path
) -> None:
    inode_before = token_file.stat().st_ino
    seen: list[dict[str, object]] = []

    def check_file(call: RecordedCall) -> None:
        if call.category != "token" and call.bearer == "access-1":
            seen.append(json.loads(token_file.read_text()))
            assert stat.S_IMODE(token_file.stat().st_mode) == 0o600

    sim.on_request(check_file)
    sim.expire_access_token()
    await client.vehicle_state(VIN)
    assert seen
    assert seen[0]["access_token"] == "access-1"
    assert seen[0]["refresh_token"] == "refresh-1"
    assert token_file.stat().st_ino != inode_before  # a new file renamed into place, not rewritten in place
    assert sorted(path.name for path in token_file.parent.iterdir()) == ["tesla-token.json"]


async def test_401_after_the_refresh_stops_without_a_loop(sim: FakeFleetApi, client: FleetClient) -> None:
    sim.fail_next(401, times=2, category="state")
    with pytest.raises(AuthFailed, match="after a refresh"):
        await client.vehicle_state(VIN)
    assert [call.category for call in sim.calls] == ["state", "token", "state"]
    calls = len(sim.calls)
    with pytest.raises(AuthFailed):
        await client.vehicle_state(VIN)
    assert len(sim.calls) == calls  # no request while the tokens are known bad


async def test_refused_refresh_needs_a_new_token_file_then_recovers(
    sim: FakeFleetApi, client: FleetClient, token_file: Path
) -> None:
    sim.expire_access_token()
    sim.refresh_token = "spent-elsewhere"  # e.g. another program used our refresh token
    with pytest.raises(AuthFailed, match="login_required"):
        await client.vehicle_state(VIN)
    assert client.tokens.failure is not None
    calls = len(sim.calls)
    with pytest.raises(AuthFailed):
        await client.vehicle_state(VIN)
    assert len(sim.calls) == calls
    token_file.write_text(json.dumps(sim.token_file_content()))  # the user seeds fresh tokens
    assert await client.vehicle_state(VIN) == "asleep"
    assert client.tokens.failure is None


async def test_missing_token_file_is_a_clear_auth_error(tmp_path: Path, make_client: ClientFactory) -> None:
    client = make_client(token_file=tmp_path / "absent.json")
    with pytest.raises(AuthFailed, match="does not exist"):
        await client.vehicle_state(VIN)


async def test_tokens_never_appear_in_logs(
    sim: FakeFleetApi, client: FleetClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    sim.expire_access_token()
    await client.vehicle_state(VIN)
    assert "tesla_token_refreshed" in caplog.text
    for secret in ("access-0", "access-1", "refresh-0", "refresh-1"):
        assert secret not in caplog.text
    assert "refresh-1" not in repr(client.tokens._tokens)


# -- 408, 421, 429, 5xx ------------------------------------------------------------------------------------------


async def test_408_means_asleep_and_is_not_retried(sim: FakeFleetApi, client: FleetClient) -> None:
    with pytest.raises(VehicleAsleep):
        await client.vehicle_data(VIN, ["charge_state"])
    with pytest.raises(VehicleAsleep):
        await client.set_charging_amps(VIN, 10)
    assert [call.status for call in sim.calls] == [408, 408]
    assert sim.count("wake") == 0


async def test_421_is_a_region_error_naming_the_right_host(sim: FakeFleetApi, client: FleetClient) -> None:
    sim.fail_next(421, alt_svc='h2="fleet-api.prd.eu.vn.cloud.tesla.com:443"; ma=86400')
    with pytest.raises(RegionMismatch, match="api_base") as caught:
        await client.vehicle_state(VIN)
    assert caught.value.suggested_host == "fleet-api.prd.eu.vn.cloud.tesla.com"
    assert sim.url in str(caught.value)
    assert len(sim.calls) == 1


async def test_429_honours_retry_after_across_a_restart(
    sim: FakeFleetApi, clock: FakeClock, make_client: ClientFactory
) -> None:
    client = make_client()
    sim.fail_next(429, retry_after="30")
    with pytest.raises(RateLimited) as caught:
        await client.vehicle_state(VIN)
    assert caught.value.until == clock.time() + 30
    assert client.rate_limited_until == clock.time() + 30
    clock.advance(10)
    with pytest.raises(RateLimited):
        await client.vehicle_state(VIN)
    restarted = make_client()
    with pytest.raises(RateLimited):
        await restarted.charge_start(VIN)
    assert len(sim.calls) == 1  # nothing reached Tesla while blocked
    clock.advance(20)
    assert await restarted.vehicle_state(VIN) == "asleep"


async def test_429_without_retry_after_waits_the_default(
    sim: FakeFleetApi, clock: FakeClock, client: FleetClient
) -> None:
    sim.fail_next(429)
    with pytest.raises(RateLimited) as caught:
        await client.vehicle_state(VIN)
    assert caught.value.until == clock.time() + DEFAULT_RETRY_AFTER_S


async def test_5xx_is_retried_with_growing_jittered_backoff(
    sim: FakeFleetApi, client: FleetClient, backoff_delays: list[float]
) -> None:
    sim.fail_next(503, times=2)
    assert await client.vehicle_state(VIN) == "asleep"
    assert [call.status for call in sim.calls] == [503, 503, 200]
    assert backoff_delays == [1.5, 3.0]  # base 2 s doubling, times the jitter factor 0.75


async def test_persistent_5xx_gives_up_unbilled(
    sim: FakeFleetApi, clock: FakeClock, client: FleetClient, backoff_delays: list[float]
) -> None:
    sim.fail_next(500, times=10)
    with pytest.raises(FleetUnavailable):
        await client.vehicle_state(VIN)
    assert len(sim.calls) == 4
    assert len(backoff_delays) == 3
    _, cars = client.counter.snapshot(clock.time())
    assert cars[VIN].data == 4
    assert cars[VIN].billed_usd == 0


async def test_jitter_spreads_the_backoff(
    sim: FakeFleetApi, make_client: ClientFactory, backoff_delays: list[float]
) -> None:
    values = iter([0.0, 0.999])
    client = make_client(jitter=lambda: next(values))
    sim.fail_next(502, times=2)
    await client.vehicle_state(VIN)
    assert backoff_delays[0] == pytest.approx(1.0)
    assert backoff_delays[1] == pytest.approx(4.0 * 0.9995)


async def test_network_failure_is_retried_then_unavailable(
    clock: FakeClock, make_client: ClientFactory, backoff_delays: list[float]
) -> None:
    client = make_client(api_base="http://127.0.0.1:9", max_retries=2)
    with pytest.raises(FleetUnavailable, match="ConnectError"):
        await client.vehicle_state(VIN)
    assert len(backoff_delays) == 2


async def test_client_from_config_routes_ble_cars_and_keeps_state_in_state_dir(
    sim: FakeFleetApi, clock: FakeClock, token_file: Path, tmp_path: Path
) -> None:
    ble_vin = "5YJ3E1EA8KF000002"
    tesla = TeslaConfig.model_validate(
        {
            "api_base": sim.url,
            "command_base": sim.proxy_url,
            "token_url": sim.token_url,
            "client_id": sim.client_id,
            "token_file": str(token_file),
            "prices": {"data": 0.01},
            "vehicles": [
                {"vin": VIN},
                {"vin": ble_vin, "transport": "ble_proxy", "ble_proxy_url": "http://127.0.0.1:9"},
            ],
        }
    )
    async with fleet_client_from_config(tesla, state_dir=tmp_path, clock=clock) as client:
        sim.fail_next(429, retry_after="60")
        with pytest.raises(RateLimited):
            await client.vehicle_state(VIN)
        assert (tmp_path / RATE_LIMIT_FILE).exists()
        # Tesla's 429 concerns the Fleet API car only: the BLE car's proxy is not Tesla.
        assert client.rate_limited_until_for(VIN) == pytest.approx(clock.time() + 60)
        assert client.rate_limited_until_for(ble_vin) is None
        assert client.uses_fleet(VIN)
        assert not client.uses_fleet(ble_vin)
        assert client.via(ble_vin) == "ble_proxy"
        assert client.counter.snapshot(clock.time())[1][VIN].billed_usd == pytest.approx(0.01)
