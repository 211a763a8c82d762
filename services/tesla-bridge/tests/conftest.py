"""Fixtures for the tesla-bridge tests: a fake clock, the fake Fleet API over real HTTP, a seeded token file."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from chargebus.clock import FakeClock
from chargebus_sim.fleet_api import FakeFleetApi
from chargebus_tesla.fleet import FleetClient

VIN = "5YJ3E1EA8KF000001"


class RecordingSleep:
    """An injectable sleep that returns at once, advancing the fake clock and remembering each delay."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await self.clock.sleep(seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[FakeFleetApi]:
    api = FakeFleetApi(clock=clock.time)
    api.add_car(VIN)
    await api.start()
    yield api
    await api.stop()


@pytest.fixture
def token_file(tmp_path: Path, sim: FakeFleetApi) -> Path:
    path = tmp_path / "state" / "tesla-token.json"
    path.parent.mkdir()
    path.write_text(json.dumps(sim.token_file_content()))
    path.chmod(0o600)
    return path


@pytest.fixture
def sleeps(clock: FakeClock) -> RecordingSleep:
    return RecordingSleep(clock)


@pytest.fixture
def backoff_delays(sleeps: RecordingSleep) -> list[float]:
    return sleeps.delays


ClientFactory = Callable[..., FleetClient]


@pytest.fixture
async def make_client(
    sim: FakeFleetApi, token_file: Path, clock: FakeClock, sleeps: RecordingSleep
) -> AsyncIterator[ClientFactory]:
    made: list[FleetClient] = []

    def factory(**overrides: Any) -> FleetClient:
        settings: dict[str, Any] = {
            "api_base": sim.url,
            "command_base": sim.proxy_url,
            "token_url": sim.token_url,
            "client_id": sim.client_id,
            "token_file": token_file,
            "clock": clock,
            "rate_limit_file": token_file.parent / "tesla-rate-limit.json",
            "sleep": sleeps,
            "jitter": lambda: 0.5,
        }
        client = FleetClient(**(settings | overrides))
        made.append(client)
        return client

    yield factory
    for client in made:
        await client.aclose()


@pytest.fixture
def client(make_client: ClientFactory) -> FleetClient:
    return make_client()
