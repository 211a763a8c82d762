"""A fake Tesla Fleet API, OAuth token endpoint and vehicle-command proxy, over real HTTP (aiohttp).

Cars sleep, wake, charge (SoC rises with the current), refuse what a real car refuses, and answer 408 while
asleep. Every request is recorded with its category so tests and the cost benchmark can count exactly what a
client did. Faults are injected with `fail_next()` (5xx, 429 + Retry-After, 421 + Alt-Svc) and
`expire_access_token()` (401).

Two listeners share one state: `url` is the Fleet API data host (which refuses unsigned commands, like Tesla
does for modern cars) and `proxy_url` is the command proxy, which accepts commands. Time comes from an injectable
clock so simulated days can run fast.

With `ble_proxy=True` a third listener, `ble_url`, plays a BLE command proxy (TeslaBleHttpProxy) in front of the
same cars: no token, the proxy's own answer envelope, `ble_latency_s` simulated seconds per request (waited as
`ble_latency_s / ble_time_scale` real seconds, so tests can shrink it), one request at a time (the others queue,
as on the real proxy's single Bluetooth connection), and "Vehicle is not in range" (HTTP 503) for a car whose
`ble_in_range` is false.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Self

from aiohttp import web

CarState = Literal["online", "asleep", "offline"]
Host = Literal["fleet", "proxy", "ble"]

#: A car falls asleep after this long without a data call, command or other activity (Tesla: ~15 min).
SLEEP_AFTER_IDLE_S = 900.0
#: A woken car comes online this long after `wake_up` (real cars take 10-30 s).
WAKE_DELAY_S = 10.0
#: Tesla's access tokens live 8 h.
ACCESS_TOKEN_LIFETIME_S = 28_800
#: Simulated seconds a BLE proxy takes per request (scan, connect, session, the call itself).
BLE_LATENCY_S = 3.0
_LOW_AMPS = 5
_ASLEEP_ERROR = "vehicle unavailable: vehicle is offline or asleep"
_BLE_NOT_IN_RANGE = "Vehicle is not in range: context deadline exceeded"
_BLE_SLEEPING = "vehicle is sleeping"
_BLE_DONE = "The command was successfully processed."
#: The BLE proxy's paths: the Fleet API's for data, commands and wake_up, plus its own sleep-state call.
_BLE_STATE_COMMAND = "body_controller_state"


@dataclass
class FakeCar:
    vin: str
    vehicle_id: int
    display_name: str = "Model 3"
    state: CarState = "asleep"
    charging_state: str = "Stopped"
    charge_amps: int = 16
    charge_current_request_max: int = 32
    voltage_v: int = 230
    phases: int = 1
    battery_level: float = 50.0
    charge_limit_soc: int = 80
    capacity_wh: float = 75_000.0
    charge_energy_added_wh: float = 0.0
    latitude: float = 52.52
    longitude: float = 13.40
    signing_required: bool = True
    wake_delay_s: float = WAKE_DELAY_S
    #: False models a car without connectivity (garage without signal): wake_up is accepted but never works
    wakeable: bool = True
    #: False: the BLE proxy cannot see the car (driven away, adapter too far): "Vehicle is not in range"
    ble_in_range: bool = True
    sleep_after_idle_s: float = SLEEP_AFTER_IDLE_S
    last_activity_at: float = 0.0
    wake_at: float | None = None
    integrated_at: float = 0.0
    low_amps_armed: int | None = None

    @property
    def plugged_in(self) -> bool:
        return self.charging_state != "Disconnected"

    @property
    def charging(self) -> bool:
        return self.charging_state in ("Charging", "Starting")

    @property
    def actual_current_a(self) -> int:
        return min(self.charge_amps, self.charge_current_request_max) if self.charging else 0

    @property
    def power_w(self) -> float:
        return float(self.actual_current_a * self.voltage_v * self.phases)

    def plug_in(self) -> None:
        if not self.plugged_in:
            self.charging_state = "Stopped"

    def unplug(self) -> None:
        self.charging_state = "Disconnected"


@dataclass(frozen=True)
class RecordedCall:
    at: float
    host: Host
    method: str
    path: str
    category: str
    vin: str | None
    status: int
    bearer: str | None
    query: dict[str, str] = field(default_factory=dict)
    body: Any = None


@dataclass(frozen=True)
class _Incoming:
    host: Host
    category: str
    vin: str | None
    command: str
    query: dict[str, str]
    body: Any
    bearer: str | None


@dataclass
class _Fault:
    status: int
    remaining: int
    category: str | None
    retry_after: str | None
    alt_svc: str | None
    host: Host | None = None


class FakeFleetApi:
    """Start with `await start()`; point a client at `url` (data), `proxy_url` (commands) and `token_url`."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        client_id: str = "chargebus",
        access_token_lifetime_s: int = ACCESS_TOKEN_LIFETIME_S,
        proxy_ssl: ssl.SSLContext | None = None,
        token_tag: str = "",
        ble_proxy: bool = False,
        ble_latency_s: float = BLE_LATENCY_S,
        ble_time_scale: float = 1.0,
    ) -> None:
        self._clock = clock
        #: appended to every issued token, so a test can scan logs and MQTT traffic for unmistakable secrets
        self.token_tag = token_tag
        self.client_id = client_id
        self.access_token_lifetime_s = access_token_lifetime_s
        self._proxy_ssl = proxy_ssl
        self.cars: dict[str, FakeCar] = {}
        self.calls: list[RecordedCall] = []
        self.access_token = ""
        self.refresh_token = ""
        self._issued = -1
        self._issue_tokens()
        self._expired_tokens: set[str] = set()
        self._faults: list[_Fault] = []
        self._observers: list[Callable[[RecordedCall], None]] = []
        self.token_delay_s = 0.0
        self._runners: list[web.AppRunner] = []
        self._ports: dict[Host, int] = {}
        self._hosts: tuple[Host, ...] = ("fleet", "proxy", "ble") if ble_proxy else ("fleet", "proxy")
        #: BLE proxy: simulated seconds per request, and how many simulated seconds pass per real second
        self.ble_latency_s = ble_latency_s
        self.ble_time_scale = ble_time_scale
        #: BLE proxy: the most requests it held at once (queued + in service), and the most in service at once
        self.ble_max_queued = 0
        self.ble_max_in_service = 0
        self._ble_lock = asyncio.Lock()
        self._ble_queued = 0
        self._ble_in_service = 0

    # -- lifecycle ----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        for host in self._hosts:
            runner = web.AppRunner(self._app(host))
            await runner.setup()
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", 0))
            self._ports[host] = listener.getsockname()[1]
            site_ssl = self._proxy_ssl if host == "proxy" else None
            await web.SockSite(runner, listener, ssl_context=site_ssl).start()
            self._runners.append(runner)

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port('fleet')}"

    @property
    def proxy_url(self) -> str:
        scheme = "https" if self._proxy_ssl is not None else "http"
        return f"{scheme}://127.0.0.1:{self._port('proxy')}"

    @property
    def ble_url(self) -> str:
        """The BLE command proxy (only with `ble_proxy=True`)."""
        return f"http://127.0.0.1:{self._port('ble')}"

    @property
    def token_url(self) -> str:
        return f"{self.url}/oauth2/v3/token"

    def _port(self, host: Host) -> int:
        if host not in self._ports:
            raise RuntimeError("FakeFleetApi has no address before `await start()`")
        return self._ports[host]

    # -- scenario control ---------------------------------------------------------------------------------------

    def add_car(self, vin: str, **settings: Any) -> FakeCar:
        now = self._clock()
        car = FakeCar(vin=vin, vehicle_id=100_000 + len(self.cars), **settings)
        car.last_activity_at = car.integrated_at = now
        self.cars[vin] = car
        return car

    def car(self, vin: str) -> FakeCar:
        """The car brought up to the current time (sleep, wake, SoC)."""
        car = self.cars[vin]
        self._advance(car, self._clock())
        return car

    def token_file_content(self, expires_at: float | None = None) -> dict[str, Any]:
        """What a user would seed the bridge's token file with."""
        expiry = self._clock() + self.access_token_lifetime_s if expires_at is None else expires_at
        return {"access_token": self.access_token, "refresh_token": self.refresh_token, "expires_at": expiry}

    def expire_access_token(self) -> None:
        """The current access token now answers 401 `token expired`; the refresh token stays valid."""
        self._expired_tokens.add(self.access_token)
        self.access_token = f"{self.access_token}-expired-unusable"

    def fail_next(
        self,
        status: int,
        times: int = 1,
        *,
        category: str | None = None,
        retry_after: str | None = None,
        alt_svc: str | None = None,
        host: Host | None = None,
    ) -> None:
        """Answer the next `times` requests (of `category`, to `host`, if given) with `status` instead."""
        self._faults.append(_Fault(status, times, category, retry_after, alt_svc, host))

    def on_request(self, observer: Callable[[RecordedCall], None]) -> None:
        """Call `observer` with each recorded request, before its answer leaves the server."""
        self._observers.append(observer)

    def count(self, category: str | None = None, *, vin: str | None = None, host: Host | None = None) -> int:
        return sum(
            1
            for call in self.calls
            if (category is None or call.category == category)
            and (vin is None or call.vin == vin)
            and (host is None or call.host == host)
        )

    def billed(self) -> list[RecordedCall]:
        """The requests that reached "Tesla" (data host or signing proxy), token requests aside: what is billed."""
        return [call for call in self.calls if call.host != "ble" and call.category != "token"]

    # -- HTTP ---------------------------------------------------------------------------------------------------

    def _app(self, host: Host) -> web.Application:
        app = web.Application()

        def route(category: str) -> Callable[[web.Request], Any]:
            async def handle(request: web.Request) -> web.Response:
                return await self._handle(request, host, category)

            return handle

        if host == "ble":
            app.router.add_get(f"/api/proxy/1/vehicles/{{vin}}/{_BLE_STATE_COMMAND}", route("state"))
            app.router.add_route("*", "/api/1/vehicles/{vin}/vehicle_data", route("data"))
            app.router.add_post("/api/1/vehicles/{vin}/wake_up", route("wake"))
            app.router.add_post("/api/1/vehicles/{vin}/command/wake_up", route("wake"))
            app.router.add_post("/api/1/vehicles/{vin}/command/{name}", route("command"))
            return app
        app.router.add_get("/api/1/vehicles", route("list"))
        app.router.add_get("/api/1/vehicles/{vin}", route("state"))
        app.router.add_get("/api/1/vehicles/{vin}/vehicle_data", route("data"))
        app.router.add_post("/api/1/vehicles/{vin}/wake_up", route("wake"))
        app.router.add_post("/api/1/vehicles/{vin}/command/{name}", route("command"))
        if host == "fleet":
            app.router.add_post("/oauth2/v3/token", route("token"))
        return app

    async def _handle(self, request: web.Request, host: Host, category: str) -> web.Response:
        incoming = _Incoming(
            host=host,
            category=category,
            vin=request.match_info.get("vin"),
            command=request.match_info.get("name", ""),
            query=dict(request.query),
            body=await _read_body(request),
            bearer=_bearer(request),
        )
        response = await (self._serve_ble(incoming) if host == "ble" else self._serve(incoming))
        call = RecordedCall(
            at=self._clock(),
            host=host,
            method=request.method,
            path=request.path,
            category=category,
            vin=incoming.vin,
            status=response.status,
            bearer=incoming.bearer,
            query=incoming.query,
            body=incoming.body,
        )
        self.calls.append(call)
        for observer in self._observers:
            observer(call)
        return response

    async def _serve(self, incoming: _Incoming) -> web.Response:
        fault = self._take_fault(incoming.category, incoming.host)
        if fault is not None:
            return _fault_response(fault)
        if incoming.category == "token":
            if self.token_delay_s:
                await asyncio.sleep(self.token_delay_s)
            return self._token(incoming.body)
        if incoming.bearer != self.access_token:
            expired = incoming.bearer in self._expired_tokens
            return _envelope(None, 401, error="token expired (401)" if expired else "invalid bearer token")
        if incoming.category == "list":
            return _envelope([self._summary(car) for car in self._all_cars()])
        car = self.cars.get(incoming.vin or "")
        if car is None:
            return _envelope(None, 404, error="not_found")
        return self._serve_car(car, incoming)

    def _serve_car(self, car: FakeCar, incoming: _Incoming) -> web.Response:
        now = self._clock()
        self._advance(car, now)
        if incoming.category == "state":
            return _envelope(self._summary(car))
        if incoming.category == "wake":
            return self._wake(car, now)
        if car.state != "online":
            return _envelope(None, 408, error=_ASLEEP_ERROR)
        car.last_activity_at = now
        if incoming.category == "data":
            return _envelope(self._vehicle_data(car, incoming.query.get("endpoints")))
        if incoming.host == "fleet" and car.signing_required:
            return _envelope(None, 403, error="Tesla Vehicle Command Protocol required")
        return self._command(car, incoming.command, incoming.body)

    def _take_fault(self, category: str, host: Host) -> _Fault | None:
        for fault in self._faults:
            if (
                fault.remaining > 0
                and (fault.category is None or fault.category == category)
                and (fault.host is None or fault.host == host)
            ):
                fault.remaining -= 1
                return fault
        return None

    # -- the BLE proxy -------------------------------------------------------------------------------------------

    async def _serve_ble(self, incoming: _Incoming) -> web.Response:
        """One request at a time, each taking `ble_latency_s`; the others wait their turn."""
        self._ble_queued += 1
        self.ble_max_queued = max(self.ble_max_queued, self._ble_queued)
        try:
            async with self._ble_lock:
                self._ble_in_service += 1
                self.ble_max_in_service = max(self.ble_max_in_service, self._ble_in_service)
                try:
                    if self.ble_latency_s > 0:
                        await asyncio.sleep(self.ble_latency_s / self.ble_time_scale)
                    fault = self._take_fault(incoming.category, "ble")
                    if fault is not None:
                        return _fault_response(fault)
                    return self._ble_answer(incoming)
                finally:
                    self._ble_in_service -= 1
        finally:
            self._ble_queued -= 1

    def _ble_answer(self, incoming: _Incoming) -> web.Response:
        vin = incoming.vin or ""
        name = incoming.command or {"state": _BLE_STATE_COMMAND, "data": "vehicle_data"}.get(
            incoming.category, "wake_up"
        )
        car = self.cars.get(vin)
        if car is None or not car.ble_in_range:
            # The proxy scans for the car's beacon (its VIN) and gives up: the same for an unknown car.
            return _ble_envelope(vin, name, result=False, reason=_BLE_NOT_IN_RANGE)
        now = self._clock()
        self._advance(car, now)
        if incoming.category == "state":
            # Read from the car's security controller over BLE: never wakes it, never resets its sleep timer.
            return _ble_envelope(vin, name, data=_body_controller_state(car))
        if incoming.category == "wake":
            # Over BLE the car wakes without its cellular link (`wakeable` does not matter).
            if car.state != "online" and car.wake_at is None:
                car.wake_at = now + car.wake_delay_s
            return _ble_envelope(vin, name, reason=_BLE_DONE)
        if incoming.category == "data":
            if car.state != "online":
                return _ble_envelope(vin, name, result=False, reason=_BLE_SLEEPING)
            car.last_activity_at = now
            return _ble_envelope(
                vin, name, reason=_BLE_DONE, data=self._vehicle_data(car, incoming.query.get("endpoints"))
            )
        return self._ble_command(car, name, incoming.body, now)

    @staticmethod
    def _ble_command(car: FakeCar, name: str, body: Any, now: float) -> web.Response:
        """A command: the proxy wakes the car first (and waits for it), then sends it."""
        arguments = body if isinstance(body, dict) else {}
        actions: dict[str, Callable[[], str | None]] = {
            "charge_start": lambda: _charge_start(car),
            "charge_stop": lambda: _charge_stop(car),
            "set_charging_amps": lambda: _set_charging_amps(car, _int_or_none(arguments.get("charging_amps"))),
            "set_charge_limit": lambda: _set_charge_limit(car, _int_or_none(arguments.get("percent"))),
        }
        action = actions.get(name)
        if action is None:
            return _ble_envelope(car.vin, name, result=False, reason=f"Unrecognized command: {name}")
        car.state, car.wake_at, car.last_activity_at = "online", None, now
        action()
        # Like TeslaBleHttpProxy, a refusal by the car (is_charging, not_charging …) is not passed on: it answers
        # that the command was processed.
        return _ble_envelope(car.vin, name, reason=_BLE_DONE)

    def _token(self, form: Any) -> web.Response:
        form = form if isinstance(form, dict) else {}
        if form.get("grant_type") != "refresh_token" or form.get("client_id") != self.client_id:
            return web.json_response({"error": "invalid_request"}, status=400)
        if form.get("refresh_token") != self.refresh_token:
            return web.json_response({"error": "login_required"}, status=401)
        self._issue_tokens()
        return web.json_response(
            {
                "access_token": self.access_token,
                "refresh_token": self.refresh_token,
                "expires_in": self.access_token_lifetime_s,
                "token_type": "Bearer",
            }
        )

    def _issue_tokens(self) -> None:
        # Refresh tokens are single-use: each grant replaces both, and the old refresh token stops working.
        self._issued += 1
        self.access_token = f"access-{self._issued}{self.token_tag}"
        self.refresh_token = f"refresh-{self._issued}{self.token_tag}"

    def _wake(self, car: FakeCar, now: float) -> web.Response:
        if car.state != "online" and car.wake_at is None and car.wakeable:
            car.wake_at = now + car.wake_delay_s
            self._advance(car, now)
        return _envelope(self._summary(car))

    def _command(self, car: FakeCar, name: str, body: Any) -> web.Response:
        arguments = body if isinstance(body, dict) else {}
        if name == "charge_start":
            result = _charge_start(car)
        elif name == "charge_stop":
            result = _charge_stop(car)
        elif name == "set_charging_amps":
            result = _set_charging_amps(car, arguments.get("charging_amps"))
        elif name == "set_charge_limit":
            result = _set_charge_limit(car, arguments.get("percent"))
        else:
            return _envelope(None, 400, error="invalid_command")
        return _envelope({"result": result is None, "reason": result or ""})

    def _advance(self, car: FakeCar, now: float) -> None:
        if car.wake_at is not None and now >= car.wake_at:
            car.state, car.last_activity_at, car.wake_at = "online", car.wake_at, None
        if car.charging and car.state == "online":
            energy_wh = car.power_w * max(0.0, now - car.integrated_at) / 3600.0
            car.charge_energy_added_wh += energy_wh
            car.battery_level = min(100.0, car.battery_level + energy_wh / car.capacity_wh * 100.0)
            if car.battery_level >= car.charge_limit_soc:
                car.charging_state = "Complete"
            car.last_activity_at = now  # a charging car never sleeps
        car.integrated_at = now
        if car.state == "online" and now - car.last_activity_at >= car.sleep_after_idle_s:
            car.state = "asleep"

    def _all_cars(self) -> list[FakeCar]:
        now = self._clock()
        for car in self.cars.values():
            self._advance(car, now)
        return list(self.cars.values())

    @staticmethod
    def _summary(car: FakeCar) -> dict[str, Any]:
        return {
            "id": car.vehicle_id,
            "vehicle_id": car.vehicle_id + 1_000,
            "vin": car.vin,
            "display_name": car.display_name,
            "state": car.state,
            "in_service": False,
            "id_s": str(car.vehicle_id),
            "api_version": 71,
            "access_type": "OWNER",
        }

    def _vehicle_data(self, car: FakeCar, endpoints: str | None) -> dict[str, Any]:
        wanted = set((endpoints or "charge_state;drive_state;location_data").split(";"))
        data = self._summary(car)
        timestamp = int(self._clock() * 1000)
        if "charge_state" in wanted:
            data["charge_state"] = _charge_state(car, timestamp)
        if wanted & {"drive_state", "location_data"}:
            drive: dict[str, Any] = {"shift_state": None, "speed": None, "power": -car.power_w / 1000.0}
            if "location_data" in wanted:
                drive |= {"latitude": car.latitude, "longitude": car.longitude}
            data["drive_state"] = drive | {"timestamp": timestamp}
        return data


