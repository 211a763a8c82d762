"""Async Tesla Fleet API client: data host, signing command proxy, token endpoint, BLE proxies.

It takes no decisions about *when* to call (that is `poll_policy` and `commands`); it makes each call once, right:
bearer token, one refresh and one retry on 401, typed errors for 408/421/429/4xx, bounded retries with jittered
backoff on 5xx and network failures, and a count of every answered request by car and category.
"""

from __future__ import annotations

import logging
import random
import re
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

import httpx
from chargebus.clock import Clock
from chargebus.config import TeslaConfig

from chargebus_tesla.errors import (
    AuthFailed,
    CommandProtocolRequired,
    FleetUnavailable,
    RateLimited,
    RegionMismatch,
    RequestRejected,
    VehicleAsleep,
)
from chargebus_tesla.ratelimit import RateLimitGate, retry_after_seconds
from chargebus_tesla.tokens import TokenManager, Tokens, TokenStore, tokens_from_grant
from chargebus_tesla.usage import CallCounter, Category

log = logging.getLogger(__name__)

OnlineState = Literal["online", "asleep", "offline", "unknown"]

#: 5xx and network failures are retried this often: Tesla's 503 "vehicle did not respond" is usually transient,
#: and 5xx answers are not billed, but an outage must not turn into a tight loop.
MAX_RETRIES = 3
#: Backoff before retry n is BACKOFF_BASE_S * 2**n (capped), scaled by a random factor in [0.5, 1) so that
#: several cars or bridges do not retry in lockstep.
BACKOFF_BASE_S = 2.0
BACKOFF_CAP_S = 30.0
#: Commands go through the proxy to the car and back; the proxy itself waits up to ~30 s for the car.
TIMEOUT_S = 40.0
#: The persisted 429 deadline, next to the service's other runtime state.
RATE_LIMIT_FILE = "tesla-rate-limit.json"
#: Used only when no car is on the Fleet API (all BLE proxies): the file is then never read.
_UNUSED_TOKEN_FILE = "tesla-token.json"  # noqa: S105 -- a file name, not a secret
_ERROR_TEXT_MAX = 200
_PROTOCOL_REQUIRED = "vehicle command protocol required"


@dataclass(frozen=True)
class CommandResult:
    """The car's answer to a command: HTTP 200 with `result` false is a refusal (`reason` says why)."""

    result: bool
    reason: str


@dataclass(frozen=True)
class _Route:
    http: httpx.AsyncClient
    base: str
    category: Category
    authorized: bool


Sleep = Callable[[float], Awaitable[None]]


