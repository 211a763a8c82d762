"""OCPP 1.6J: the central-system side of one connection, on the `ocpp` library's ChargePoint.

At boot the bridge accepts the charger, reads what it supports (SupportedFeatureProfiles,
ChargingScheduleAllowedChargingRateUnit, ChargeProfileMaxStackLevel, MeterValuesSampledData), sets
MeterValueSampleInterval and the measurands it needs — probing one by one when the charger refuses the whole list,
since chargers differ in what they meter — and only then sends charging profiles.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action, AuthorizationStatus, RegistrationStatus

from chargebus_ocpp.evse import MAX_CONNECTORS
from chargebus_ocpp.profile import OcppVersion, allowed_units
from chargebus_ocpp.session import CALL_TIMEOUT_S, Watchful, checked_call
from chargebus_ocpp.station import Station

log = logging.getLogger("chargebus_ocpp")

#: The measurands the bridge asks for, most important first.
WANTED_MEASURANDS = ("Energy.Active.Import.Register", "Power.Active.Import", "Current.Import", "Voltage")
PROBED_KEYS = (
    "SupportedFeatureProfiles",
    "ChargingScheduleAllowedChargingRateUnit",
    "ChargeProfileMaxStackLevel",
    "MeterValuesSampledData",
    "MeterValueSampleInterval",
)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _meter_wh(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class Csms16(Watchful, ChargePoint):  # type: ignore[misc]  # the ocpp library ships no type hints
    """One 1.6J charger's connection."""

    version: OcppVersion = "1.6"

    def __init__(self, ocpp_id: str, connection: Any, station: Station, *, source: str, heartbeat_s: int) -> None:
        super().__init__(ocpp_id, connection, response_timeout=CALL_TIMEOUT_S)
        self.station = station
        self.source = source
        self.heartbeat_s = heartbeat_s
        self.tasks: set[asyncio.Task[None]] = set()
        self.closed = asyncio.Event()
        self._connection = connection

    # -- the Link the station drives ------------------------------------------------------------------------

    async def set_profile(self, connector_id: int, profile: dict[str, object]) -> str:
        result = await checked_call(
            self, call.SetChargingProfile(connector_id=connector_id, cs_charging_profiles=profile), "SetChargingProfile"
        )
        return str(result.status)

    async def clear_tx_profiles(self, connector_id: int) -> None:
        await checked_call(
            self,
            call.ClearChargingProfile(connector_id=connector_id, charging_profile_purpose="TxProfile"),
            "ClearChargingProfile",
        )

    async def remote_start(self, connector_id: int, id_tag: str) -> str:
        result = await checked_call(
            self, call.RemoteStartTransaction(id_tag=id_tag, connector_id=connector_id), "RemoteStartTransaction"
        )
        return str(result.status)

    async def remote_stop(self, transaction_id: int | str) -> str:
        result = await checked_call(
            self, call.RemoteStopTransaction(transaction_id=int(transaction_id)), "RemoteStopTransaction"
        )
        return str(result.status)

    async def close(self) -> None:
        await self._connection.close()

    # -- messages from the charger --------------------------------------------------------------------------

    @on(Action.boot_notification)
    def on_boot_notification(self, charge_point_vendor: str, charge_point_model: str, **_: Any) -> Any:
        log.info(
            f"event=boot ocpp_id={self.id} version=1.6 vendor={charge_point_vendor!r} model={charge_point_model!r}"
        )
        self.station.capabilities.vendor = charge_point_vendor
        self.station.capabilities.model = charge_point_model
        return call_result.BootNotification(
            current_time=now_iso(), interval=self.heartbeat_s, status=RegistrationStatus.accepted
        )

    @after(Action.boot_notification)
    def after_boot_notification(self, **_: Any) -> None:
        self.station.on_boot(self.station.capabilities.vendor, self.station.capabilities.model)
        self.spawn(self.configure(), "configure")

    @on(Action.heartbeat)
    def on_heartbeat(self) -> Any:
        return call_result.Heartbeat(current_time=now_iso())

    @on(Action.status_notification)
    async def on_status_notification(self, connector_id: int, error_code: str, status: str, **_: Any) -> Any:
        if connector_id == 0:
            log.info(f"event=status ocpp_id={self.id} connector=0 status={status} error_code={error_code}")
        elif connector_id > MAX_CONNECTORS:
            await self.station.report(self.source, f"{self.id}: connector {connector_id} ignored (at most 9)")
        else:
            self.station.on_status(connector_id, status, error_code)
            await self.station.changed()
        return call_result.StatusNotification()

    @on(Action.meter_values)
    async def on_meter_values(
        self, connector_id: int, meter_value: list[dict[str, Any]], transaction_id: int | None = None, **_: Any
    ) -> Any:
        if 1 <= connector_id <= MAX_CONNECTORS:
            await self.station.on_meter_values(connector_id, meter_value, transaction_id)
        return call_result.MeterValues()

    @on(Action.authorize)
    def on_authorize(self, id_tag: str) -> Any:
        del id_tag  # who may charge is the allocator's decision (by VIN): every tag is accepted here
        return call_result.Authorize(id_tag_info={"status": AuthorizationStatus.accepted})

    @on(Action.start_transaction)
    async def on_start_transaction(
        self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **_: Any
    ) -> Any:
        del timestamp
        if not 1 <= connector_id <= MAX_CONNECTORS:
            await self.station.report(self.source, f"{self.id}: transaction on connector {connector_id} ignored")
            return call_result.StartTransaction(transaction_id=0, id_tag_info={"status": AuthorizationStatus.invalid})
        transaction_id = self.station.start_transaction(connector_id, id_tag, _meter_wh(meter_start), None)
        await self.station.changed()
        return call_result.StartTransaction(
            transaction_id=int(transaction_id), id_tag_info={"status": AuthorizationStatus.accepted}
        )

    @on(Action.stop_transaction)
    async def on_stop_transaction(self, meter_stop: int, timestamp: str, transaction_id: int, **_: Any) -> Any:
        del timestamp
        self.station.stop_transaction(transaction_id, _meter_wh(meter_stop))
        await self.station.changed()
        return call_result.StopTransaction(id_tag_info={"status": AuthorizationStatus.accepted})

    # -- configuration at boot -------------------------------------------------------------------------------

    async def configure(self) -> None:
        try:
            await self._read_configuration()
            await self._change("MeterValueSampleInterval", str(int(self.station.meter_interval_s)))
            await self._choose_measurands()
        finally:
            self.station.configured = True
            self.station.wake.set()

    async def _read_configuration(self) -> None:
        result = await checked_call(self, call.GetConfiguration(key=list(PROBED_KEYS)), "GetConfiguration")
        values = {
            str(item.get("key")): item.get("value")
            for item in (result.configuration_key or [])
            if isinstance(item, dict)
        }
        caps = self.station.capabilities
        profiles = values.get("SupportedFeatureProfiles")
        if isinstance(profiles, str):
            caps.feature_profiles = frozenset(p.strip() for p in profiles.split(",") if p.strip())
        caps.allowed_units = allowed_units(values.get("ChargingScheduleAllowedChargingRateUnit"))
        self.station.units.allowed = caps.allowed_units
        level = values.get("ChargeProfileMaxStackLevel")
        if isinstance(level, str) and level.strip().isdigit():
            caps.max_stack_level = int(level)
        measurands = values.get("MeterValuesSampledData")
        if isinstance(measurands, str):
            caps.measurands = tuple(m.strip() for m in measurands.split(",") if m.strip())
        log.info(
            f"event=configuration ocpp_id={self.id} profiles={sorted(caps.feature_profiles or [])} "
            f"units={caps.allowed_units} max_stack_level={caps.max_stack_level} measurands={caps.measurands}"
        )
        if not caps.smart_charging:
            await self.station.report(
                self.source, f"{self.id}: the charger does not offer SmartCharging: it is measured, not controlled"
            )

    async def _change(self, key: str, value: str) -> bool:
        result = await checked_call(self, call.ChangeConfiguration(key=key, value=value), f"ChangeConfiguration {key}")
        accepted = str(result.status) in {"Accepted", "RebootRequired"}
        if not accepted:
            log.info(f"event=configuration_refused ocpp_id={self.id} key={key} value={value!r} status={result.status}")
        return accepted

    async def _choose_measurands(self) -> None:
        """All wanted measurands if the charger takes them, else each one it accepts alone (probe, not assume)."""
        if await self._change("MeterValuesSampledData", ",".join(WANTED_MEASURANDS)):
            self.station.capabilities.measurands = WANTED_MEASURANDS
            return
        taken = [m for m in WANTED_MEASURANDS if await self._change("MeterValuesSampledData", m)]
        if taken:
            await self._change("MeterValuesSampledData", ",".join(taken))
        self.station.capabilities.measurands = tuple(taken)
        missing = [m for m in WANTED_MEASURANDS if m not in taken]
        await self.station.report(
            self.source, f"{self.id}: the charger does not meter {', '.join(missing)}; its EvseState shows less"
        )
