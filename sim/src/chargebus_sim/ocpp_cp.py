"""A simulated OCPP wallbox with a car: the charge-point side of the `ocpp` library, over a real WebSocket.

It speaks 1.6J or 2.0.1, has one or two connectors, and a car on each that follows the effective limit with a ramp
(a few amps per second, as real cars do). The effective limit follows OCPP's rules: a TxProfile of the running
transaction, else the connector's TxDefaultProfile, else connector 0's, else the wallbox's own maximum. Quirks seen
in real chargers can be switched on per instance: refusing current (A) profiles, accepting profiles and ignoring
them, sending no meter values until MeterValueSampleInterval is configured, reporting power in kW, dropping the
connection. This is an independent implementation for tests, the benchmark and the demo: it shares no code with
the bridge it talks to.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import logging
import signal
import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

log = logging.getLogger("chargebus_sim.ocpp")

MEASURANDS = ("Energy.Active.Import.Register", "Power.Active.Import", "Current.Import", "Voltage")
PHASES = ("L1", "L2", "L3")
#: Below this a car does not charge (IEC 61851).
CAR_MIN_A = 6.0


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Quirks:
    reject_amps: bool = False  # refuses profiles in A (some take W only)
    ignore_limits: bool = False  # accepts profiles, draws what it likes (go-e)
    meter_only_when_configured: bool = False  # no MeterValues until MeterValueSampleInterval is set
    power_in_kw: bool = False  # Power.Active.Import in kW, energy in kWh
    current_in_ma: bool = False  # Current.Import in mA, labelled A
    drop_after_s: float | None = None  # closes the WebSocket this long after each boot


@dataclass
class Car:
    """A car on a connector: draws up to `max_a` on `phases`, moving towards its allowance at `ramp_a_per_s`."""

    id_tag: str | None = None
    max_a: float = 16.0
    phases: int = 3
    ramp_a_per_s: float = 10.0
    current_a: float = 0.0

    def follow(self, allowed_a: float, dt: float) -> None:
        target = min(self.max_a, allowed_a) if allowed_a >= CAR_MIN_A else 0.0
        step = self.ramp_a_per_s * dt
        if self.current_a < target:
            self.current_a = min(target, self.current_a + step)
        else:
            self.current_a = max(target, self.current_a - step)


@dataclass
class Socket:
    """One connector of the wallbox."""

    connector_id: int
    car: Car | None = None
    transaction_id: int | str | None = None
    energy_wh: float = 1_000_000.0
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)  # purpose → profile (snake_case)
    status: str = "Available"


@dataclass
class ChargerSpec:
    ocpp_id: str
    version: str = "1.6"  # 1.6 | 2.0.1
    connectors: int = 1
    phases: int = 3
    voltage_v: float = 230.0
    max_current_a: float = 32.0
    password: str | None = None
    quirks: Quirks = field(default_factory=Quirks)
    measurands: tuple[str, ...] = MEASURANDS
    #: Meter values are sent at this interval until the CSMS sets another (0: none until it does).
    meter_interval_s: float = 0.0
    auto_start: bool = True  # plugging in starts a transaction (free charging or a tag held to the reader)
    reconnect_s: float = 0.3
    #: False: after a lost connection the wallbox reconnects without a new BootNotification (it did not reboot).
    boot_on_reconnect: bool = True


class Wallbox:
    """The wallbox's own logic, apart from the wire: profiles, effective limits, the cars' physics."""

    def __init__(self, spec: ChargerSpec) -> None:
        self.spec = spec
        self.sockets = {n: Socket(n) for n in range(1, spec.connectors + 1)}
        self.default_profiles: dict[str, Any] = {}  # connector 0's TxDefaultProfile
        self.config: dict[str, str] = {
            "MeterValueSampleInterval": str(int(spec.meter_interval_s)),
            "MeterValuesSampledData": "Energy.Active.Import.Register",
            "SupportedFeatureProfiles": "Core,SmartCharging,RemoteTrigger",
            "ChargingScheduleAllowedChargingRateUnit": "Power" if spec.quirks.reject_amps else "Current,Power",
            "ChargeProfileMaxStackLevel": "8",
            "HeartbeatInterval": "60",
        }
        self.meter_configured = False
        self._last = time.monotonic()
        self._tx_ids = itertools.count(1)

    # -- profiles -------------------------------------------------------------------------------------------

    def take_profile(self, connector_id: int, profile: dict[str, Any]) -> str:
        schedule = profile["charging_schedule"]
        schedule = schedule[0] if isinstance(schedule, list) else schedule
        if schedule["charging_rate_unit"] == "A" and self.spec.quirks.reject_amps:
            return "Rejected"
        purpose = profile["charging_profile_purpose"]
        if connector_id == 0:
            if purpose != "TxDefaultProfile":
                return "Rejected"
            self.default_profiles[purpose] = profile
        elif connector_id in self.sockets:
            self.sockets[connector_id].profiles[purpose] = profile
        else:
            return "Rejected"
        return "Accepted"

    def _amps_of(self, profile: dict[str, Any]) -> float:
        schedule = profile["charging_schedule"]
        schedule = schedule[0] if isinstance(schedule, list) else schedule
        period = schedule["charging_schedule_period"][0]
        limit = float(period["limit"])
        if schedule["charging_rate_unit"] == "W":
            phases = int(period.get("number_phases") or self.spec.phases)
            return limit / (self.spec.voltage_v * phases)
        return limit

    def effective_limit_a(self, connector_id: int) -> float:
        socket = self.sockets[connector_id]
        if self.spec.quirks.ignore_limits:
            return self.spec.max_current_a
        chosen: dict[str, Any] | None = None
        tx_profile = socket.profiles.get("TxProfile")
        if socket.transaction_id is not None and tx_profile is not None:
            chosen = tx_profile
        else:
            chosen = socket.profiles.get("TxDefaultProfile") or self.default_profiles.get("TxDefaultProfile")
        if chosen is None:
            return self.spec.max_current_a
        return min(self.spec.max_current_a, self._amps_of(chosen))

    # -- physics --------------------------------------------------------------------------------------------

    def advance(self) -> None:
        now = time.monotonic()
        dt, self._last = now - self._last, now
        for n, socket in self.sockets.items():
            car = socket.car
            if car is None:
                continue
            allowed = self.effective_limit_a(n) if socket.transaction_id is not None else 0.0
            car.follow(allowed, dt)
            socket.energy_wh += car.current_a * car.phases * self.spec.voltage_v * dt / 3600

    def status_of(self, connector_id: int) -> str:
        socket = self.sockets[connector_id]
        if socket.car is None:
            return "Available"
        if socket.transaction_id is None:
            return "Preparing"
        if self.effective_limit_a(connector_id) < CAR_MIN_A:
            return "SuspendedEVSE"
        return "Charging"

    def sampled_values(self, connector_id: int) -> list[dict[str, Any]]:
        socket = self.sockets[connector_id]
        car = socket.car
        current = car.current_a if car is not None else 0.0
        phases = car.phases if car is not None else self.spec.phases
        power = current * phases * self.spec.voltage_v
        kw = self.spec.quirks.power_in_kw
        wanted = [m for m in self.config["MeterValuesSampledData"].split(",") if m in self.spec.measurands]
        values: list[dict[str, Any]] = []
        for measurand in wanted:
            if measurand == "Energy.Active.Import.Register":
                energy = socket.energy_wh / 1000 if kw else socket.energy_wh
                values.append(_sample(f"{energy:.3f}", measurand, "kWh" if kw else "Wh"))
            elif measurand == "Power.Active.Import":
                values.append(_sample(f"{power / 1000 if kw else power:.3f}", measurand, "kW" if kw else "W"))
            elif measurand == "Current.Import":
                for index, phase in enumerate(PHASES[: self.spec.phases]):
                    amps = current if index < phases else 0.0
                    if self.spec.quirks.current_in_ma:
                        amps *= 1000
                    values.append(_sample(f"{amps:.2f}", measurand, "A", phase))
            elif measurand == "Voltage":
                values.extend(
                    _sample(f"{self.spec.voltage_v:.1f}", measurand, "V", f"{phase}-N")
                    for phase in PHASES[: self.spec.phases]
                )
        return values

    def next_transaction_id(self) -> int:
        return next(self._tx_ids)


def _sample(value: str, measurand: str, unit: str, phase: str | None = None) -> dict[str, Any]:
    sample: dict[str, Any] = {"value": value, "measurand": measurand, "unit": unit, "context": "Sample.Periodic"}
    if phase is not None:
        sample["phase"] = phase
    return sample


class _Client16(ChargePoint16):  # type: ignore[misc]  # the ocpp library ships no type hints
    def __init__(self, sim: OcppChargerSim, connection: ClientConnection) -> None:
        super().__init__(sim.spec.ocpp_id, connection, response_timeout=10)
        self.sim = sim

    @on("GetConfiguration")
    def on_get_configuration(self, key: list[str] | None = None, **_: Any) -> Any:
        config = self.sim.box.config
        keys = key or list(config)
        known = [{"key": k, "readonly": False, "value": config[k]} for k in keys if k in config]
        unknown = [k for k in keys if k not in config]
        return result16.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @on("ChangeConfiguration")
    def on_change_configuration(self, key: str, value: str) -> Any:
        return result16.ChangeConfiguration(status=self.sim.change_configuration(key, value))

    @on("SetChargingProfile")
    def on_set_charging_profile(self, connector_id: int, cs_charging_profiles: dict[str, Any]) -> Any:
        return result16.SetChargingProfile(status=self.sim.take_profile(connector_id, cs_charging_profiles))

    @on("ClearChargingProfile")
    def on_clear_charging_profile(self, **_: Any) -> Any:
        for socket in self.sim.box.sockets.values():
            socket.profiles.pop("TxProfile", None)
        return result16.ClearChargingProfile(status="Accepted")

    @on("RemoteStartTransaction")
    def on_remote_start(self, id_tag: str, connector_id: int | None = None, **_: Any) -> Any:
        return result16.RemoteStartTransaction(status=self.sim.remote_start(connector_id or 1, id_tag))

    @on("RemoteStopTransaction")
    def on_remote_stop(self, transaction_id: int) -> Any:
        return result16.RemoteStopTransaction(status=self.sim.remote_stop(transaction_id))

    @on("TriggerMessage")
    def on_trigger(self, requested_message: str, **_: Any) -> Any:
        self.sim.spawn(self.sim.send_statuses())
        del requested_message
        return result16.TriggerMessage(status="Accepted")

    # -- what the charger sends ---------------------------------------------------------------------------------

    async def boot(self) -> int:
        result = await self.call(
            call16.BootNotification(charge_point_vendor="chargebus-sim", charge_point_model="Wallbox 1.6")
        )
        return int(result.interval)

    async def heartbeat(self) -> None:
        await self.call(call16.Heartbeat())

    async def status(self, connector_id: int, status: str) -> None:
        await self.call(call16.StatusNotification(connector_id=connector_id, error_code="NoError", status=status))

    async def meter_values(self, connector_id: int, values: list[dict[str, Any]], tx: int | str | None) -> None:
        await self.call(
            call16.MeterValues(
                connector_id=connector_id,
                transaction_id=None if tx is None else int(tx),
                meter_value=[{"timestamp": _now_iso(), "sampled_value": values}],
            )
        )

    async def start_transaction(self, connector_id: int, id_tag: str, meter_start_wh: float) -> int | str:
        result = await self.call(
            call16.StartTransaction(
                connector_id=connector_id, id_tag=id_tag, meter_start=int(meter_start_wh), timestamp=_now_iso()
            )
        )
        return int(result.transaction_id)

    async def stop_transaction(self, transaction_id: int | str, meter_stop_wh: float) -> None:
        await self.call(
            call16.StopTransaction(
                transaction_id=int(transaction_id), meter_stop=int(meter_stop_wh), timestamp=_now_iso()
            )
        )


class _Client201(ChargePoint201):  # type: ignore[misc]  # the ocpp library ships no type hints
    """2.0.1: the same wallbox; EVSE ids are the connector numbers, configuration is device-model variables."""

    _VARIABLES: ClassVar[dict[tuple[str, str], str]] = {
        ("SampledDataCtrlr", "TxUpdatedInterval"): "MeterValueSampleInterval",
        ("AlignedDataCtrlr", "Interval"): "MeterValueSampleInterval",
        ("SampledDataCtrlr", "TxUpdatedMeasurands"): "MeterValuesSampledData",
        ("AlignedDataCtrlr", "Measurands"): "MeterValuesSampledData",
        ("SmartChargingCtrlr", "RateUnit"): "ChargingScheduleAllowedChargingRateUnit",
        ("SmartChargingCtrlr", "ProfileStackLevel"): "ChargeProfileMaxStackLevel",
        ("SmartChargingCtrlr", "Enabled"): "",
    }

    def __init__(self, sim: OcppChargerSim, connection: ClientConnection) -> None:
        super().__init__(sim.spec.ocpp_id, connection, response_timeout=10)
        self.sim = sim
        self._seq = itertools.count()

    def _variable(self, item: dict[str, Any]) -> tuple[str, str]:
        return str(item["component"]["name"]), str(item["variable"]["name"])

    @on("GetVariables")
    def on_get_variables(self, get_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        results = []
        for item in get_variable_data:
            key = self._VARIABLES.get(self._variable(item))
            found = key is not None
            value = "true" if key == "" else self.sim.box.config.get(key or "", "")
            if key == "ChargingScheduleAllowedChargingRateUnit":  # 2.0.1 spells the units A and W
                value = value.replace("Current", "A").replace("Power", "W")
            results.append(
                {
                    "attribute_status": "Accepted" if found else "UnknownVariable",
                    "attribute_value": value if found else None,
                    "component": item["component"],
                    "variable": item["variable"],
                }
            )
        return result201.GetVariables(get_variable_result=results)

    @on("SetVariables")
    def on_set_variables(self, set_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        results = []
        for item in set_variable_data:
            key = self._VARIABLES.get(self._variable(item))
            status = "UnknownVariable" if not key else self.sim.change_configuration(key, item["attribute_value"])
            results.append({"attribute_status": status, "component": item["component"], "variable": item["variable"]})
        return result201.SetVariables(set_variable_result=results)

    @on("SetChargingProfile")
    def on_set_charging_profile(self, evse_id: int, charging_profile: dict[str, Any]) -> Any:
        return result201.SetChargingProfile(status=self.sim.take_profile(evse_id, charging_profile))

    @on("ClearChargingProfile")
    def on_clear_charging_profile(self, **_: Any) -> Any:
        for socket in self.sim.box.sockets.values():
            socket.profiles.pop("TxProfile", None)
        return result201.ClearChargingProfile(status="Accepted")

    @on("RequestStartTransaction")
    def on_request_start(
        self, id_token: dict[str, Any], remote_start_id: int, evse_id: int | None = None, **_: Any
    ) -> Any:
        del remote_start_id
        return result201.RequestStartTransaction(status=self.sim.remote_start(evse_id or 1, str(id_token["id_token"])))

    @on("RequestStopTransaction")
    def on_request_stop(self, transaction_id: str) -> Any:
        return result201.RequestStopTransaction(status=self.sim.remote_stop(transaction_id))

    async def boot(self) -> int:
        result = await self.call(
            call201.BootNotification(
                charging_station={"vendor_name": "chargebus-sim", "model": "Wallbox 2.0.1"}, reason="PowerUp"
            )
        )
        return int(result.interval)

    async def heartbeat(self) -> None:
        await self.call(call201.Heartbeat())

    async def status(self, connector_id: int, status: str) -> None:
        connector_status = "Available" if status == "Available" else "Occupied"
        await self.call(
            call201.StatusNotification(
                timestamp=_now_iso(), connector_status=connector_status, evse_id=connector_id, connector_id=1
            )
        )
        tx = self.sim.box.sockets[connector_id].transaction_id
        if tx is not None:
            await self._event("Updated", "ChargingStateChanged", connector_id, tx, None)

    def _charging_state(self, connector_id: int) -> str:
        status = self.sim.box.status_of(connector_id)
        return {"Charging": "Charging", "SuspendedEVSE": "SuspendedEVSE", "Preparing": "EVConnected"}.get(
            status, "Idle"
        )

    async def _event(
        self,
        event_type: str,
        trigger: str,
        connector_id: int,
        tx: int | str,
        values: list[dict[str, Any]] | None,
        *,
        id_tag: str | None = None,
    ) -> None:
        await self.call(
            call201.TransactionEvent(
                event_type=event_type,
                timestamp=_now_iso(),
                trigger_reason=trigger,
                seq_no=next(self._seq),
                transaction_info={"transaction_id": str(tx), "charging_state": self._charging_state(connector_id)},
                evse={"id": connector_id, "connector_id": 1},
                id_token=None if id_tag is None else {"id_token": id_tag, "type": "ISO14443"},
                meter_value=None if not values else [{"timestamp": _now_iso(), "sampled_value": values}],
            )
        )

    async def meter_values(self, connector_id: int, values: list[dict[str, Any]], tx: int | str | None) -> None:
        converted = [_sample201(v) for v in values]
        if tx is not None:
            await self._event("Updated", "MeterValuePeriodic", connector_id, tx, converted)
            return
        await self.call(
            call201.MeterValues(
                evse_id=connector_id, meter_value=[{"timestamp": _now_iso(), "sampled_value": converted}]
            )
        )

    async def start_transaction(self, connector_id: int, id_tag: str, meter_start_wh: float) -> int | str:
        tx = f"sim-{self.sim.box.next_transaction_id()}"
        start = [_sample201(_sample(f"{meter_start_wh:.3f}", "Energy.Active.Import.Register", "Wh"))]
        self.sim.box.sockets[connector_id].transaction_id = tx
        await self._event("Started", "CablePluggedIn", connector_id, tx, start, id_tag=id_tag)
        return tx

    async def stop_transaction(self, transaction_id: int | str, meter_stop_wh: float) -> None:
        connector_id = next((n for n, s in self.sim.box.sockets.items() if s.transaction_id == transaction_id), 1)
        stop = [_sample201(_sample(f"{meter_stop_wh:.3f}", "Energy.Active.Import.Register", "Wh"))]
        await self._event("Ended", "EVCommunicationLost", connector_id, transaction_id, stop)


def _sample201(sample: dict[str, Any]) -> dict[str, Any]:
    converted: dict[str, Any] = {
        "value": float(sample["value"]),
        "measurand": sample["measurand"],
        "context": sample["context"],
        "unit_of_measure": {"unit": sample["unit"]},
    }
    if "phase" in sample:
        converted["phase"] = sample["phase"]
    return converted


class OcppChargerSim:
    """The wallbox on the wire: connects (and reconnects) to a CSMS, boots, reports, obeys (or not)."""

    def __init__(self, spec: ChargerSpec, url: str, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.spec = spec
        self.url = url.rstrip("/") + "/" + spec.ocpp_id
        self.ssl_context = ssl_context
        self.box = Wallbox(spec)
        self.client: _Client16 | _Client201 | None = None
        self.connection: ClientConnection | None = None
        self.connected = asyncio.Event()
        self.booted = asyncio.Event()
        self.heartbeat_s = 60.0
        #: (monotonic time, connector, profile) of every SetChargingProfile received.
        self.profiles_received: list[tuple[float, int, dict[str, Any]]] = []
        self.refusals: list[int] = []
        self.boots = 0
        self.sessions = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._meter_wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None

    # -- control from tests and the demo -----------------------------------------------------------------------

    def start(self) -> None:
        self._runner = asyncio.create_task(self.run(), name=f"ocpp-sim-{self.spec.ocpp_id}")

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        for task in list(self._tasks):
            task.cancel()

    def spawn(self, work: Any) -> None:
        task = asyncio.create_task(self._guard(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, work: Any) -> None:
        with contextlib.suppress(ConnectionClosed, asyncio.TimeoutError):
            await work

    async def plug(self, connector_id: int = 1, car: Car | None = None) -> None:
        socket = self.box.sockets[connector_id]
        socket.car = car or Car()
        await self._status(connector_id)
        if self.spec.auto_start:
            await self._start(connector_id, socket.car.id_tag or "FREE")

    async def unplug(self, connector_id: int = 1) -> None:
        socket = self.box.sockets[connector_id]
        if socket.transaction_id is not None and self.client is not None:
            await self.client.stop_transaction(socket.transaction_id, socket.energy_wh)
        socket.transaction_id = None
        socket.profiles.pop("TxProfile", None)
        socket.car = None
        await self._status(connector_id)

    async def drop(self) -> None:
        """Close the WebSocket (the run loop reconnects)."""
        if self.connection is not None:
            await self.connection.close()

    async def send_raw(self, frame: str) -> None:
        assert self.connection is not None
        await self.connection.send(frame)

    def current_a(self, connector_id: int = 1) -> float:
        self.box.advance()
        car = self.box.sockets[connector_id].car
        return 0.0 if car is None else car.current_a

    # -- handlers' work ----------------------------------------------------------------------------------------

    def change_configuration(self, key: str, value: str) -> str:
        config = self.box.config
        if key == "MeterValuesSampledData":
            wanted = [m.strip() for m in value.split(",") if m.strip()]
            if any(m not in self.spec.measurands for m in wanted):
                return "Rejected"
        elif key not in config:
            return "NotSupported"
        config[key] = value
        if key == "MeterValueSampleInterval":
            self.box.meter_configured = True
            self._meter_wake.set()
        return "Accepted"

    def take_profile(self, connector_id: int, profile: dict[str, Any]) -> str:
        self.box.advance()
        self.profiles_received.append((time.monotonic(), connector_id, profile))
        answer = self.box.take_profile(connector_id, profile)
        for n in self.box.sockets:
            self.spawn(self._status(n, only_if_changed=True))
        return answer

    def remote_start(self, connector_id: int, id_tag: str) -> str:
        socket = self.box.sockets.get(connector_id)
        if socket is None or socket.car is None or socket.transaction_id is not None:
            return "Rejected"
        self.spawn(self._start(connector_id, id_tag))
        return "Accepted"

    def remote_stop(self, transaction_id: int | str) -> str:
        for socket in self.box.sockets.values():
            if socket.transaction_id is not None and str(socket.transaction_id) == str(transaction_id):
                self.spawn(self._stop(socket))
                return "Accepted"
        return "Rejected"

    async def _start(self, connector_id: int, id_tag: str) -> None:
        socket = self.box.sockets[connector_id]
        if self.client is None or socket.transaction_id is not None:
            return
        socket.transaction_id = await self.client.start_transaction(connector_id, id_tag, socket.energy_wh)
        await self._status(connector_id)

    async def _stop(self, socket: Socket) -> None:
        if self.client is None or socket.transaction_id is None:
            return
        await self.client.stop_transaction(socket.transaction_id, socket.energy_wh)
        socket.transaction_id = None
        socket.profiles.pop("TxProfile", None)
        await self._status(socket.connector_id)

    async def _status(self, connector_id: int, *, only_if_changed: bool = False) -> None:
        socket = self.box.sockets[connector_id]
        status = self.box.status_of(connector_id)
        if only_if_changed and status == socket.status:
            return
        socket.status = status
        if self.client is not None and self.booted.is_set():
            await self.client.status(connector_id, status)

    async def send_statuses(self) -> None:
        for n in self.box.sockets:
            await self._status(n)

    # -- the connection ------------------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        if self.spec.password is None:
            return {}
        token = base64.b64encode(f"{self.spec.ocpp_id}:{self.spec.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    async def run(self) -> None:
        subprotocol = "ocpp2.0.1" if self.spec.version == "2.0.1" else "ocpp1.6"
        while True:
            try:
                async with connect(
                    self.url,
                    subprotocols=[subprotocol],  # type: ignore[list-item]
                    additional_headers=self._headers(),
                    ssl=self.ssl_context,
                    proxy=None,
                    open_timeout=5,
                    ping_interval=None,
                    compression=None,
                ) as connection:
                    await self._session(connection)
            except InvalidStatus as exc:
                self.refusals.append(exc.response.status_code)
                log.info(f"sim={self.spec.ocpp_id} event=refused status={exc.response.status_code}")
            except (TimeoutError, OSError, ConnectionClosed) as exc:
                log.info(f"sim={self.spec.ocpp_id} event=disconnected error={exc!r}")
            finally:
                self.connected.clear()
                self.booted.clear()
                self.client = None
                self.connection = None
            await asyncio.sleep(self.spec.reconnect_s)

    async def _session(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.sessions += 1
        client: _Client16 | _Client201 = (
            _Client201(self, connection) if self.spec.version == "2.0.1" else _Client16(self, connection)
        )
        self.client = client
        self.connected.set()
        # The listener ends when the socket closes; the charger's own work then stops at once (a call waiting
        # for an answer would otherwise wait out its time-out).
        tasks = [asyncio.create_task(client.start()), asyncio.create_task(self._operate(client, connection))]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                error = task.exception()
                if error is not None:
                    raise error
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, TimeoutError):
                    await task

    async def _operate(self, client: _Client16 | _Client201, connection: ClientConnection) -> None:
        if self.boots == 0 or self.spec.boot_on_reconnect:
            self.heartbeat_s = float(await client.boot())
            self.boots += 1
        self.booted.set()
        await self.send_statuses()
        for n, socket in self.box.sockets.items():
            if socket.car is not None and socket.transaction_id is None and self.spec.auto_start:
                await self._start(n, socket.car.id_tag or "FREE")
        loops = [self._heartbeats(client), self._meters(client)]
        if self.spec.quirks.drop_after_s is not None:
            loops.append(self._drop_later(connection, self.spec.quirks.drop_after_s))
        await asyncio.gather(*loops)

    async def _heartbeats(self, client: _Client16 | _Client201) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            await client.heartbeat()

    async def _meters(self, client: _Client16 | _Client201) -> None:
        while True:
            interval = float(self.box.config["MeterValueSampleInterval"] or 0)
            silent = self.spec.quirks.meter_only_when_configured and not self.box.meter_configured
            if interval <= 0 or silent:
                self._meter_wake.clear()
                await self._meter_wake.wait()
                continue
            await asyncio.sleep(interval)
            self.box.advance()
            for n, socket in self.box.sockets.items():
                await client.meter_values(n, self.box.sampled_values(n), socket.transaction_id)
                await self._status(n, only_if_changed=True)

    async def _drop_later(self, connection: ClientConnection, after_s: float) -> None:
        await asyncio.sleep(after_s)
        await connection.close()


# -- `chargebus sim ocpp` ------------------------------------------------------------------------------------------

QUIRK_FLAGS = {
    "reject-amps": "reject_amps",
    "ignore-limits": "ignore_limits",
    "meter-only-when-configured": "meter_only_when_configured",
    "power-in-kw": "power_in_kw",
    "current-in-ma": "current_in_ma",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="chargebus sim ocpp", description="OCPP wallboxes (1.6J or 2.0.1) with cars, connecting to a CSMS"
    )
    parser.add_argument("--url", default="ws://127.0.0.1:9000", help="the CSMS, without the charger id")
    parser.add_argument("--id", dest="ids", action="append", help="a wallbox's ocpp_id (repeat for several)")
    parser.add_argument("--version", choices=["1.6", "2.0.1"], default="1.6")
    parser.add_argument("--connectors", type=int, choices=[1, 2], default=1)
    parser.add_argument("--phases", type=int, choices=[1, 3], default=3)
    parser.add_argument("--voltage", type=float, default=230.0)
    parser.add_argument("--password-file", type=Path, help="HTTP Basic-auth password (user = the id)")
    parser.add_argument("--ca-file", type=Path, help="CA of the CSMS certificate, for wss://")
    parser.add_argument("--plug", action="store_true", help="a car is plugged into every connector from the start")
    parser.add_argument("--car-max-a", type=float, default=16.0)
    parser.add_argument("--car-phases", type=int, choices=[1, 2, 3], default=None)
    parser.add_argument("--id-tag", default=None, help="RFID tag of the plugged-in car's session")
    parser.add_argument("--quirk", action="append", choices=sorted(QUIRK_FLAGS), default=[])
    args = parser.parse_args(argv)
    if not args.ids:
        args.ids = ["WB-0042"]
    return args


def specs_from(args: argparse.Namespace) -> list[ChargerSpec]:
    password = args.password_file.read_text(encoding="utf-8").removesuffix("\n") if args.password_file else None
    quirks = Quirks(**{QUIRK_FLAGS[name]: True for name in args.quirk})
    return [
        ChargerSpec(
            ocpp_id,
            version=args.version,
            connectors=args.connectors,
            phases=args.phases,
            voltage_v=args.voltage,
            password=password,
            quirks=quirks,
        )
        for ocpp_id in args.ids
    ]


async def run_wallboxes(args: argparse.Namespace) -> None:
    context = ssl.create_default_context(cafile=str(args.ca_file)) if args.ca_file else None
    sims = [OcppChargerSim(spec, args.url, ssl_context=context) for spec in specs_from(args)]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    for sim in sims:
        sim.start()
    if args.plug:
        for sim in sims:
            await sim.booted.wait()
            for n in sim.box.sockets:
                await sim.plug(n, Car(id_tag=args.id_tag, max_a=args.car_max_a, phases=args.car_phases or args.phases))
    await stop.wait()
    for sim in sims:
        await sim.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
    log.info(f"event=starting url={args.url} ids={','.join(args.ids)} version={args.version}")
    asyncio.run(run_wallboxes(args))
    return 0
