"""A simulated Gen3 Tesla Wall Connector: its local HTTP API over real HTTP (aiohttp).

Answers `GET /api/1/vitals`, `/api/1/lifetime`, `/api/1/version` and `/api/1/wifi_status` with the field names
and shapes real units send. The state is settable (vehicle connected, current per phase, voltages); energy
counters integrate V × I over the injectable clock. `unreachable = True` makes the unit drop every connection
without an answer (like a unit that fell off the Wi-Fi); every request is logged in `requests`.

    async with Gen3Sim.three_phase() as unit:
        unit.plug_in()
        unit.charge(16)
        # point the bridge at unit.host ("127.0.0.1:<port>")

Run alone: `chargebus sim gen3 --port 8080 --preset us --charge 32` (or `python -m chargebus_sim.gen3 …`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

#: Idle units read a little noise on their current and post-contactor voltage sensors.
IDLE_CURRENTS_A = (0.0, 0.3, 0.0)
IDLE_VOLTAGES_V = (0.0, 4.9, 0.0)


@dataclass(frozen=True, slots=True)
class Gen3Request:
    at: float
    method: str
    path: str
    #: HTTP status answered, or None when the connection was dropped (unreachable)
    status: int | None


@dataclass
class Gen3Unit:
    """The unit's electrical state. `split_phase` units (North America) carry their 240 V load on phase B."""

    grid_v: float = 230.0
    grid_hz: float = 50.0
    split_phase: bool = False
    vehicle_connected: bool = False
    #: measured current per phase A, B, C while the contactor is closed
    currents_a: tuple[float, float, float] = (0.0, 0.0, 0.0)
    #: None: derived from `grid_v` (and the split-phase layout) while charging
    voltages_v: tuple[float, float, float] | None = None
    evse_state: int | None = None  # None: derived
    session_energy_wh: float = 0.0
    lifetime_energy_wh: float = 1_070_526.0
    charge_starts: int = 93
    connector_cycles: int = 49
    session_started_at: float | None = None
    current_alerts: list[int] = field(default_factory=list)
    firmware_version: str = "23.44.0+g6b5bc2b7ed3d3c"
    part_number: str = "1529455-02-D"
    serial_number: str = "PGT23123400042"

    @property
    def contactor_closed(self) -> bool:
        return self.vehicle_connected and any(current > 0 for current in self.currents_a)

    def phase_voltages(self) -> tuple[float, float, float]:
        if not self.contactor_closed:
            return IDLE_VOLTAGES_V
        if self.voltages_v is not None:
            return self.voltages_v
        if self.split_phase:  # what US units report: legs to neutral on A and C, the 240 V load on B
            return (round(self.grid_v / 2, 1), self.grid_v, round(self.grid_v / 2, 1))
        a, b, c = (self.grid_v if current > 0 else 0.0 for current in self.currents_a)
        return (a, b, c)

    def phase_currents(self) -> tuple[float, float, float]:
        return self.currents_a if self.contactor_closed else IDLE_CURRENTS_A

    def power_w(self) -> float:
        if not self.contactor_closed:
            return 0.0
        return sum(v * i for v, i in zip(self.phase_voltages(), self.currents_a, strict=True))

    def derived_evse_state(self) -> int:
        if self.evse_state is not None:
            return self.evse_state
        if not self.vehicle_connected:
            return 1
        if not self.contactor_closed:
            return 4
        full = sum(1 for current in self.currents_a if current > 0) == 3
        return 11 if full else 10


