"""The allocator between messages: what it knows, one round of `allocate`, and what of the result to publish.

It keeps the latest EvseState and VehicleState of every EVSE and car, the meters, the bridges' presence and the
runtime overrides, turns them into the core's `Inputs` (merge by VIN, settings = config overlaid with overrides,
schedule caps of the windows open now, the grid figure from either meter form) and, after each round, decides what
goes out: a Setpoint only when it changed (power, charge, basis) or is due for its refresh every
`setpoint_ttl_s / 2`; `allocator/state` only when it changed apart from `computed_at`/`compute_ms`, or every 30 s;
one error per meter going stale and per house-meter warning. It also says when the next round is due even without
input (refresh, a meter going stale, a charge-now timer ending, a schedule window opening or closing, the regular
tick that moves the hysteresis delays on).

With a home battery or site limits it also reads the battery meter (and its SoC), integrates the grid import over
the running clock-aligned window, turns the limits into the headroom the round shares (site.py), fills the `site`
block of `allocator/state` and says when `allocator/battery_hold` changed, from the same round's allocation.

An EVSE whose bridge announced `offline` on `<p>/<bridge>/status` (its LWT after a crash) counts as offline until
the bridge says `online` again: `twc-*` belong to the twc-bridge, `car-*` and `twc3-*` to the tesla-bridge.

Pure: no I/O and no asyncio; every time is passed in as epoch seconds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from chargebus.config import AllocatorServiceConfig, CircuitConfig, ScheduleConfig
from chargebus.schema import (
    AllocatorState,
    Co2Forecast,
    EvseState,
    Setpoint,
    SiteState,
    SolarForecast,
    Tariff,
    VehicleState,
    evse_kind_of,
    parse_for_topic,
    parse_payload,
)
from chargebus.topics import BRIDGES, Topics, owning_bridge
from chargebus.zones import resolve_timezone

from chargebus_allocator import budget, report, schedules, site
from chargebus_allocator.allocate import allocate
from chargebus_allocator.house_meters import GridFigure, HouseMeters, MeterValue
from chargebus_allocator.merge import Authorization, EvseSettings, MergeCache, VehicleSettings, merge
from chargebus_allocator.meters import MeterBook, RateLimit, meter_specs
from chargebus_allocator.model import (
    Allocation,
    ChargePoint,
    Circuit,
    Delays,
    GridReading,
    Inputs,
    MeteredLoad,
    Settings,
    Timer,
)
from chargebus_allocator.overrides import PLAN, Overrides, evse_key, evse_key_prefix, vehicle_key, vehicle_key_prefix
from chargebus_allocator.pairing import (
    FOLLOW_S_DIRECT,
    FOLLOW_S_SLOW,
    READING_LATENCY_S,
    Command,
    DrawHistory,
    Pairing,
    PointDraw,
    draw_at,
    measurement_time,
    pair,
)
from chargebus_allocator.plans import PlanBook, PlanContext

#: A round runs at least this often, so hysteresis delays and timers move on without input.
TICK_S = 5.0
#: `allocator/state` is re-published at least this often even when nothing changed.
STATE_EVERY_S = 30.0
#: A broken meter's payload errors are reported at most once per this many seconds.
METER_ERROR_EVERY_S = 60.0
#: Wake this much after a deadline, so the round at the wake-up sees it passed.
_LATE_S = 0.001
#: At most this many EVSE ids (and as many VINs) are remembered as seen: far above any real installation.
MAX_SEEN = 4096
_VOLATILE_STATE = frozenset({"computed_at", "compute_ms"})

SetpointKey = tuple[float | None, bool | None, int | None, float | None]


@dataclass(frozen=True, slots=True)
class Notice:
    """One ErrorEvent to publish: `topic` names the input or the source, `payload` is what was received."""

    topic: str
    error: str
    payload: bytes | None = None


@dataclass(frozen=True, slots=True)
class Round:
    allocation: Allocation
    setpoints: list[Setpoint]  # to publish now: changed or due for refresh
    state: AllocatorState | None  # to publish now, or None
    notices: list[Notice]
    events: list[str]  # log lines (key=value)
    overrides_changed: bool  # a timer ended: the state file needs writing
    next_wake: float
    #: `allocator/battery_hold` to publish now (it changed, or it is the first round); None: nothing to send.
    battery_hold: bool | None = None


@dataclass(slots=True)
class _Sent:
    key: SetpointKey
    at: float


@dataclass(slots=True)
class Engine:
    config: AllocatorServiceConfig
    topics: Topics
    started_at: float
    overrides: Overrides = field(default_factory=Overrides)
    evses: dict[str, EvseState] = field(default_factory=dict)
    vehicles: dict[str, VehicleState] = field(default_factory=dict)
    meters: MeterBook = field(init=False)
    house: HouseMeters = field(init=False)
    timezone: ZoneInfo = field(init=False)
    bridges_offline: set[str] = field(default_factory=set)
    house_notes: set[str] = field(default_factory=set)  # house-meter warnings reported and still holding
    timers: dict[str, Timer] | None = None
    sent: dict[str, _Sent] = field(default_factory=dict)
    state_key: object = None
    state_at: float = -math.inf
    meter_errors: RateLimit = field(default_factory=lambda: RateLimit(METER_ERROR_EVERY_S))
    draws: dict[str, DrawHistory] = field(default_factory=dict)  # per EVSE: its measured draw over time
    commands: dict[str, Command] = field(default_factory=dict)  # per EVSE: the power last commanded, and since
    pairing: Pairing | None = None  # the solar surplus of the last grid reading (or event), held until the next
    pairing_key: object = None
    settling: frozenset[str] = frozenset()  # charge points whose draw changed just before that reading
    window: site.ImportWindow | None = None  # the running import-average window, when one is configured
    battery_level: site.BatteryLevel | None = None  # which SoC thresholds the battery is past (with hysteresis)
    hold_sent: bool | None = None  # the battery_hold last published
    #: EVSE ids and VINs seen in a state since the start (docs/contract.md §3.3: commands may name them), at most
    #: `MAX_SEEN` of each so a flood of made-up states cannot grow them without bound.
    seen_evses: set[str] = field(default_factory=set)
    seen_vins: set[str] = field(default_factory=set)
    plan_book: PlanBook = field(default_factory=PlanBook)  # departure plans: tariff, forecasts, the last planning
    plans_ended: list[str] = field(default_factory=list)  # plans that were for one departure only and are done
    capacity_learned: bool = False  # a car's learned capacity moved: the state file needs writing
    #: The last round's charge points: a round merges again only the EVSEs and cars whose state or settings changed.
    merged: MergeCache = field(default_factory=MergeCache)

    def __post_init__(self) -> None:
        allocator = self.config.allocator
        self.timezone = resolve_timezone(allocator.timezone)
        self.house = HouseMeters.from_config(allocator, generation_is_export=allocator.generation_is_export)
        names = list(self.house.meter_names)
        names += [name for name in (allocator.battery_meter, allocator.battery_soc_meter) if name]
        names += [circuit.meter for circuit in allocator.circuits if circuit.meter]
        self.meters = MeterBook(meter_specs(names, self.config.meters, self.topics), started_at=self.started_at)
        average = allocator.import_average
        if average.limit_w > 0:
            self.window = site.ImportWindow(average.window_s, assumed_w=average.limit_w)

    @property
    def ttl_s(self) -> float:
        return self.config.allocator.setpoint_ttl_s

    # -- inputs -------------------------------------------------------------------------------------------------

    def evse_state(self, evse_id: str, payload: bytes, now: float | None = None) -> bool:
        """A message on `<p>/evse/<evse_id>/state`, arrived at `now` (None: trust its `updated_at`); an empty one
        removes the EVSE. True when something changed. Its draw goes into the EVSE's history either way."""
        if not payload:
            self.draws.pop(evse_id, None)
            self.commands.pop(evse_id, None)
            return self.evses.pop(evse_id, None) is not None
        state = parse_for_topic(EvseState, payload, "evse_id", evse_id)
        _remember(self.seen_evses, evse_id)
        if state.vin is not None:
            _remember(self.seen_vins, state.vin)
        reported = state.updated_at.timestamp()
        measured = measurement_time(reported, now if now is not None else reported)
        self.draws.setdefault(evse_id, DrawHistory()).record(measured, state.power_w or 0.0)
        if self.evses.get(evse_id) == state:
            return False
        self.evses[evse_id] = state
        return True

    def vehicle_state(self, vin: str, payload: bytes) -> bool:
        """A message on `<p>/vehicle/<vin>/state`; an empty one removes the car. True when something changed."""
        if not payload:
            return self.vehicles.pop(vin, None) is not None
        state = parse_for_topic(VehicleState, payload, "vin", vin)
        _remember(self.seen_vins, vin)
        if self.plan_book.learner.observe(vin, state.soc_pct, state.charge_energy_added_wh):
            self.capacity_learned = True
        if self.vehicles.get(vin) == state:
            return False
        self.vehicles[vin] = state
        return True

    def outlook_message(self, key: str, payload: bytes) -> bool:
        """A tariff or forecast (`tariff_grid`, `tariff_feedin`, `forecast_solar`, `forecast_co2`); an empty payload
        clears it. A bad one raises PayloadError and the last good one stays. True when it changed."""
        book = self.plan_book
        if key == "tariff_grid":
            value = parse_payload(Tariff, payload) if payload else None
            changed, book.tariff = value != book.tariff, value
        elif key == "tariff_feedin":
            value = parse_payload(Tariff, payload) if payload else None
            changed, book.feedin = value != book.feedin, value
        elif key == "forecast_solar":
            solar = parse_payload(SolarForecast, payload) if payload else None
            changed, book.solar = solar != book.solar, solar
        else:
            co2 = parse_payload(Co2Forecast, payload) if payload else None
            changed, book.co2 = co2 != book.co2, co2
        book.dirty = book.dirty or changed
        return changed

    def plans_changed(self) -> None:
        """A plan was set or cleared: plan again at the next round."""
        self.plan_book.dirty = True

    def known_evse(self, evse_id: str) -> bool:
        """May a command name this EVSE (docs/contract.md §3.3): configured, seen in a state since the start, or
        already holding an override (which a command may change or clear)."""
        return (
            evse_id in self.config.allocator.evses
            or evse_id in self.seen_evses
            or self.overrides.names(evse_key_prefix(evse_id))
        )

    def known_vin(self, vin: str) -> bool:
        """The same for a car: configured, seen (in its own state or an EVSE's), or holding an override."""
        return (
            vin in self.config.allocator.vehicles
            or vin in self.seen_vins
            or self.overrides.names(vehicle_key_prefix(vin))
        )

    def meter_message(self, topic: str, payload: bytes, now: float) -> list[Notice]:
        """A meter payload; errors come back rate-limited (once per meter per minute), the last good value stays."""
        return [
            Notice(topic, error, payload)
            for name, error in self.meters.receive(topic, payload, now)
            if self.meter_errors.allow(name, now)
        ]

    def bridge_status(self, service: str, payload: bytes) -> bool:
        """A message on `<p>/<service>/status`; True when a bridge's presence changed (other services are ignored).

        Only `offline` (the bridge's LWT, or its clean stop) takes its EVSEs offline and only `online` brings them
        back: anything else, an empty (cleared) status included, leaves the last word standing.
        """
        if service not in BRIDGES:
            return False
        text = payload.decode("utf-8", errors="replace").strip()
        if text == "offline" and service not in self.bridges_offline:
            self.bridges_offline.add(service)
            return True
        if text == "online" and service in self.bridges_offline:
            self.bridges_offline.discard(service)
            return True
        return False

    def removed_evses(self) -> list[str]:
        """EVSEs that were sent a setpoint but are gone: their retained setpoint should be cleared."""
        gone = [evse_id for evse_id in self.sent if evse_id not in self.evses]
        for evse_id in gone:
            del self.sent[evse_id]
        return gone

    # -- one round ----------------------------------------------------------------------------------------------

    def schedules(self) -> Sequence[ScheduleConfig]:
        """The windows in force: `schedules/set`'s, else the config's; none while `schedules_enabled` is false."""
        if not self.overrides.schedules_enabled():
            return ()
        override = self.overrides.schedules()
        return override if override is not None else self.config.allocator.schedules

    def authorization(self) -> Authorization:
        allocator = self.config.allocator
        lists = self.overrides.vins_lists()
        allowed = lists.allow if lists is not None else allocator.allowed_vins
        denied = lists.deny if lists is not None else allocator.denied_vins
        return Authorization(allocator.authorization, frozenset(allowed), frozenset(denied), allocator.unknown_vin)

    def _evses_seen(self) -> list[EvseState]:
        """Every EVSE, the ones of a bridge that is offline marked offline (their data is no longer fresh)."""
        if not self.bridges_offline:
            return list(self.evses.values())
        return [
            state.model_copy(update={"online": False}) if owning_bridge(evse_id) in self.bridges_offline else state
            for evse_id, state in self.evses.items()
        ]

    def grid_figure(self, points: Sequence[ChargePoint], now: float) -> GridFigure:
        """The grid figure (+ import, − export) from the grid meter, or from the generation/consumption meters
        with the chargers' draw at the meters' time (every charge point once, read-only ones too). Its `at` is
        when the oldest reading used was measured."""
        readings = {
            name: MeterValue(reading.load.power_w, stale=self.meters.stale(name, now), at=reading.measured_at)
            for name in self.house.meter_names
            if (reading := self.meters.last(name)) is not None
        }
        measured_at = min((value.at for value in readings.values() if value.at is not None), default=now)
        chargers_w = sum(self._draw_at(point, measured_at) for point in points)
        return self.house.grid(readings, MeterValue(chargers_w, at=measured_at))

    def _draw_at(self, point: ChargePoint, when: float) -> float:
        return draw_at(self.draws, point.measured_evse_id, when, point.power_w)

    def _draw_changed(self, point: ChargePoint, start: float, end: float) -> bool:
        history = self.draws.get(point.measured_evse_id) if point.measured_evse_id is not None else None
        return history is not None and history.changed_within(start, end)

    def _paired_reading(
        self, points: Sequence[ChargePoint], figure: GridFigure, settings: Settings, now: float
    ) -> GridReading | None:
        """The grid reading with the controllable draw of its own moment (docs/closed-loop-control.md §1).

        Recomputed only on a new reading or a real event (a charge point appearing, going, plugging, switching
        mode, priority or limits): a draw report between two readings does not move the surplus.
        """
        if figure.grid_w is None or figure.stale:
            self.pairing, self.pairing_key = None, None
            return None
        at = figure.at if figure.at is not None else now
        key = (at, figure.grid_w, settings.mode, settings.reserve_w, tuple(_event_signature(p) for p in points))
        if self.pairing is None or key != self.pairing_key:
            draws = [
                PointDraw(
                    point.key,
                    self._draw_at(point, at),
                    point.step_w,
                    FOLLOW_S_SLOW if point.follows_slowly else FOLLOW_S_DIRECT,
                    self.commands.get(point.current_target),
                )
                for point in points
                if point.controllable and point.online
            ]
            previous = self.pairing.surplus_w if self.pairing is not None else None
            self.pairing = pair(figure.grid_w, at, draws, settings.reserve_w, previous)
            self.settling = frozenset(
                point.key for point in points if self._draw_changed(point, at - READING_LATENCY_S, at)
            )
            self.pairing_key = key
        return GridReading(figure.grid_w, now, chargers_w=self.pairing.chargers_w, settling=self.settling)

    def inputs(self, now: float) -> Inputs:
        return self._inputs(now)[0]

    def _inputs(self, now: float) -> tuple[Inputs, GridFigure]:
        allocator = self.config.allocator
        overrides = self.overrides
        evse_settings = {}
        for evse_id in set(allocator.evses) | overrides.evse_ids():
            entry = allocator.evses.get(evse_id)
            configured = entry.priority if entry is not None and "priority" in entry.model_fields_set else None
            own_priority = overrides.evse_priority(evse_id)
            evse_settings[evse_id] = EvseSettings(
                circuit=entry.circuit if entry is not None else None,
                phase=entry.phase if entry is not None else None,
                priority=own_priority if own_priority is not None else configured,
                mode=overrides.evse_mode(evse_id) or (entry.mode if entry is not None else None),
                charge_now_until=overrides.evse_charge_now_until(evse_id),
            )
        vehicle_settings = {}
        for vin in set(allocator.vehicles) | overrides.vins():
            car = allocator.vehicles.get(vin)
            configured = car.priority if car is not None and "priority" in car.model_fields_set else None
            own_priority = overrides.vehicle_priority(vin)
            vehicle_settings[vin] = VehicleSettings(priority=own_priority if own_priority is not None else configured)
        points = merge(
            self._evses_seen(),
            self.vehicles.values(),
            evse_settings,
            vehicle_settings,
            self.authorization(),
            cache=self.merged,
        )
        windows = self.schedules()
        if windows:
            points = schedules.with_schedule_caps(points, schedules.active_windows(windows, self.timezone, now))
        settings = Settings(
            mode=overrides.mode() or allocator.mode,
            reserve_w=allocator.reserve_w,
            share=allocator.share,
            delays=Delays(allocator.enable_delay_s, allocator.disable_delay_s, allocator.min_on_s, allocator.min_off_s),
        )
        circuits = tuple(self._circuit(circuit) for circuit in allocator.circuits)
        points = self._planned(points, settings, circuits, now)
        figure = self.grid_figure(points, now)
        # Staleness is decided here, per meter (each has its own stale_after_s): a fresh figure is as of now.
        grid = self._paired_reading(points, figure, settings, now)
        battery = self._battery(now)
        limit = self._site_limit(figure, grid, battery, now)
        return Inputs(points, circuits, grid, overrides.charge_now_until(), settings, limit, battery), figure

    def _planned(
        self, points: tuple[ChargePoint, ...], settings: Settings, circuits: tuple[Circuit, ...], now: float
    ) -> tuple[ChargePoint, ...]:
        """Plan when due (docs/planning.md), and mark the charge points a planned slot covers now."""
        plans = self.overrides.plans()
        if not plans and not self.plan_book.planned:
            return points
        allocator = self.config.allocator
        charge_now = self.overrides.charge_now_until()
        solar_modes = frozenset(
            p.key for p in points if budget.point_mode(p, settings.mode, charge_now, now) in ("solar", "minsolar")
        )
        capacity = dict(self.plan_book.learner.learned_wh)
        capacity.update({vin: car.battery_wh for vin, car in allocator.vehicles.items() if car.battery_wh > 0})
        context = PlanContext(
            plans=plans,
            session_wh={evse_id: state.session_energy_wh for evse_id, state in self.evses.items()},
            capacity_wh=capacity,
            solar_modes=solar_modes,
            circuits=circuits,
            zone=self.timezone,
            efficiency=allocator.charge_efficiency,
            house_load_w=tuple(allocator.house_load_w),
            max_import_w=self.import_cap_w(),
        )
        if self.plan_book.due(points, context, now):
            self.plan_book.plan(points, context, now)
            self._end_finished_plans(points, now)
        return self.plan_book.apply(points, now)

    def _end_finished_plans(self, points: Sequence[ChargePoint], now: float) -> None:
        """A plan for one departure ends once that departure has passed and it is met or the car has gone."""
        by_key = {point.key: point for point in points}
        for key, planned in list(self.plan_book.planned.items()):
            if planned.stored.deadline is None or planned.by > now:
                continue
            point = by_key.get(key)
            if planned.need.status == "met" or point is None or not point.plugged_in:
                owner = planned.owner  # an EVSE id has its kind's prefix; a VIN has none
                name = evse_key(owner, PLAN) if evse_kind_of(owner) is not None else vehicle_key(owner, PLAN)
                if self.overrides.put(name, None, now):
                    self.plans_ended.append(name)
                del self.plan_book.planned[key]

    def import_cap_w(self) -> float | None:
        return site.import_cap_w(self.config.allocator.max_import_w, self.overrides.grid_limit_w())

    def _site_limit(
        self, figure: GridFigure, grid: GridReading | None, battery: site.Battery | None, now: float
    ) -> site.SiteLimit | None:
        """The headroom the site's limits leave the controllable charge points. The house's own import is the
        reading less the chargers' draw at the reading's moment (the same pairing as the solar surplus), plus
        what the battery discharges while it is below its buffer SoC: `battery_hold` may stop that any round."""
        fresh = figure.grid_w is not None and not figure.stale
        if self.window is not None:
            self.window.record(now, figure.grid_w if fresh else None)
        average = None
        if self.window is not None:
            limit_w = self.config.allocator.import_average.limit_w
            window = self.window
            average = (limit_w, window.window_s, window.imported_j, now, window.end)
        house_w = None
        if grid is not None:
            house_w = grid.power_w - (grid.chargers_w or 0.0)
            if battery is not None and battery.power_w is not None and not battery.level.buffer:
                house_w += max(0.0, battery.power_w)
        return site.site_limit(self.import_cap_w(), average, house_w)

    def _battery(self, now: float) -> site.Battery | None:
        """The battery's power and SoC. A stale battery meter leaves the solar surplus unknown (power None); a
        stale or missing SoC counts as below every threshold."""
        allocator = self.config.allocator
        if allocator.battery_meter is None:
            return None
        reading = self.meters.last(allocator.battery_meter)
        fresh = reading is not None and not self.meters.stale(allocator.battery_meter, now)
        power_w = reading.load.power_w if fresh and reading is not None else None
        soc: float | None = None
        if allocator.battery_soc_meter is not None:
            soc_reading = self.meters.last(allocator.battery_soc_meter)
            if soc_reading is not None and not self.meters.stale(allocator.battery_soc_meter, now):
                soc = soc_reading.load.power_w
        elif fresh and reading is not None:
            soc = reading.soc_pct
        if soc is not None:
            soc = min(100.0, max(0.0, soc))
        thresholds = site.BatteryThresholds(
            allocator.battery_priority_soc, allocator.battery_buffer_soc, allocator.battery_buffer_start_soc
        )
        self.battery_level = site.battery_level(soc, thresholds, self.battery_level)
        return site.Battery(power_w, soc, self.battery_level)

    def site_state(self, allocation: Allocation, now: float) -> SiteState:
        """The `site` block of `allocator/state`: null where not configured."""
        allocator = self.config.allocator
        window = self.window
        battery = allocation.battery
        return SiteState(
            import_w=allocation.grid_w,
            max_import_w=self.import_cap_w(),
            average_w=round(window.average_w(now)) if window is not None else None,
            average_limit_w=allocator.import_average.limit_w if window is not None else None,
            window_ends_at=datetime.fromtimestamp(window.end, tz=UTC) if window is not None else None,
            battery_soc_pct=battery.soc_pct if battery is not None else None,
            battery_w=battery.power_w if battery is not None else None,
        )

    def _circuit(self, config: CircuitConfig) -> Circuit:
        metered: MeteredLoad | None = None
        if config.meter is not None:
            # A stale circuit meter keeps counting its last good value (reported once): dropping a house load to
            # 0 W would hand its current to the cars.
            reading = self.meters.last(config.meter)
            metered = reading.load if reading is not None else None
        return Circuit(
            config.id,
            config.max_current_a,
            config.phases,
            config.voltage_v,
            config.parent,
            config.phase or "L1",
            metered,
        )

    def compute(self, now: float) -> Round:
        expired = self.overrides.expire(now)
        went, back = self.meters.stale_changes(now)
        notices = [Notice(self.meters.specs[name].topic, self._stale_error(name, now)) for name in went]
        events = [f"event=override_expired key={key}" for key in expired]
        events += [f"event=meter_fresh meter={name}" for name in back]
        inputs, figure = self._inputs(now)
        ended, self.plans_ended = self.plans_ended, []
        events += [f"event=plan_ended key={key}" for key in ended]
        notices += self._house_notes(figure, events)
        started = time.perf_counter()
        allocation, self.timers = allocate(inputs, self.timers, now)
        compute_ms = (time.perf_counter() - started) * 1000
        self._note_commands(allocation, now)
        computed_at = datetime.fromtimestamp(now, tz=UTC)
        state = report.allocator_state(
            allocation,
            computed_at=computed_at,
            compute_ms=compute_ms,
            overrides=self.overrides.listing(),
            site=self.site_state(allocation, now),
            plans=self.plan_book.states(),
        )
        state_key = state.model_dump(exclude=set(_VOLATILE_STATE))
        publish_state = state_key != self.state_key or now - self.state_at >= STATE_EVERY_S
        if publish_state:
            self.state_key, self.state_at = state_key, now
        outgoing = []
        current = set()
        for setpoint in report.setpoints(allocation, now=computed_at, ttl_s=self.ttl_s):
            key: SetpointKey = (setpoint.power_w, setpoint.charge, setpoint.phases, setpoint.voltage_v)
            current.add(setpoint.evse_id)
            sent = self.sent.get(setpoint.evse_id)
            if sent is None or sent.key != key or now >= sent.at + self.ttl_s / 2:
                outgoing.append(setpoint)
                self.sent[setpoint.evse_id] = _Sent(key, now)
        for evse_id in [evse_id for evse_id in self.sent if evse_id not in current and evse_id in self.evses]:
            del self.sent[evse_id]  # no longer a charge point (a car away): its last setpoint simply expires
        hold = site.battery_hold(allocation.battery, allocation.grid_charging)
        hold_out = None
        if hold is not None and hold != self.hold_sent:
            self.hold_sent = hold_out = hold
            events.append(f"event=battery_hold value={str(hold).lower()}")
        return Round(
            allocation=allocation,
            setpoints=outgoing,
            state=state if publish_state else None,
            notices=notices,
            events=events,
            overrides_changed=bool(expired or ended or self._take_capacity_learned()),
            next_wake=self._next_wake(now),
            battery_hold=hold_out,
        )

    def _take_capacity_learned(self) -> bool:
        learned, self.capacity_learned = self.capacity_learned, False
        return learned

    def state_file(self) -> dict[str, object]:
        """What the state file keeps: the overrides and the capacities learned from the cars."""
        return {**self.overrides.dump(), "capacity_wh": self.plan_book.learner.dump()}

    def _note_commands(self, allocation: Allocation, now: float) -> None:
        """Remember when each EVSE's commanded power changed: until it follows, it is in transit (pairing.py)."""
        for intent in allocation.setpoints:
            if intent.power_w is None:
                continue
            command = self.commands.get(intent.evse_id)
            if command is None or command.power_w != intent.power_w:
                self.commands[intent.evse_id] = Command(intent.power_w, now)

    def _house_notes(self, figure: GridFigure, events: list[str]) -> list[Notice]:
        """A house-meter warning (a PV meter reading below 0 W, …) is reported once while it holds.

        Notes of a figure that lacks a reading are not reported: the meter's staleness already is.
        """
        if figure.grid_w is None:
            return []
        notes = set(figure.notes)
        new = [Notice(self._note_topic(note), note) for note in figure.notes if note not in self.house_notes]
        events += [f"event=house_meter_note_cleared note={note!r}" for note in sorted(self.house_notes - notes)]
        self.house_notes = notes
        return new

    def _note_topic(self, note: str) -> str:
        """The topic of the meter a note is about: the consumption meter's, else the generation meter's."""
        house = self.house
        about = house.consumption_meter if note.startswith("consumption meter") else house.generation_meter
        name = about or house.meter_names[0]
        return self.meters.specs[name].topic

    def _stale_error(self, name: str, now: float) -> str:
        text = self.meters.describe_stale(name, now)
        allocator = self.config.allocator
        if name == allocator.battery_meter:
            return f"{text}: the battery's power is unknown, so solar charges nothing and minsolar only the minimums"
        if name == allocator.battery_soc_meter:
            return f"{text}: the battery's SoC is unknown and counts as below every threshold"
        if name in self.house.meter_names:
            return f"{text}: solar surplus unknown, solar charges nothing and minsolar only the minimums"
        return f"{text}: its circuit keeps counting the last good value"

    def _next_wake(self, now: float) -> float:
        deadlines = [now + TICK_S, self.state_at + STATE_EVERY_S]
        deadlines += [sent.at + self.ttl_s / 2 for sent in self.sent.values()]
        stale_at = self.meters.next_deadline(now)
        if stale_at is not None:
            deadlines.append(stale_at + _LATE_S)
        windows = self.schedules()
        if windows:
            edge = schedules.next_change(windows, self.timezone, now)
            if edge is not None:
                deadlines.append(edge + _LATE_S)
        deadlines += [end + _LATE_S for end in self.overrides.timer_ends()]
        plan_edge = self.plan_book.next_change(now)
        if plan_edge is not None:
            deadlines.append(plan_edge + _LATE_S)
        return max(now, min(deadlines))


def _event_signature(point: ChargePoint) -> tuple[object, ...]:
    """What of a charge point is a real event for the solar budget: anything but its measured draw."""
    return (
        point.key, point.controllable, point.online, point.plugged_in, point.wants_charge, point.authorized,
        point.charging, point.min_power_w, point.max_power_w, point.mode, point.priority, point.charge_now_until,
        point.schedule_cap_w, point.plan_cap_w,
    )  # fmt: skip


def _remember(seen: set[str], key: str) -> None:
    if len(seen) < MAX_SEEN:
        seen.add(key)
