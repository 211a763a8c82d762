"""Async Tesla Fleet API client: data host, signing command proxy, token endpoint, BLE proxies.

It takes no decisions about *when* to call (that is `poll_policy` and `commands`); it makes each call once, right:
bearer token, one refresh and one retry on 401, typed errors for 408/421/429/4xx, bounded retries with jittered
backoff on 5xx and network failures, and a count of every answered request by car and category.

Cars with `transport = "ble_proxy"` are served by their local BLE proxy (`ble.py`): no token, no retries, one
request at a time per proxy, a per-call timeout and a circuit breaker; a failed or paused BLE call goes to the
Fleet API instead when the car's `ble_fallback = "fleet"` (billed like any Fleet call), else it raises
`BleUnavailable`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

import httpx
from chargebus.clock import Clock
from chargebus.config import TeslaConfig

from chargebus_tesla.ble import (
    COMMAND_PARAMS,
    STATE_PATH,
    Answer,
    AnswerKind,
    BleSettings,
    CircuitBreaker,
    Fallback,
    online_state_of,
    parse_answer,
    refusal_reason,
    vehicle_data_of,
)
from chargebus_tesla.errors import (
    AuthFailed,
    BleUnavailable,
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
#: Which way an answer came: the contract's `source` values for API data.
Via = Literal["fleet_api", "ble_proxy"]

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


Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")


@dataclass
class BleLink:
    """One BLE-proxy car: its settings, its breaker, and the lock of its proxy (shared by cars on one proxy)."""

    vin: str
    settings: BleSettings
    lock: asyncio.Lock
    breaker: CircuitBreaker = field(init=False)

    def __post_init__(self) -> None:
        self.breaker = CircuitBreaker(self.settings.breaker_failures, self.settings.breaker_open_s)


@dataclass(frozen=True)
class BleOutage:
    """A BLE proxy that failed `failures` calls in a row: paused until `open_until`, then tried again."""

    vin: str
    url: str
    failures: int
    open_s: float
    reason: str
    fallback: Fallback
    open_until: float

    @property
    def message(self) -> str:
        """The same text for the whole outage, so it is reported once."""
        meanwhile = (
            "meanwhile its calls go to the Fleet API (billed)"
            if self.fallback == "fleet"
            else 'meanwhile the car is not reached at all (ble_fallback = "none")'
        )
        return (
            f"BLE proxy {self.url} cannot reach car {self.vin}: {self.failures} failed calls in a row "
            f"(first: {self.reason}); BLE calls pause {self.open_s:.0f} s at a time, then one is tried again; "
            f"{meanwhile}"
        )


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
        ble_proxies: Mapping[str, BleSettings] | None = None,
        counter: CallCounter | None = None,
        jitter: Callable[[], float] = random.random,
        sleep: Sleep | None = None,
        max_retries: int = MAX_RETRIES,
        timeout_s: float = TIMEOUT_S,
        time_scale: float | None = None,
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
        # BLE proxies: the timeouts are simulated seconds, waited in real time (÷ the clock's scale, if any).
        self._time_scale = time_scale if time_scale is not None else float(getattr(clock, "scale", 1.0))
        locks: dict[str, asyncio.Lock] = {}
        self._ble: dict[str, BleLink] = {
            vin: BleLink(vin, settings, locks.setdefault(settings.url, asyncio.Lock()))
            for vin, settings in (ble_proxies or {}).items()
        }
        # an HTTP client costs about 1 MB (its TLS context): only with a car behind a BLE proxy
        self._ble_http = httpx.AsyncClient(timeout=timeout_s) if self._ble else None
        self._via: dict[str, Via] = {}

    async def aclose(self) -> None:
        if self._ble_http is not None:
            await self._ble_http.aclose()
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

    # -- per car: which way its calls go -------------------------------------------------------------------------

    def uses_fleet(self, vin: str) -> bool:
        """The car's calls go to the Fleet API now: a Fleet car, or a BLE car falling back while its breaker is open
        (once the pause is over, the next call tries BLE again)."""
        link = self._ble.get(vin)
        if link is None:
            return True
        breaker = link.breaker
        return link.settings.fallback == "fleet" and breaker.tripped and not breaker.allows(self._clock.time())

    def rate_limited_until_for(self, vin: str) -> float | None:
        """Tesla's 429 deadline as far as this car is concerned (never for a car its BLE proxy serves)."""
        return self.rate_limited_until if self.uses_fleet(vin) else None

    def via(self, vin: str) -> Via:
        """Which way the car's last answered call went (its `source` for the data it brought)."""
        return self._via.get(vin, "ble_proxy" if vin in self._ble else "fleet_api")

    def ble_outage(self, vin: str) -> BleOutage | None:
        """The car's BLE proxy outage, while its breaker is open or half-open; None otherwise (and for Fleet cars)."""
        link = self._ble.get(vin)
        if link is None or not link.breaker.tripped:
            return None
        breaker, settings = link.breaker, link.settings
        return BleOutage(
            vin=vin,
            url=settings.url,
            failures=breaker.failures,
            open_s=breaker.open_s,
            reason=breaker.reason or "",
            fallback=settings.fallback,
            open_until=breaker.open_until or 0.0,
        )

    # -- calls ---------------------------------------------------------------------------------------------------

    async def vehicle_state(self, vin: str) -> OnlineState:
        """`GET /vehicles/{vin}`: online/asleep/offline without waking the car or resetting its sleep timer.

        Through a BLE proxy: its body controller state, which does not wake the car either.
        """

        async def fleet() -> OnlineState:
            response = await self._call(self._route(Category.DATA), vin, "GET", f"/api/1/vehicles/{vin}")
            return _online_state(response)

        async def ble(link: BleLink) -> OnlineState:
            answer = await self._ble_request(link, "GET", STATE_PATH.format(vin=vin))
            if answer.kind is not AnswerKind.OK:
                raise _BleFailure(f"body_controller_state: {answer.reason or answer.kind}")
            return online_state_of(answer.data)

        return await self._either(vin, "vehicle_state", fleet, ble)

    async def vehicle_data(self, vin: str, endpoints: Sequence[str]) -> dict[str, Any]:
        """`GET /vehicles/{vin}/vehicle_data` for only `endpoints`; raises VehicleAsleep (408) if asleep."""
        path = f"/api/1/vehicles/{vin}/vehicle_data"
        params = {"endpoints": ";".join(endpoints)}

        async def fleet() -> dict[str, Any]:
            response = await self._call(self._route(Category.DATA), vin, "GET", path, params=params)
            if not isinstance(response, dict):
                raise FleetUnavailable("vehicle_data answered without a JSON object")
            return response

        async def ble(link: BleLink) -> dict[str, Any]:
            answer = await self._ble_request(link, "GET", path, params=params)
            data = vehicle_data_of(answer) if answer.kind is AnswerKind.OK else None
            if data is None:
                raise _BleFailure(f"vehicle_data: {answer.reason or 'no vehicle data in the answer'}")
            return data

        return await self._either(vin, "vehicle_data", fleet, ble)

    async def wake_up(self, vin: str) -> OnlineState:
        """`POST /vehicles/{vin}/wake_up` (billed as a wake); the car comes online some seconds later.

        Through a BLE proxy: its `wake_up` command (free); the state polls that follow see the car come online.
        """

        async def fleet() -> OnlineState:
            response = await self._call(self._route(Category.WAKE), vin, "POST", f"/api/1/vehicles/{vin}/wake_up")
            return _online_state(response)

        async def ble(link: BleLink) -> OnlineState:
            answer = await self._ble_request(
                link, "POST", f"/api/1/vehicles/{vin}/command/wake_up", params=COMMAND_PARAMS, json={}
            )
            if answer.kind is not AnswerKind.OK:
                raise _BleFailure(f"wake_up: {answer.reason or answer.kind}")
            return "asleep"  # waking: confirmed by the next state call

        return await self._either(vin, "wake_up", fleet, ble)

    async def command(self, vin: str, name: str, body: Mapping[str, Any] | None = None) -> CommandResult:
        """`POST /vehicles/{vin}/command/{name}` through the command host (the signing proxy) or the BLE proxy."""
        path = f"/api/1/vehicles/{vin}/command/{name}"
        arguments = dict(body or {})

        async def fleet() -> CommandResult:
            response = await self._call(self._route(Category.COMMAND), vin, "POST", path, json=arguments)
            if not isinstance(response, dict):
                raise FleetUnavailable(f"command {name} answered without a JSON object")
            return CommandResult(result=response.get("result") is True, reason=str(response.get("reason") or ""))

        async def ble(link: BleLink) -> CommandResult:
            answer = await self._ble_request(link, "POST", path, params=COMMAND_PARAMS, json=arguments)
            if answer.kind is AnswerKind.REFUSED:
                return CommandResult(result=False, reason=refusal_reason(answer.reason))
            if answer.kind is not AnswerKind.OK:
                raise _BleFailure(f"{name}: {answer.reason or answer.kind}")
            return CommandResult(result=True, reason="")

        return await self._either(vin, name, fleet, ble)

    async def charge_start(self, vin: str) -> CommandResult:
        return await self.command(vin, "charge_start")

    async def charge_stop(self, vin: str) -> CommandResult:
        return await self.command(vin, "charge_stop")

    async def set_charging_amps(self, vin: str, amps: int) -> CommandResult:
        return await self.command(vin, "set_charging_amps", {"charging_amps": amps})

    async def set_charge_limit(self, vin: str, percent: int) -> CommandResult:
        return await self.command(vin, "set_charge_limit", {"percent": percent})

    # -- machinery -----------------------------------------------------------------------------------------------

    async def _either(
        self,
        vin: str,
        what: str,
        fleet: Callable[[], Awaitable[T]],
        ble: Callable[[BleLink], Awaitable[T]],
    ) -> T:
        """The call through the car's BLE proxy when it has one and its breaker allows, else (or after a failure,
        when the car falls back) through the Fleet API."""
        link = self._ble.get(vin)
        if link is None:
            result = await fleet()
            self._via[vin] = "fleet_api"
            return result
        breaker, settings = link.breaker, link.settings
        if breaker.allows(self._clock.time()):
            try:
                result = await ble(link)
            except _BleFailure as exc:
                self._ble_failed(link, str(exc))
                if settings.fallback != "fleet":
                    raise BleUnavailable(vin, settings.url, str(exc)) from None
            except VehicleAsleep:
                self._ble_succeeded(link)  # the proxy reached the car: it sleeps
                self._via[vin] = "ble_proxy"
                raise
            else:
                self._ble_succeeded(link)
                self._via[vin] = "ble_proxy"
                return result
        elif settings.fallback != "fleet":
            raise BleUnavailable(vin, settings.url, f"paused after {breaker.failures} failed calls in a row")
        log.info(f"tesla_ble_fallback vin={vin} call={what} to=fleet_api")
        result = await fleet()
        self._via[vin] = "fleet_api"
        return result

    def _ble_failed(self, link: BleLink, reason: str) -> None:
        now = self._clock.time()
        opened = link.breaker.failed(now, reason)
        log.warning(f"tesla_ble_failed vin={link.vin} in_a_row={link.breaker.consecutive} reason={reason!r}")
        if opened:
            log.warning(
                f"tesla_ble_breaker vin={link.vin} state=open open_s={link.breaker.open_s:.0f} "
                f"fallback={link.settings.fallback}"
            )

    def _ble_succeeded(self, link: BleLink) -> None:
        if link.breaker.succeeded():
            log.info(f"tesla_ble_breaker vin={link.vin} state=closed")

    async def _ble_request(
        self,
        link: BleLink,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Mapping[str, Any] | None = None,
    ) -> Answer:
        """One request to the car's BLE proxy: no token, one at a time per proxy, within the car's timeout.

        Raises `_BleFailure` for a timeout, a network error or an answer the proxy marks as failed (not in range,
        BLE trouble); `VehicleAsleep` when the proxy reached a sleeping car. Every answer is counted as `ble`.
        """
        url = link.settings.url + path
        timeout_s = link.settings.timeout_s
        assert self._ble_http is not None  # a link exists only with a BLE proxy configured
        async with link.lock:
            try:
                real_timeout_s = timeout_s / self._time_scale
                async with asyncio.timeout(real_timeout_s):
                    response = await self._ble_http.request(
                        method, url, params=params, json=json, timeout=real_timeout_s + 1.0
                    )
            except TimeoutError:
                log.warning(f"tesla_call_failed transport=ble vin={link.vin} path={path} error=timeout")
                raise _BleFailure(f"no answer within {timeout_s:.0f} s") from None
            except httpx.HTTPError as exc:
                log.warning(f"tesla_call_failed transport=ble vin={link.vin} path={path} error={type(exc).__name__}")
                raise _BleFailure(type(exc).__name__) from None
        status = response.status_code
        self.counter.record(link.vin, Category.BLE, status, self._clock.time())
        log.info(f"tesla_call category=ble vin={link.vin} method={method} path={path} status={status}")
        answer = parse_answer(status, _json_or_none(response))
        if answer.kind is AnswerKind.ASLEEP:
            raise VehicleAsleep(link.vin)
        if answer.kind is AnswerKind.FAILED:
            raise _BleFailure(answer.reason)
        return answer

    def _route(self, category: Category) -> _Route:
        if category is Category.COMMAND:
            return _Route(self._command_http, self._command_base, category)
        return _Route(self._data_http, self._api_base, category)

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
        token: str | None = await self.tokens.access_token()
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
        if status != 429:
            self.gate.answered()
        if status == 200:
            body = _json_or_none(response)
            if not isinstance(body, dict) or "response" not in body:
                raise FleetUnavailable(f"HTTP 200 without a response envelope from {route.base}")
            return body["response"]
        error = _error_text(response)
        if status == 401:
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


class _BleFailure(Exception):  # noqa: N818 -- a condition, raised and caught here only
    """A BLE proxy call that did not get through (counts for the breaker; never leaves this module)."""


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
    fleet_usable = bool(tesla.client_id) and tesla.token_file is not None
    ble_proxies: dict[str, BleSettings] = {}
    for vehicle in tesla.vehicles:
        settings = BleSettings.of(vehicle, fleet_usable=fleet_usable)
        if settings is None:
            continue
        if vehicle.ble_fallback == "fleet" and settings.fallback != "fleet":
            log.warning(
                f"tesla_ble_fallback_unusable vin={vehicle.vin} reason=no_client_id_or_token_file fallback=none"
            )
        ble_proxies[vehicle.vin] = settings
    return FleetClient(
        api_base=tesla.api_base,
        command_base=tesla.command_base,
        token_url=tesla.token_url,
        client_id=tesla.client_id or "",
        token_file=tesla.token_file or state_dir / _UNUSED_TOKEN_FILE,
        ca_file=tesla.ca_file,
        clock=clock,
        rate_limit_file=state_dir / RATE_LIMIT_FILE,
        ble_proxies=ble_proxies,
        counter=CallCounter(tesla.prices.model_dump()),
    )