def _charge_state(car: FakeCar, timestamp: int) -> dict[str, Any]:
    charging = car.charging
    return {
        "battery_level": round(car.battery_level),
        "usable_battery_level": round(car.battery_level),
        "charge_limit_soc": car.charge_limit_soc,
        "charge_limit_soc_min": 50,
        "charge_limit_soc_max": 100,
        "charging_state": car.charging_state,
        "charger_actual_current": car.actual_current_a,
        "charger_voltage": car.voltage_v if charging else 0,
        "charger_phases": car.phases if charging else None,
        "charger_pilot_current": car.charge_current_request_max,
        "charger_power": round(car.power_w / 1000.0),
        "charge_current_request": car.charge_amps,
        "charge_current_request_max": car.charge_current_request_max,
        "charge_amps": car.charge_amps,
        "charge_energy_added": round(car.charge_energy_added_wh / 1000.0, 2),
        "time_to_full_charge": _hours_to_full(car),
        "charge_port_door_open": car.plugged_in,
        "scheduled_charging_pending": False,
        "timestamp": timestamp,
    }


def _hours_to_full(car: FakeCar) -> float:
    if not car.charging or car.power_w <= 0:
        return 0.0
    missing_wh = max(0.0, car.charge_limit_soc - car.battery_level) / 100.0 * car.capacity_wh
    return round(missing_wh / car.power_w, 2)