class FleetClient:
    """One Tesla account. Cars are always addressed by VIN (the signing proxy requires it)."""

    def __init__(
        self,
        *,
        api_base: str,
        token_url: str,
        client_id: str,
        token_file: Path,
        clock: Clock,
        command_base: str | None = None,
        ca_file: str | Path | None = None,
        rate_limit_file: Path | None = None,
        ble_proxy_urls: Mapping[str, str] | None = None,
        counter: CallCounter | None = None,
        jitter: Callable[[], float] = random.random,
        sleep: Sleep | None = None,
        max_retries: int = MAX_RETRIES,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self._api_base = api_base.rstrip("/")
        self._command_base = (command_base or api_base).rstrip("/")
        self._token_url = token_url
        self._client_id = client_id
        self._clock = clock
        self._jitter = jitter
        self._sleep: Sleep = sleep if sleep is not None else clock.sleep
        self._max_retries = max_retries
        self.counter = counter if counter is not None else CallCounter()
        self.gate = RateLimitGate(clock, rate_limit_file)
        self.tokens = TokenManager(TokenStore(token_file), self._request_tokens, clock)
        self._data_http = httpx.AsyncClient(timeout=timeout_s)
        # The proxy presents a self-signed certificate: trust exactly its CA for that host, nothing else.
        self._command_http = (
            httpx.AsyncClient(timeout=timeout_s, verify=ssl.create_default_context(cafile=ca_file))
            if ca_file
            else self._data_http
        )
        self._ble_proxy_urls = {vin: url.rstrip("/") for vin, url in (ble_proxy_urls or {}).items()}

    async def aclose(self) -> None:
        await self._data_http.aclose()
        if self._command_http is not self._data_http:
            await self._command_http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    @property
    def rate_limited_until(self) -> float | None:
        return self.gate.blocked_until

    # -- calls ---------------------------------------------------------------------------------------------------

    async def vehicle_state(self, vin: str) -> OnlineState:
        """`GET /vehicles/{vin}`: online/asleep/offline without waking the car or resetting its sleep timer."""
        response = await self._call(self._route(vin, Category.DATA), vin, "GET", f"/api/1/vehicles/{vin}")
        return _online_state(response)

    async def vehicle_data(self, vin: str, endpoints: Sequence[str]) -> dict[str, Any]:
        """`GET /vehicles/{vin}/vehicle_data` for only `endpoints`; raises VehicleAsleep (408) if asleep."""
        response = await self._call(
            self._route(vin, Category.DATA),
            vin,
            "GET",
            f"/api/1/vehicles/{vin}/vehicle_data",
            params={"endpoints": ";".join(endpoints)},
        )
        if not isinstance(response, dict):
            raise FleetUnavailable("vehicle_data answered without a JSON object")
        return response

    async def wake_up(self, vin: str) -> OnlineState:
        """`POST /vehicles/{vin}/wake_up` (billed as a wake); the car comes online some seconds later."""
        response = await self._call(self._route(vin, Category.WAKE), vin, "POST", f"/api/1/vehicles/{vin}/wake_up")
        return _online_state(response)

    async def command(self, vin: str, name: str, body: Mapping[str, Any] | None = None) -> CommandResult:
        """`POST /vehicles/{vin}/command/{name}` through the command host (the signing proxy)."""
        response = await self._call(
            self._route(vin, Category.COMMAND),
            vin,
            "POST",
            f"/api/1/vehicles/{vin}/command/{name}",
            json=dict(body or {}),
        )
        if not isinstance(response, dict):
            raise FleetUnavailable(f"command {name} answered without a JSON object")
        return CommandResult(result=response.get("result") is True, reason=str(response.get("reason") or ""))

    async def charge_start(self, vin: str) -> CommandResult:
        return await self.command(vin, "charge_start")

    async def charge_stop(self, vin: str) -> CommandResult:
        return await self.command(vin, "charge_stop")

    async def set_charging_amps(self, vin: str, amps: int) -> CommandResult:
        return await self.command(vin, "set_charging_amps", {"charging_amps": amps})

    async def set_charge_limit(self, vin: str, percent: int) -> CommandResult:
        return await self.command(vin, "set_charge_limit", {"percent": percent})

    # -- machinery -----------------------------------------------------------------------------------------------

    def _route(self, vin: str, category: Category) -> _Route:
        ble_url = self._ble_proxy_urls.get(vin)
        if ble_url is not None:
            # A local BLE proxy speaks the Fleet API shape but needs no Tesla token and is never billed.
            return _Route(self._data_http, ble_url, Category.BLE, authorized=False)
        if category is Category.COMMAND:
            return _Route(self._command_http, self._command_base, category, authorized=True)
        return _Route(self._data_http, self._api_base, category, authorized=True)

    async def _call(
        self,
        route: _Route,
        vin: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Mapping[str, Any] | None = None,
    ) -> Any:
        self.gate.check()
        token = await self.tokens.access_token() if route.authorized else None
        refreshed = False
        attempt = 0
        while True:
            headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
            try:
                response = await route.http.request(
                    method, route.base + path, params=params, json=json, headers=headers
                )
            except httpx.HTTPError as exc:
                log.warning(f"tesla_call_failed vin={vin} path={path} error={type(exc).__name__}")
                if attempt >= self._max_retries:
                    raise FleetUnavailable(f"{method} {path}: {type(exc).__name__}") from exc
                await self._backoff(attempt)
                attempt += 1
                continue
            status = response.status_code
            self.counter.record(vin, route.category, status, self._clock.time())
            log.info(f"tesla_call category={route.category} vin={vin} method={method} path={path} status={status}")
            if status == 401 and token is not None and not refreshed:
                token = await self.tokens.refresh_rejected(token)
                refreshed = True
                continue
            if status >= 500 and attempt < self._max_retries:
                await self._backoff(attempt)
                attempt += 1
                continue
            return self._outcome(response, route, vin)

    async def _backoff(self, attempt: int) -> None:
        delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt) * (0.5 + 0.5 * self._jitter())
        log.info(f"tesla_backoff attempt={attempt + 1} delay_s={delay:.2f}")
        await self._sleep(delay)

    def _outcome(self, response: httpx.Response, route: _Route, vin: str) -> Any:
        status = response.status_code
        if status == 200:
            body = _json_or_none(response)
            if not isinstance(body, dict) or "response" not in body:
                raise FleetUnavailable(f"HTTP 200 without a response envelope from {route.base}")
            return body["response"]
        error = _error_text(response)
        if status == 401 and route.authorized:
            reason = f"access token rejected right after a refresh: HTTP 401 {error}".rstrip()
            self.tokens.mark_failed(reason)
            raise AuthFailed(reason)
        if status == 408:
            raise VehicleAsleep(vin)
        if status == 421:
            raise RegionMismatch(route.base, _alt_svc_host(response.headers.get("alt-svc")))
        if status == 429:
            wait = retry_after_seconds(response.headers.get("retry-after"), self._clock.time())
            raise RateLimited(self.gate.block(wait))
        if status == 403 and _PROTOCOL_REQUIRED in error.lower():
            raise CommandProtocolRequired
        if status >= 500:
            raise FleetUnavailable(f"HTTP {status} {error}".rstrip())
        raise RequestRejected(status, error)

    async def _request_tokens(self, refresh_token: str) -> Tokens:
        form = {"grant_type": "refresh_token", "client_id": self._client_id, "refresh_token": refresh_token}
        try:
            response = await self._data_http.post(self._token_url, data=form)
        except httpx.HTTPError as exc:
            raise FleetUnavailable(f"token endpoint: {type(exc).__name__}") from exc
        status = response.status_code
        log.info(f"tesla_token_request status={status}")
        if status >= 500:
            raise FleetUnavailable(f"token endpoint HTTP {status}")
        if status != 200:
            raise AuthFailed(
                f"token refresh refused (HTTP {status} {_error_text(response)}): log in again and seed a new token file"
            )
        return tokens_from_grant(_json_or_none(response), refresh_token, self._clock.time())


