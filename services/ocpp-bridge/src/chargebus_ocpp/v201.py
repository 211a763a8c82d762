"""OCPP 2.0.1: the CSMS side of one connection, on the `ocpp` library's ChargePoint.

2.0.1 numbers EVSEs where 1.6 numbers connectors: EVSE n is the bridge's connector n (`ocpp-<name>[-<n>]`).
Transactions arrive as TransactionEvent (Started / Updated / Ended, with the charging state and meter values);
configuration is device-model variables: the bridge reads SmartChargingCtrlr (Enabled, RateUnit,
ProfileStackLevel) and sets the sampled and aligned meter intervals and measurands, probing one measurand at a time
when the whole list is refused.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

from ocpp.routing import after, on
from ocpp.v201 import ChargePoint, call, call_result

from chargebus_ocpp.evse import MAX_CONNECTORS, parse_sampled_values
from chargebus_ocpp.profile import OcppVersion, allowed_units
from chargebus_ocpp.session import CALL_TIMEOUT_S, Watchful, checked_call
from chargebus_ocpp.station import Station
from chargebus_ocpp.v16 import WANTED_MEASURANDS, now_iso

log = logging.getLogger("chargebus_ocpp")

#: A transaction's charging state as the connector status the bridge shows (the 1.6 words, which 2.0.1 refines).
CHARGING_STATE_STATUS = {
    "Charging": "Charging",
    "SuspendedEV": "SuspendedEV",
    "SuspendedEVSE": "SuspendedEVSE",
    "EVConnected": "Preparing",
    "Idle": "Occupied",
}
_remote_ids = itertools.count(1)


def _variable(component: str, variable: str) -> dict[str, Any]:
    return {"component": {"name": component}, "variable": {"name": variable}}


class Csms201(Watchful, ChargePoint):  # type: ignore[misc]  # the ocpp library ships no type hints
    """One 2.0.1 charging station's connection."""

    version: OcppVersion = "2.0.1"

    def __init__(self, ocpp_id: str, connection: Any, station: Station, *, source: str, heartbeat_s: int) -> None:
        super().__init__(ocpp_id, connection, response_timeout=CALL_TIMEOUT_S)
        self.station = station
        self.source = source
        self.heartbeat_s = heartbeat_s
        self.tasks: set[asyncio.Task[None]] = set()
        self.closed = asyncio.Event()
        self._connection = connection
        self.charging_states: dict[int, str] = {}

    # -- the Link the station drives ------------------------------------------------------------------------

    async def set_profile(self, connector_id: int, profile: dict[str, object]) -> str:
        result = await checked_call(
            self, call.SetChargingProfile(evse_id=connector_id, charging_profile=profile), "SetChargingProfile"
        )
        return str(result.status)

    async def clear_tx_profiles(self, connector_id: int) -> None:
        criteria = {"evse_id": connector_id, "charging_profile_purpose": "TxProfile"}
        await checked_call(self, call.ClearChargingProfile(charging_profile_criteria=criteria), "ClearChargingProfile")

    async def remote_start(self, connector_id: int, id_tag: str) -> str:
        result = await checked_call(
            self,
            call.RequestStartTransaction(
                id_token={"id_token": id_tag, "type": "Central"},
                remote_start_id=next(_remote_ids),
                evse_id=connector_id,
            ),
            "RequestStartTransaction",
        )
        return str(result.status)

    async def remote_stop(self, transaction_id: int | str) -> str:
        result = await checked_call(
            self, call.RequestStopTransaction(transaction_id=str(transaction_id)), "RequestStopTransaction"
        )
        return str(result.status)

    async def close(self) -> None:
        await self._connection.close()

    # -- messages from the charging station ----------------------------------------------------------------

    @on("BootNotification")
    def on_boot_notification(self, charging_station: dict[str, Any], reason: str, **_: Any) -> Any:
        vendor, model = charging_station.get("vendor_name"), charging_station.get("model")
        log.info(f"event=boot ocpp_id={self.id} version=2.0.1 vendor={vendor!r} model={model!r} reason={reason}")
        self.station.capabilities.vendor, self.station.capabilities.model = vendor, model
        return call_result.BootNotification(current_time=now_iso(), interval=self.heartbeat_s, status="Accepted")

    @after("BootNotification")
    def after_boot_notification(self, **_: Any) -> None:
        self.station.on_boot(self.station.capabilities.vendor, self.station.capabilities.model)
        self.spawn(self.configure(), "configure")

    @on("Heartbeat")
    def on_heartbeat(self) -> Any:
        return call_result.Heartbeat(current_time=now_iso())

    @on("StatusNotification")
    async def on_status_notification(self, connector_status: str, evse_id: int, **_: Any) -> Any:
        if 1 <= evse_id <= MAX_CONNECTORS:
            connector = self.station.connector(evse_id)
            charging = self.charging_states.get(evse_id)
            keep = connector.transaction_id is not None and charging is not None and connector_status == "Occupied"
            status = CHARGING_STATE_STATUS.get(charging or "", connector_status) if keep else connector_status
            self.station.on_status(evse_id, status, None)
            await self.station.changed()
        elif evse_id > MAX_CONNECTORS:
            await self.station.report(self.source, f"{self.id}: EVSE {evse_id} ignored (at most {MAX_CONNECTORS})")
        return call_result.StatusNotification()

    @on("MeterValues")
    async def on_meter_values(self, evse_id: int, meter_value: list[dict[str, Any]], **_: Any) -> Any:
        if 1 <= evse_id <= MAX_CONNECTORS:
            await self.station.on_meter_values(evse_id, meter_value)
        return call_result.MeterValues()

    @on("Authorize")
    def on_authorize(self, id_token: dict[str, Any], **_: Any) -> Any:
        del id_token  # who may charge is the allocator's decision (by VIN): every token is accepted here
        return call_result.Authorize(id_token_info={"status": "Accepted"})

    @on("TransactionEvent")
    async def on_transaction_event(
        self,
        event_type: str,
        transaction_info: dict[str, Any],
        evse: dict[str, Any] | None = None,
        id_token: dict[str, Any] | None = None,
        meter_value: list[dict[str, Any]] | None = None,
        **_: Any,
    ) -> Any:
        tx = str(transaction_info.get("transaction_id"))
        connector_id = int(evse["id"]) if evse and "id" in evse else self._connector_of(tx)
        if connector_id is None or not 1 <= connector_id <= MAX_CONNECTORS:
            await self.station.report(self.source, f"{self.id}: transaction {tx[:36]} on no known EVSE ignored")
            return call_result.TransactionEvent()
        tag = str(id_token["id_token"]) if id_token and "id_token" in id_token else None
        connector = self.station.connector(connector_id)
        if event_type == "Started" or (connector.transaction_id != tx and event_type == "Updated"):
            start = parse_sampled_values(meter_value or []).energy_wh
            self.station.start_transaction(connector_id, tag, start, tx)
        elif tag is not None and connector.id_tag is None:
            connector.id_tag = tag
        if meter_value:
            await self.station.on_meter_values(connector_id, meter_value)
        state = transaction_info.get("charging_state")
        if isinstance(state, str):
            self.charging_states[connector_id] = state
            self.station.on_status(connector_id, CHARGING_STATE_STATUS.get(state, state), None)
        if event_type == "Ended":
            self.charging_states.pop(connector_id, None)
            self.station.stop_transaction(tx, parse_sampled_values(meter_value or []).energy_wh)
        await self.station.changed()
        if id_token is not None:
            return call_result.TransactionEvent(id_token_info={"status": "Accepted"})
        return call_result.TransactionEvent()

    def _connector_of(self, tx: str) -> int | None:
        return next((n for n, c in self.station.connectors.items() if c.transaction_id == tx), None)

    # -- configuration at boot -------------------------------------------------------------------------------

    async def configure(self) -> None:
        try:
            await self._read_variables()
            interval = str(int(self.station.meter_interval_s))
            await self._set(
                [("SampledDataCtrlr", "TxUpdatedInterval", interval), ("AlignedDataCtrlr", "Interval", interval)]
            )
            await self._choose_measurands()
        finally:
            self.station.configured = True
            self.station.wake.set()

    async def _read_variables(self) -> None:
        wanted = [
            ("SmartChargingCtrlr", "Enabled"),
            ("SmartChargingCtrlr", "RateUnit"),
            ("SmartChargingCtrlr", "ProfileStackLevel"),
            ("SampledDataCtrlr", "TxUpdatedMeasurands"),
        ]
        result = await checked_call(
            self, call.GetVariables(get_variable_data=[_variable(c, v) for c, v in wanted]), "GetVariables"
        )
        values: dict[str, str] = {}
        for item in result.get_variable_result or []:
            if isinstance(item, dict) and item.get("attribute_status") == "Accepted":
                values[str(item.get("variable", {}).get("name"))] = str(item.get("attribute_value") or "")
        caps = self.station.capabilities
        if values.get("Enabled", "true").lower() == "false":
            caps.feature_profiles = frozenset({"Core"})
            await self.station.report(
                self.source, f"{self.id}: smart charging is disabled in the station: it is measured, not controlled"
            )
        caps.allowed_units = allowed_units(values.get("RateUnit"))
        self.station.units.allowed = caps.allowed_units
        level = values.get("ProfileStackLevel", "")
        if level.isdigit():
            caps.max_stack_level = int(level)
        log.info(
            f"event=configuration ocpp_id={self.id} units={caps.allowed_units} max_stack_level={caps.max_stack_level}"
        )

    async def _set(self, items: list[tuple[str, str, str]]) -> bool:
        data = [{**_variable(c, v), "attribute_value": value} for c, v, value in items]
        result = await checked_call(self, call.SetVariables(set_variable_data=data), "SetVariables")
        statuses = [
            str(item.get("attribute_status")) for item in result.set_variable_result or [] if isinstance(item, dict)
        ]
        return bool(statuses) and all(s in {"Accepted", "RebootRequired"} for s in statuses)

    async def _measurands(self, value: str) -> bool:
        return await self._set(
            [("SampledDataCtrlr", "TxUpdatedMeasurands", value), ("AlignedDataCtrlr", "Measurands", value)]
        )

    async def _choose_measurands(self) -> None:
        if await self._measurands(",".join(WANTED_MEASURANDS)):
            self.station.capabilities.measurands = WANTED_MEASURANDS
            return
        taken = [m for m in WANTED_MEASURANDS if await self._measurands(m)]
        if taken:
            await self._measurands(",".join(taken))
        self.station.capabilities.measurands = tuple(taken)
        missing = [m for m in WANTED_MEASURANDS if m not in taken]
        await self.station.report(
            self.source, f"{self.id}: the station does not meter {', '.join(missing)}; its EvseState shows less"
        )