class Gen3Sim:
    """Start with `await start()` (or `async with`); `host` is `"127.0.0.1:<port>"` for the bridge's config."""

    def __init__(
        self,
        unit: Gen3Unit | None = None,
        *,
        clock: Callable[[], float] = time.time,
        port: int = 0,
        bind: str = "127.0.0.1",
    ) -> None:
        self.unit = unit or Gen3Unit()
        self.unreachable = False
        self.requests: list[Gen3Request] = []
        self._clock = clock
        self._booted_at = clock()
        self._integrated_at = clock()
        self._wanted_port = port
        self._bind = bind
        self._port: int | None = None
        self._runner: web.AppRunner | None = None

    # -- presets and state changes ---------------------------------------------------------------------------

    @classmethod
    def us_split_phase(cls, **kwargs: Any) -> Self:
        unit = Gen3Unit(grid_v=240.0, grid_hz=60.0, split_phase=True, part_number="1457768-02-G")
        return cls(unit, **kwargs)

    @classmethod
    def three_phase(cls, **kwargs: Any) -> Self:
        return cls(Gen3Unit(grid_v=230.0, grid_hz=50.0), **kwargs)

    def plug_in(self) -> None:
        self._integrate()
        if not self.unit.vehicle_connected:
            self.unit.vehicle_connected = True
            self.unit.connector_cycles += 1
            self.unit.session_energy_wh = 0.0
            self.unit.session_started_at = self._clock()

    def unplug(self) -> None:
        self._integrate()
        self.unit.vehicle_connected = False
        self.unit.currents_a = (0.0, 0.0, 0.0)
        self.unit.session_started_at = None

    def charge(self, amps: float, phases: int = 3) -> None:
        """Draw `amps` on `phases` phases (split-phase units: on their single 240 V circuit)."""
        self._integrate()
        if not self.unit.contactor_closed and amps > 0:
            self.unit.charge_starts += 1
        if self.unit.split_phase:
            self.unit.currents_a = (0.0, amps, 0.0)
        else:
            a, b, c = (amps if phase < phases else 0.0 for phase in range(3))
            self.unit.currents_a = (a, b, c)

    def set_currents(self, a: float, b: float, c: float) -> None:
        self._integrate()
        self.unit.currents_a = (a, b, c)

    def _integrate(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._integrated_at)
        self._integrated_at = now
        energy = self.unit.power_w() * elapsed / 3600.0
        self.unit.session_energy_wh += energy
        self.unit.lifetime_energy_wh += energy

    # -- HTTP -----------------------------------------------------------------------------------------------------

    def vitals(self) -> dict[str, Any]:
        self._integrate()
        unit, now = self.unit, self._clock()
        current_a, current_b, current_c = unit.phase_currents()
        voltage_a, voltage_b, voltage_c = unit.phase_voltages()
        session_s = int(now - unit.session_started_at) if unit.session_started_at is not None else 0
        return {
            "contactor_closed": unit.contactor_closed,
            "vehicle_connected": unit.vehicle_connected,
            "session_s": session_s,
            "grid_v": unit.grid_v,
            "grid_hz": unit.grid_hz,
            "vehicle_current_a": max(current_a, current_b, current_c),
            "currentA_a": current_a,
            "currentB_a": current_b,
            "currentC_a": current_c,
            "currentN_a": 0.0 if unit.split_phase else round(abs(current_a - current_b) / 10, 1),
            "voltageA_v": voltage_a,
            "voltageB_v": voltage_b,
            "voltageC_v": voltage_c,
            "relay_coil_v": 11.9 if unit.contactor_closed else 12.0,
            "pcba_temp_c": 28.4 if unit.contactor_closed else 19.2,
            "handle_temp_c": 24.1 if unit.contactor_closed else 15.3,
            "mcu_temp_c": 33.0 if unit.contactor_closed else 25.1,
            "uptime_s": int(now - self._booted_at),
            "input_thermopile_uv": -233,
            "prox_v": 1.5 if unit.vehicle_connected else 0.0,
            "pilot_high_v": 5.9 if unit.contactor_closed else 11.9,
            "pilot_low_v": -11.9 if unit.vehicle_connected else 11.8,
            "session_energy_wh": round(unit.session_energy_wh, 3),
            "config_status": 5,
            "evse_state": unit.derived_evse_state(),
            "current_alerts": list(unit.current_alerts),
            "evse_not_ready_reasons": [] if unit.vehicle_connected else [1],
        }

    def lifetime(self) -> dict[str, Any]:
        self._integrate()
        unit = self.unit
        return {
            "contactor_cycles": unit.charge_starts,
            "contactor_cycles_loaded": 0,
            "alert_count": len(unit.current_alerts),
            "thermal_foldbacks": 0,
            "avg_startup_temp": 32.1,
            "charge_starts": unit.charge_starts,
            "energy_wh": int(unit.lifetime_energy_wh),
            "connector_cycles": unit.connector_cycles,
            "uptime_s": int(self._clock() - self._booted_at) + 13_000_000,
            "charging_time_s": 1_056_378,
        }

    def version(self) -> dict[str, Any]:
        return {
            "firmware_version": self.unit.firmware_version,
            "part_number": self.unit.part_number,
            "serial_number": self.unit.serial_number,
            "git_branch": "HEAD",
            "web_service": "1.0.0",
        }

    def wifi_status(self) -> dict[str, Any]:
        return {
            "wifi_ssid": "Z2FyYWdl",
            "wifi_signal_strength": 64,
            "wifi_rssi": -58,
            "wifi_snr": 34,
            "wifi_connected": True,
            "wifi_infra_ip": "127.0.0.1",
            "internet": True,
            "wifi_mac": "02:00:00:00:00:42",
        }

    def requests_to(self, path: str) -> list[Gen3Request]:
        return [request for request in self.requests if request.path == path]

    @web.middleware
    async def _record(self, request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        if self.unreachable:
            self.requests.append(Gen3Request(self._clock(), request.method, request.path, None))
            if request.transport is not None:
                request.transport.close()  # the client sees the connection drop without an answer
            return web.Response(status=503)
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPException as exc:
            self.requests.append(Gen3Request(self._clock(), request.method, request.path, exc.status))
            raise
        self.requests.append(Gen3Request(self._clock(), request.method, request.path, response.status))
        return response

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        answers: dict[str, Callable[[], dict[str, Any]]] = {
            "/api/1/vitals": self.vitals,
            "/api/1/lifetime": self.lifetime,
            "/api/1/version": self.version,
            "/api/1/wifi_status": self.wifi_status,
        }
        for path, answer in answers.items():
            app.router.add_get(path, _json_handler(answer))
        return app

    async def start(self) -> None:
        runner = web.AppRunner(self._app(), handle_signals=False)
        await runner.setup()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self._bind, self._wanted_port))
        self._port = listener.getsockname()[1]
        await web.SockSite(runner, listener).start()
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the simulator is not started")
        return self._port

    @property
    def host(self) -> str:
        """The `host` value for `[[tesla.wall_connectors]]`."""
        address = "127.0.0.1" if self._bind in ("0.0.0.0", "") else self._bind  # noqa: S104 - compared, not bound
        return f"{address}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"


def _json_handler(answer: Callable[[], dict[str, Any]]) -> Callable[[web.Request], Any]:
    async def handle(_request: web.Request) -> web.Response:
        return web.json_response(answer())

    return handle


async def _serve(args: argparse.Namespace) -> None:
    presets: dict[str, Callable[..., Gen3Sim]] = {
        "us": Gen3Sim.us_split_phase,
        "eu3": Gen3Sim.three_phase,
        "eu1": Gen3Sim.three_phase,
    }
    sim = presets[args.preset](port=args.port, bind=args.bind)
    if args.charge:
        sim.plug_in()
        sim.charge(args.charge, phases=1 if args.preset == "eu1" else 3)
    async with sim:
        print(f"gen3 simulator on {sim.url} (preset {args.preset})", flush=True)  # noqa: T201 - a tool's output
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chargebus sim gen3", description="simulated Gen3 Wall Connector")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    parser.add_argument("--preset", choices=["us", "eu1", "eu3"], default="eu3")
    parser.add_argument("--charge", type=float, default=0.0, help="plug a car in and draw this many amps")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
