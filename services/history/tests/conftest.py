"""Fixtures for the history tests: a store on real SQLite (tmp dir) and, when one answers, on PostgreSQL.

PostgreSQL: `$CHARGEBUS_TEST_POSTGRES_URL`, else the local server as user postgres, else as root (database
`test`). Each test gets its own schema, dropped afterwards, so runs never see each other's rows.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
import pytest
from chargebus_history.store import HistoryStore

POSTGRES_CANDIDATES = (
    "postgresql://postgres@127.0.0.1:5432/test",
    "postgresql://root@127.0.0.1:5432/test",
)
T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z, a fixed instant: tests never read the wall clock


@dataclass(frozen=True)
class Backend:
    url: str
    schema: str | None = None


async def _first_answering(urls: tuple[str, ...]) -> tuple[str | None, str]:
    errors: list[str] = []
    for url in urls:
        try:
            connection = await asyncpg.connect(url, timeout=2)
        except (OSError, asyncpg.PostgresError, TimeoutError) as error:
            errors.append(f"{url}: {type(error).__name__}: {error}")
            continue
        await connection.close()
        return url, ""
    return None, "; ".join(errors)


_probed: dict[str, tuple[str | None, str]] = {}


async def postgres_url() -> tuple[str | None, str]:
    """(url, "") when a server answers, else (None, why not). Probed once per test run."""
    if "result" not in _probed:
        configured = os.environ.get("CHARGEBUS_TEST_POSTGRES_URL")
        _probed["result"] = await _first_answering((configured,) if configured else POSTGRES_CANDIDATES)
    return _probed["result"]


@pytest.fixture(params=["sqlite", "postgresql"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        yield Backend(f"sqlite:///{tmp_path / 'history.sqlite'}")
        return
    url, why = await postgres_url()
    if url is None:
        pytest.skip(f"PostgreSQL not reachable, PostgreSQL store tests skipped ({why})")
    schema = f"chargebus_test_{secrets.token_hex(6)}"
    connection = await asyncpg.connect(url, timeout=5)
    try:
        await connection.execute(f'CREATE SCHEMA "{schema}"')
        yield Backend(url, schema)
    finally:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await connection.close()


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[HistoryStore]:
    async with await HistoryStore.open(backend.url, schema=backend.schema) as opened:
        yield opened


@pytest.fixture
def evse_payload() -> Callable[..., dict[str, Any]]:
    """A complete EvseState payload (contract §6) with overrides."""

    def build(evse_id: str = "twc-4a1b", **overrides: Any) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "v": 1,
            "evse_id": evse_id,
            "kind": "vehicle" if evse_id.startswith("car-") else "twc2",
            "name": evse_id,
            "controllable": True,
            "controls": ["current"],
            "online": True,
            "vin": None,
            "plugged_in": False,
            "plugged_in_at": None,
            "charging": False,
            "phases": 1,
            "voltage_v": 230.0,
            "phase_voltages_v": [230.0],
            "current_a": 0.0,
            "offered_a": 0.0,
            "power_w": 0.0,
            "min_power_w": 1380.0,
            "max_power_w": 7360.0,
            "step_w": 230.0,
            "session_energy_wh": None,
            "lifetime_energy_wh": None,
            "state_code": "0x00",
            "status_text": "ready",
            "source": "rs485",
            "updated_at": "2027-01-15T08:00:00.000Z",
            "stale": False,
        }
        payload.update(overrides)
        return payload

    return build


@pytest.fixture
def vehicle_payload() -> Callable[..., dict[str, Any]]:
    """A complete VehicleState payload (contract §6) with overrides."""

    def build(vin: str = "5YJ3E1EA8KF000001", **overrides: Any) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "v": 1,
            "vin": vin,
            "name": "Model 3",
            "online_state": "online",
            "at_home": True,
            "plugged_in": False,
            "charging_state": "Disconnected",
            "soc_pct": 50.0,
            "charge_limit_pct": 80.0,
            "charger_phases": None,
            "charger_voltage_v": None,
            "charger_actual_current_a": None,
            "charge_current_request_a": 16.0,
            "charge_current_request_max_a": 32.0,
            "charger_power_w": None,
            "charge_energy_added_wh": None,
            "time_to_full_s": None,
            "source": "teslamate",
            "updated_at": "2027-01-15T08:00:00.000Z",
            "data_age_s": 3.0,
        }
        payload.update(overrides)
        return payload

    return build