def _charge_start(car: FakeCar) -> str | None:
    if not car.plugged_in:
        return "disconnected"
    if car.charging:
        return "is_charging"
    if car.battery_level >= car.charge_limit_soc:
        car.charging_state = "Complete"
        return "complete"
    car.charging_state = "Charging"
    return None


def _charge_stop(car: FakeCar) -> str | None:
    if not car.charging:
        return "not_charging"
    car.charging_state = "Stopped"
    return None


def _set_charging_amps(car: FakeCar, amps: Any) -> str | None:
    if isinstance(amps, bool) or not isinstance(amps, int) or amps < 0:
        return "invalid_value"
    if amps < _LOW_AMPS and car.low_amps_armed != amps:
        # The real quirk: one request below 5 A lands at 5 A; the same value sent again is taken.
        car.low_amps_armed, car.charge_amps = amps, _LOW_AMPS
        return None
    car.low_amps_armed = None
    car.charge_amps = amps
    return None


def _set_charge_limit(car: FakeCar, percent: Any) -> str | None:
    if isinstance(percent, bool) or not isinstance(percent, int) or not 50 <= percent <= 100:
        return "invalid_value"
    if percent == car.charge_limit_soc:
        return "already_set"
    car.charge_limit_soc = percent
    return None


def _body_controller_state(car: FakeCar) -> dict[str, str]:
    sleep = "VEHICLE_SLEEP_STATUS_AWAKE" if car.state == "online" else "VEHICLE_SLEEP_STATUS_ASLEEP"
    return {
        "vehicleLockState": "VEHICLELOCKSTATE_LOCKED",
        "vehicleSleepStatus": sleep,
        "userPresence": "VEHICLE_USER_PRESENCE_NOT_PRESENT",
    }


