"""`[allocator]`: modes, delays, schedules, circuits, per-EVSE and per-car settings, the battery and site limits."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from chargebus.config.common import (
    GEN2_MAX_AMPS,
    HHMM_PATTERN,
    EvseId,
    OptionalStr,
    PhaseName,
    Priority,
    Seconds,
    Section,
    Timezone,
    Vin,
    Wiring,
    repeated,
)
from chargebus.schema import Mode


class ScheduleConfig(Section):
    days: Annotated[list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]], Field(min_length=1)]
    start: str
    end: str
    power_w: Annotated[float, Field(gt=0)] | None = None
    current_a: Annotated[float, Field(gt=0, le=GEN2_MAX_AMPS)] | None = None
    evse_id: EvseId | None = None
    vin: Vin | None = None

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not HHMM_PATTERN.fullmatch(value):
            raise ValueError('must be local time "HH:MM" (00:00-23:59)')
        return value

    @model_validator(mode="after")
    def _one_cap_one_scope(self) -> Self:
        if (self.power_w is None) == (self.current_a is None):
            raise ValueError("give exactly one of power_w and current_a")
        if self.evse_id is not None and self.vin is not None:
            raise ValueError("scope is evse_id or vin, not both")
        if self.start == self.end:
            raise ValueError("start and end are equal: an empty window")
        return self


class CircuitConfig(Section):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    parent: OptionalStr = None
    max_current_a: Annotated[float, Field(gt=0, le=10_000)]
    phases: Literal[1, 3] = 1
    voltage_v: Annotated[float, Field(ge=90, le=260)] = 230
    meter: OptionalStr = None
    phase: PhaseName | None = None


class EvseSettings(Section):
    circuit: OptionalStr = None
    phase: Wiring | None = None
    priority: Priority = 0
    mode: Mode | None = None


class VehicleSettings(Section):
    priority: Priority = 0
    # The usable battery capacity, for departure plans by SoC; 0 = learn it from the car's reports.
    battery_wh: Annotated[float, Field(ge=0, le=500_000, allow_inf_nan=False)] = 0


Percent = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
#: Longest import-average window: one day (a window must divide the day so windows stay clock-aligned).
DAY_S = 86_400


class ImportAverage(Section):
    """A capacity tariff: the average grid import over each clock-aligned window stays at most `limit_w`."""

    limit_w: Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)] = 0  # 0 = no average limit
    window_s: Annotated[int, Field(ge=60, le=DAY_S)] = 900

    @field_validator("window_s")
    @classmethod
    def _divides_the_day(cls, value: int) -> int:
        if DAY_S % value:
            raise ValueError("must divide a day (900 = quarter hours, 3600 = hours) so windows align to the clock")
        return value


class AllocatorConfig(Section):
    mode: Mode = "solar"
    grid_meter: OptionalStr = "grid"
    generation_meter: OptionalStr = None
    consumption_meter: OptionalStr = None
    consumption_includes_chargers: bool = True
    # The generation meter reads net export (negative while importing): use it as is, never clamped at 0.
    generation_is_export: bool = False
    reserve_w: Annotated[float, Field(ge=0)] = 100
    enable_delay_s: Seconds = 60
    disable_delay_s: Seconds = 180
    min_on_s: Seconds = 300
    min_off_s: Seconds = 300
    setpoint_ttl_s: Annotated[float, Field(ge=10, le=3600)] = 120
    share: Literal["fair", "priority"] = "fair"
    timezone: Timezone = ""
    authorization: Literal["open", "allow_list", "deny_list"] = "open"
    allowed_vins: list[Vin] = Field(default_factory=list)
    denied_vins: list[Vin] = Field(default_factory=list)
    unknown_vin: Literal["allow", "deny"] = "allow"
    schedules: list[ScheduleConfig] = Field(default_factory=list)
    circuits: list[CircuitConfig] = Field(default_factory=list)
    evses: dict[EvseId, EvseSettings] = Field(default_factory=dict)
    vehicles: dict[Vin, VehicleSettings] = Field(default_factory=dict)
    # Home battery: its meter reads + discharging into the house, − charging; its SoC comes from that meter's
    # PowerReading `soc_pct` or from a meter whose value is the SoC in %.
    battery_meter: OptionalStr = None
    battery_soc_meter: OptionalStr = None
    battery_priority_soc: Percent = 50
    battery_buffer_soc: Percent = 90
    battery_buffer_start_soc: Percent = 95
    # Site limits: bind every mode. 0 = none.
    max_import_w: Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)] = 0
    import_average: ImportAverage = Field(default_factory=ImportAverage)
    # Departure plans: the house's usual load the forecast sun must cover first (one value, or 24: by local hour),
    # and the share of wall energy that reaches the battery (SoC plans turn %-points into wall Wh with it).
    house_load_w: Annotated[
        tuple[Annotated[float, Field(ge=0, le=1_000_000)], ...], Field(min_length=1, max_length=24)
    ] = (400.0,)
    charge_efficiency: Annotated[float, Field(gt=0.5, le=1.0)] = 0.9

    @field_validator("house_load_w")
    @classmethod
    def _one_or_24(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if len(value) not in (1, 24):
            raise ValueError("give one value, or 24 (one per local hour from 00:00)")
        return value

    @model_validator(mode="before")
    @classmethod
    def _one_meter_form(cls, data: Any) -> Any:
        # grid_meter has a default, so the generation/consumption form replaces it unless both are written.
        if isinstance(data, dict) and data.get("generation_meter"):
            if data.get("grid_meter"):
                raise ValueError("give grid_meter, or generation_meter (+ consumption_meter), not both")
            data = {**data, "grid_meter": None}
        if isinstance(data, dict) and data.get("consumption_meter") and not data.get("generation_meter"):
            raise ValueError("consumption_meter needs generation_meter")
        return data

    @model_validator(mode="after")
    def _circuit_tree(self) -> Self:
        if duplicates := repeated([c.id for c in self.circuits]):
            raise ValueError(f"circuit id {', '.join(duplicates)} is defined more than once")
        by_id = {c.id: c for c in self.circuits}
        for circuit in self.circuits:
            if circuit.parent is not None and circuit.parent not in by_id:
                raise ValueError(f"circuit {circuit.id!r} names parent {circuit.parent!r}, which is not defined")
            if circuit.phases == 3 and circuit.phase is not None:
                raise ValueError(f"circuit {circuit.id!r} has 3 phases: 'phase' applies to 1-phase circuits only")
            seen = {circuit.id}
            node = circuit
            while node.parent is not None:
                if node.parent in seen:
                    raise ValueError(f"circuit {circuit.id!r} is part of a parent loop")
                seen.add(node.parent)
                node = by_id[node.parent]
        for evse_id, settings in self.evses.items():
            if settings.circuit is not None and settings.circuit not in by_id:
                raise ValueError(f"evses.{evse_id} names circuit {settings.circuit!r}, which is not defined")
        return self

    @model_validator(mode="after")
    def _battery(self) -> Self:
        if self.battery_soc_meter is not None and self.battery_meter is None:
            raise ValueError("battery_soc_meter needs battery_meter")
        house = {self.grid_meter, self.generation_meter, self.consumption_meter} - {None}
        for key in ("battery_meter", "battery_soc_meter"):
            name = getattr(self, key)
            if name is not None and name in house:
                raise ValueError(f"{key} {name!r} is also a grid/generation/consumption meter")
        if self.battery_meter is not None and self.battery_meter == self.battery_soc_meter:
            raise ValueError("battery_soc_meter must differ from battery_meter (omit it to read soc_pct)")
        if not self.battery_priority_soc <= self.battery_buffer_soc <= self.battery_buffer_start_soc:
            raise ValueError(
                "battery SoC thresholds must rise: battery_priority_soc ≤ battery_buffer_soc ≤ battery_buffer_start_soc"
                f" (got {self.battery_priority_soc:g}, {self.battery_buffer_soc:g}, {self.battery_buffer_start_soc:g})"
            )
        return self

    @property
    def site_limited(self) -> bool:
        """A site import limit is configured (the instantaneous cap or the window average)."""
        return self.max_import_w > 0 or self.import_average.limit_w > 0

    def warnings(self) -> list[str]:
        """Legal but suspicious settings, logged once at start."""
        found = []
        by_id = {c.id: c for c in self.circuits}
        for circuit in self.circuits:
            parent = by_id.get(circuit.parent or "")
            if parent is not None and circuit.max_current_a > parent.max_current_a:
                found.append(
                    f"circuit {circuit.id!r} allows {circuit.max_current_a:g} A, above its parent "
                    f"{parent.id!r} ({parent.max_current_a:g} A): the parent still binds"
                )
        return found
