"""One car as the bridge knows it: TeslaMate and the Fleet API merged, and the payloads published for it. Pure.

Two sources describe a car: TeslaMate (free, when its feed is fresh) and our own Fleet API calls. The newer one
wins for the online state; the charging facts come from the newer report, with fields it lacks filled from the
other. From that snapshot come the retained `car-<VIN>` EvseState and `vehicle/<vin>/state` VehicleState.

A current we command is trusted once the car has shown that it follows (docs/contract.md §6.3): after one report
whose requested current is the one we last commanded and whose measured current is within one step (1 A) of it, a
later accepted `set_charging_amps` stands for the car's request and actual current until the next report
(`current_commanded` says so; `data_age_s` stays the age of the last report). A report that shows another current,
or a start/stop, ends the trust until a report confirms again.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime

from chargebus.config import TeslaVehicleConfig
from chargebus.schema import Control, EvseSource, EvseState, VehicleState, car_evse_id
from chargebus.units import split_phase_voltage

from chargebus_tesla.commands import car_max_amps
from chargebus_tesla.poll_policy import ASLEEP_STATE_POLL_S, OnlineState
from chargebus_tesla.teslamate import TeslaMateCar, geofence_says_home
from chargebus_tesla.vehicle_data import CarReport, within_home

#: Without TeslaMate, a car is "stale" when no API answer came for this long: two missed state polls (the bridge
#: passes the current schedule's own figure, `PollPolicy.stale_after_s`, when it backs off).
API_STALE_S = 2 * ASLEEP_STATE_POLL_S + 60.0
PLAUSIBLE_VOLTAGE_V = (90.0, 260.0)
CONTROLS: list[Control] = ["start_stop", "current"]


@dataclass(frozen=True)
class Snapshot:
    """The merged view of one car at one moment."""

    online_state: OnlineState
    report: CarReport
    plugged_in: bool | None
    plugged_in_at: float | None
    at_home: bool | None
    source: EvseSource
    #: when the newest fact came in (a TeslaMate message or an API answer), or None
    observed_at: float | None
    teslamate_fresh: bool
    stale: bool
    #: the report's requested and actual current are the one we commanded and the car accepted, not yet measured
    current_commanded: bool = False

    @property
    def charging(self) -> bool:
        return self.report.charging


@dataclass(frozen=True)
class Basis:
    """The electrical basis of the car EVSE: phases × phase-to-neutral voltage."""

    phases: int
    voltage_v: float

    @property
    def step_w(self) -> float:
        return self.phases * self.voltage_v


class CarState:
    """What the API told us, plus TeslaMate's feed, for one configured car."""

    def __init__(self, vehicle: TeslaVehicleConfig, teslamate: TeslaMateCar | None = None) -> None:
        self.vehicle = vehicle
        self.teslamate = teslamate
        self.api_online: OnlineState = "unknown"
        self.api_online_at: float | None = None
        self.api_report: CarReport | None = None
        self.api_report_at: float | None = None
        self._basis = Basis(vehicle.phases, vehicle.voltage_v)
        self._plugged: bool | None = None
        self.plugged_in_at: float | None = None
        self._charge_limit_set: tuple[float, float] | None = None
        #: the last accepted set_charging_amps (amps, when), and whether the car's newest report confirms it
        self._commanded: tuple[int, float] | None = None
        #: the last accepted set_charging_amps came after the newest report (by order, not by clock)
        self._command_unreported = False
        self.follows_command = False

    # -- API observations --------------------------------------------------------------------------------------

    def observe_online_state(self, now: float, state: OnlineState) -> None:
        self.api_online, self.api_online_at = state, now

    def observe_report(self, now: float, report: CarReport) -> None:
        previous = self.api_report
        if previous is not None and report.latitude is None:
            # A charge_state-only answer says nothing about the position: keep the last known one.
            report = replace(report, latitude=previous.latitude, longitude=previous.longitude)
        self.api_report, self.api_report_at = report, now
        self.observe_online_state(now, "online")
        self._command_unreported = False
        # Trust is earned by a command of ours the car was seen to follow; a current it chose itself earns none.
        requested = report.charge_current_request_a
        if self._commanded is None or requested != self._commanded[0]:
            self.follows_command = False
        else:
            self.follows_command = report.charging and _draws_what_it_requests(report)

    def observe_command(self, now: float, amps: int) -> bool:
        """An accepted set_charging_amps; True when it is trusted (the car has confirmed it follows commands)."""
        self._commanded = (amps, now)
        self._command_unreported = True
        return self.follows_command

    def observe_start_stop(self) -> None:
        """charge_start/charge_stop changes what the car does: trust nothing until a report confirms again."""
        self.follows_command = False

    def observe_charge_limit(self, now: float, percent: int) -> None:
        """Our set_charge_limit was taken: show it until a newer report (TeslaMate's or ours) says otherwise."""
        self._charge_limit_set = (float(percent), now)

    # -- the merged view ---------------------------------------------------------------------------------------

    def snapshot(
        self,
        now: float,
        *,
        teslamate_fresh: bool,
        api_source: EvseSource = "fleet_api",
        api_stale_s: float = API_STALE_S,
    ) -> Snapshot:
        tm = self.teslamate
        tm_at = tm.last_message_at if tm is not None else None
        tm_report = tm.report() if tm is not None else None
        tm_online: OnlineState = tm.online_state if tm is not None else "unknown"
        if teslamate_fresh and tm_at is None:
            tm_at = now  # the start-up grace: TeslaMate's retained values stand for now
        use_tm_online = tm is not None and tm_online != "unknown" and _newer(tm_at, self.api_online_at)
        online = tm_online if use_tm_online else self.api_online
        report = _merge_reports(tm_report, tm_at, self.api_report, self.api_report_at)
        if self._charge_limit_set is not None:
            percent, set_at = self._charge_limit_set
            reported_at = _latest(self.api_report_at, tm.last_change_at if tm is not None else None)
            if reported_at is None or reported_at <= set_at:
                report = replace(report, charge_limit_pct=percent)
        commanded = self._commanded_overlay(report, teslamate_fresh)
        if commanded is not None:
            report = commanded
        plugged = report.plugged_in
        if plugged is None and tm is not None:
            plugged = tm.plugged_in
        self._track_plug(now, plugged)
        self._track_basis(report)
        observed = _latest(tm_at, self.api_online_at, self.api_report_at)
        api_recent = self.api_online_at is not None and now - self.api_online_at <= api_stale_s
        return Snapshot(
            online_state=online,
            report=report,
            plugged_in=plugged,
            plugged_in_at=self.plugged_in_at,
            at_home=self._at_home(report),
            source="teslamate" if teslamate_fresh else api_source,
            observed_at=observed,
            teslamate_fresh=teslamate_fresh,
            stale=not (teslamate_fresh or api_recent),
            current_commanded=commanded is not None,
        )

    def _commanded_overlay(self, report: CarReport, teslamate_fresh: bool) -> CarReport | None:
        """The report with the trusted commanded current in place of the older measured one, or None."""
        if teslamate_fresh or self._commanded is None or not self.follows_command or not report.charging:
            return None
        if not self._command_unreported:
            return None  # the newest report already shows what the car did with it
        amps, _ = self._commanded
        actual = float(amps)
        if report.charge_current_request_max_a is not None and report.charge_current_request_max_a > 0:
            actual = min(actual, report.charge_current_request_max_a)
        return replace(
            report,
            charge_current_request_a=float(amps),
            charger_actual_current_a=actual,
            charger_power_w=actual * self._basis.step_w,
        )

    @property
    def basis(self) -> Basis:
        """The car's own report when plausible, else its last plausible one, else the configured one
        (docs/contract.md §6.1)."""
        return self._basis

    def _at_home(self, report: CarReport) -> bool | None:
        home = self.vehicle.home
        if home is not None:
            if report.latitude is None or report.longitude is None:
                return None
            return within_home(report.latitude, report.longitude, home.lat, home.lon, home.radius_m)
        if self.teslamate is not None:
            # No home location: TeslaMate's geofence decides; unknown counts as away (the allocator's rule).
            return geofence_says_home(self.teslamate.geofence) if self.teslamate.knows_geofence else None
        return True  # neither a home nor TeslaMate: no location restriction (documented)

    def _track_plug(self, now: float, plugged: bool | None) -> None:
        if plugged is True and self._plugged is not True:
            self.plugged_in_at = now
        elif plugged is False:
            self.plugged_in_at = None
        if plugged is not None:
            self._plugged = plugged

    def _track_basis(self, report: CarReport) -> None:
        phases, voltage = report.charger_phases, report.charger_voltage_v
        if phases is None or voltage is None or not 1 <= phases <= 3:
            return
        voltage = split_phase_voltage(voltage, phases)
        low, high = PLAUSIBLE_VOLTAGE_V
        if low <= voltage <= high:
            self._basis = Basis(phases, voltage)