def _ble_envelope(vin: str, command: str, *, result: bool = True, reason: str = "", data: Any = None) -> web.Response:
    """TeslaBleHttpProxy's answer: its own envelope, HTTP 503 whenever `result` is false."""
    body: dict[str, Any] = {"result": result, "reason": reason, "vin": vin, "command": command}
    if data is not None:
        body["response"] = data
    return web.json_response({"response": body}, status=200 if result else 503)


def _int_or_none(value: Any) -> Any:
    """The proxy takes numbers as JSON numbers or as strings (`{"charging_amps": "5"}` in its README)."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return value


def _envelope(response: Any, status: int = 200, *, error: str | None = None) -> web.Response:
    payload: dict[str, Any] = {"response": response}
    if error is not None:
        payload |= {"error": error, "error_description": ""}
    return web.json_response(payload, status=status)


def _fault_response(fault: _Fault) -> web.Response:
    headers: dict[str, str] = {}
    if fault.retry_after is not None:
        headers["Retry-After"] = fault.retry_after
    if fault.alt_svc is not None:
        headers["Alt-Svc"] = fault.alt_svc
    errors = {421: "misdirected request: wrong region", 429: "rate limited", 408: _ASLEEP_ERROR}
    error = errors.get(fault.status, "upstream internal error" if fault.status >= 500 else "request failed")
    return web.json_response(
        {"response": None, "error": error, "error_description": ""}, status=fault.status, headers=headers
    )


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    return header.removeprefix("Bearer ") if header.startswith("Bearer ") else None


async def _read_body(request: web.Request) -> Any:
    if not request.can_read_body:
        return None
    if request.content_type == "application/x-www-form-urlencoded":
        return dict(await request.post())
    raw = await request.read()
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")