def _online_state(response: Any) -> OnlineState:
    state = response.get("state") if isinstance(response, dict) else None
    if state in ("online", "asleep", "offline"):
        return state  # type: ignore[no-any-return]
    if state == "waking":
        return "asleep"
    return "unknown"


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _error_text(response: httpx.Response) -> str:
    body = _json_or_none(response)
    if isinstance(body, dict):
        text = " ".join(str(body[key]) for key in ("error", "error_description") if body.get(key))
    else:
        text = response.text
    return text.strip()[:_ERROR_TEXT_MAX]


def _alt_svc_host(header: str | None) -> str | None:
    """`h2="fleet-api.prd.eu.vn.cloud.tesla.com:443"; ma=86400` → the host Tesla wants us to use."""
    if not header:
        return None
    match = re.search(r'="?([^":;,\s]+)', header)
    return match.group(1) if match else None


def fleet_client_from_config(tesla: TeslaConfig, *, state_dir: Path, clock: Clock) -> FleetClient:
    """The client for the `[tesla]` section: BLE-proxy cars routed to their proxies, prices for the usage."""
    return FleetClient(
        api_base=tesla.api_base,
        command_base=tesla.command_base,
        token_url=tesla.token_url,
        client_id=tesla.client_id or "",
        token_file=tesla.token_file or state_dir / _UNUSED_TOKEN_FILE,
        ca_file=tesla.ca_file,
        clock=clock,
        rate_limit_file=state_dir / RATE_LIMIT_FILE,
        ble_proxy_urls={
            vehicle.vin: vehicle.ble_proxy_url
            for vehicle in tesla.vehicles
            if vehicle.transport == "ble_proxy" and vehicle.ble_proxy_url
        },
        counter=CallCounter(tesla.prices.model_dump()),
    )