def _draws_what_it_requests(report: CarReport) -> bool:
    """The car's measured current is within one step (1 A) of what it requests (capped by its maximum)."""
    requested, actual = report.charge_current_request_a, report.charger_actual_current_a
    if requested is None or actual is None:
        return requested is not None
    ceiling = report.charge_current_request_max_a
    if ceiling is not None and ceiling > 0:
        requested = min(requested, ceiling)
    return abs(actual - requested) <= 1.0


def _newer(candidate: float | None, other: float | None) -> bool:
    return candidate is not None and (other is None or candidate >= other)


def _latest(*moments: float | None) -> float | None:
    known = [moment for moment in moments if moment is not None]
    return max(known) if known else None


def _merge_reports(tm: CarReport | None, tm_at: float | None, api: CarReport | None, api_at: float | None) -> CarReport:
    """The newer report, with the fields it lacks taken from the older one."""
    if tm is None and api is None:
        return CarReport()
    if tm is None or api is None:
        return tm or api or CarReport()
    newer, older = (tm, api) if _newer(tm_at, api_at) else (api, tm)
    merged = {
        item.name: getattr(newer, item.name) if getattr(newer, item.name) is not None else getattr(older, item.name)
        for item in fields(CarReport)
    }
    return CarReport(**merged)


# -- payloads -------------------------------------------------------------------------------------------------------


