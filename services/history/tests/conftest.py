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

from services.history.tests.history_support import evse_state, vehicle_state

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


#: Fixed times for the payload fixtures, so tests that compare stored rows see stable values.
FIXED_AT = "2027-01-15T08:00:00.000Z"


@pytest.fixture
def evse_payload() -> Callable[..., dict[str, Any]]:
    """A complete EvseState payload (docs/contract.md §6) with overrides: idle, at a fixed time."""

    def build(evse_id: str = "twc-4a1b", **overrides: Any) -> dict[str, Any]:
        fixed = {"name": evse_id, "source": "rs485", "updated_at": FIXED_AT}
        return evse_state(evse_id, **{**fixed, **overrides})

    return build


@pytest.fixture
def vehicle_payload() -> Callable[..., dict[str, Any]]:
    """A complete VehicleState payload (docs/contract.md §6) with overrides: parked and unplugged, at a fixed time."""
    unplugged = {
        "plugged_in": False,
        "charging_state": "Disconnected",
        "charger_phases": None,
        "charger_voltage_v": None,
        "charger_actual_current_a": None,
        "charger_power_w": None,
        "updated_at": FIXED_AT,
        "data_age_s": 3.0,
    }

    def build(vin: str = "5YJ3E1EA8KF000001", **overrides: Any) -> dict[str, Any]:
        return vehicle_state(vin, **{**unplugged, **overrides})

    return build
