"""Recorded provider responses served by a local aiohttp server, and a client session that reaches it.

The libraries call their real API addresses (`https://dataportal-api.nordpoolgroup.com/api/…`,
`https://api.tibber.com/v1-beta/gql`, `https://api.forecast.solar/…`, `https://api.open-meteo.com/…`):
`local_session` resolves every host to this server and speaks TLS to it without verifying the certificate, so the
libraries run unchanged and nothing leaves the machine. The process tests use the `api_url` keys instead (plain
HTTP to 127.0.0.1).
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from tests.support.tls import write_test_pki

RECORDED = Path(__file__).parent / "recorded"


def recorded(name: str) -> Any:
    return json.loads((RECORDED / name).read_text(encoding="utf-8"))


def shifted(estimate: dict[str, Any], days: int) -> dict[str, Any]:
    """A Forecast.Solar estimate with every time moved by `days` days."""

    def move(key: str) -> str:
        if "T" not in key:
            return (date.fromisoformat(key) + timedelta(days=days)).isoformat()
        return (datetime.fromisoformat(key) + timedelta(days=days)).isoformat()

    result = {name: {move(key): value for key, value in table.items()} for name, table in estimate["result"].items()}
    return {**estimate, "result": result}


def days_to_today(recorded_day: date) -> int:
    """Whole days from a recording's first day to today (UTC)."""
    return (datetime.now(UTC).date() - recorded_day).days


@dataclass
class ProviderServer:
    port: int = 0
    fail_next: int = 0  # answer this many more requests with 503
    fail_status: int = 503
    requests: list[str] = field(default_factory=list)
    nordpool_days: set[str] = field(default_factory=lambda: {"2026-06-15", "2026-06-16"})
    tibber_token: str = "t1bb3r-t0k3n"
    shift_days: int = 0  # Forecast.Solar's recording moved by whole days (to today, for the process tests)

    def _failing(self) -> web.Response | None:
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.json_response({"message": "recorded outage"}, status=self.fail_status)
        return None

    async def nordpool(self, request: web.Request) -> web.Response:
        self.requests.append(str(request.rel_url))
        day = request.query.get("date", "")
        if (failure := self._failing()) is not None:
            return failure
        if day not in self.nordpool_days:
            return web.Response(status=204)  # Nord Pool's answer for a day not published yet
        return web.json_response(recorded(f"nordpool_{day}.json"))

    async def forecast_solar(self, request: web.Request) -> web.Response:
        self.requests.append(str(request.rel_url))
        if (failure := self._failing()) is not None:
            return failure
        headers = {"X-Ratelimit-Limit": "12", "X-Ratelimit-Period": "3600", "X-Ratelimit-Remaining": "11"}
        return web.json_response(shifted(recorded("forecast_solar_estimate.json"), self.shift_days), headers=headers)

    async def open_meteo(self, request: web.Request) -> web.Response:
        self.requests.append(str(request.rel_url))
        if (failure := self._failing()) is not None:
            return failure
        return web.json_response(recorded("open_meteo_forecast.json"))

    async def tibber(self, request: web.Request) -> web.Response:
        form = await request.post()
        query = str(form.get("query", ""))
        self.requests.append(f"{request.path} {' '.join(query.split())[:40]}")
        if (failure := self._failing()) is not None:
            return failure
        if request.headers.get("Authorization") != f"Bearer {self.tibber_token}":
            return web.json_response(
                {"errors": [{"message": "invalid token", "extensions": {"code": "UNAUTHENTICATED"}}]}
            )
        return web.json_response(recorded("tibber_price_info.json" if "home(id:" in query else "tibber_info.json"))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/DayAheadPrices", self.nordpool)
        app.router.add_get("/estimate/{tail:.*}", self.forecast_solar)
        app.router.add_get("/{key}/estimate/{tail:.*}", self.forecast_solar)
        app.router.add_get("/v1/forecast", self.open_meteo)
        app.router.add_post("/v1-beta/gql", self.tibber)
        return app


@asynccontextmanager
async def serve(tmp_path: Path | None = None) -> AsyncIterator[ProviderServer]:
    """The recorded server on a free port of 127.0.0.1; TLS when `tmp_path` is given (for `local_session`)."""
    server = ProviderServer()
    runner = web.AppRunner(server.app())
    await runner.setup()
    context = None
    if tmp_path is not None:
        _ca, cert, key = write_test_pki(tmp_path)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    server.port = runner.addresses[0][1]
    try:
        yield server
    finally:
        await runner.cleanup()


class LocalResolver(AbstractResolver):
    """Every host name is 127.0.0.1 at the recorded server's port."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        del port, family
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": self.port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


def local_session(server: ProviderServer) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(resolver=LocalResolver(server.port), ssl=False)
    return aiohttp.ClientSession(connector=connector)