def _utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=UTC)


def vehicle_state(vehicle: TeslaVehicleConfig, snap: Snapshot, now: float) -> VehicleState:
    report = snap.report
    return VehicleState(
        vin=vehicle.vin,
        name=display_name(vehicle),
        online_state=snap.online_state,
        at_home=snap.at_home,
        plugged_in=snap.plugged_in,
        charging_state=report.charging_state,
        soc_pct=_clamp_pct(report.soc_pct),
        charge_limit_pct=_clamp_pct(report.charge_limit_pct),
        charger_phases=report.charger_phases,
        charger_voltage_v=_non_negative(report.charger_voltage_v),
        charger_actual_current_a=_non_negative(report.charger_actual_current_a),
        charge_current_request_a=_non_negative(report.charge_current_request_a),
        charge_current_request_max_a=_non_negative(report.charge_current_request_max_a),
        charger_power_w=_non_negative(report.charger_power_w),
        charge_energy_added_wh=_non_negative(report.charge_energy_added_wh),
        time_to_full_s=_non_negative(report.time_to_full_s),
        source=snap.source,
        updated_at=_utc(now),
        data_age_s=None if snap.observed_at is None else max(0.0, now - snap.observed_at),
        current_commanded=snap.current_commanded,
    )


@dataclass(frozen=True)
class EvseFacts:
    """What the runtime adds to the snapshot for the EvseState: its own view of reachability and commands."""

    online: bool
    offered_a: float | None
    min_amps: int
    max_amps_override: int | None
    status_text: str


def evse_state(vehicle: TeslaVehicleConfig, snap: Snapshot, basis: Basis, facts: EvseFacts, now: float) -> EvseState:
    report = snap.report
    max_amps = car_max_amps(report.charge_current_request_max_a)
    if facts.max_amps_override is not None:
        max_amps = min(max_amps, facts.max_amps_override)
    return EvseState(
        evse_id=evse_id(vehicle.vin),
        kind="vehicle",
        name=display_name(vehicle),
        controllable=vehicle.controllable,
        controls=list(CONTROLS) if vehicle.controllable else [],
        online=facts.online,
        vin=vehicle.vin,
        plugged_in=snap.plugged_in,
        plugged_in_at=None if snap.plugged_in_at is None else _utc(snap.plugged_in_at),
        charging=None if report.charging_state is None else report.charging,
        phases=basis.phases,
        voltage_v=basis.voltage_v,
        phase_voltages_v=None,
        current_a=_non_negative(report.charger_actual_current_a),
        offered_a=facts.offered_a,
        power_w=measured_power_w(report, basis),
        min_power_w=facts.min_amps * basis.step_w,
        max_power_w=max(0, max_amps) * basis.step_w,
        step_w=basis.step_w,
        session_energy_wh=_non_negative(report.charge_energy_added_wh),
        lifetime_energy_wh=None,
        state_code=report.charging_state,
        status_text=facts.status_text,
        source=snap.source,
        updated_at=_utc(now),
        stale=snap.stale,
        current_commanded=snap.current_commanded,
    )


def measured_power_w(report: CarReport, basis: Basis) -> float | None:
    """V × I × phases from the car's report (its kW figure is whole kW on AC), else that figure; 0 when idle."""
    if report.charging_state is not None and not report.charging:
        return 0.0
    current = report.charger_actual_current_a
    if current is not None and current >= 0:
        return current * basis.step_w
    return _non_negative(report.charger_power_w)


def evse_id(vin: str) -> str:
    return car_evse_id(vin)


def display_name(vehicle: TeslaVehicleConfig) -> str:
    return vehicle.name or vehicle.vin


def _clamp_pct(value: float | None) -> float | None:
    return None if value is None else min(100.0, max(0.0, value))


def _non_negative(value: float | None) -> float | None:
    return None if value is None else max(0.0, value)
