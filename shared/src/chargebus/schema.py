"""Every MQTT payload of docs/contract.md §6 as a pydantic model, plus JSON helpers.

Input is strict: an unknown field is rejected (it is usually a misspelling), `"v"` must be 1, and a nullable field
may be omitted (it reads as null). Output always carries every field, with times as ISO 8601 UTC milliseconds.
"""

from __future__ import annotations

import itertools
import json
import math
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from chargebus.clock import format_utc

SCHEMA_VERSION: Literal[1] = 1

VIN_PATTERN = r"^[A-HJ-NPR-Z0-9]{17}$"
EVSE_ID_PATTERN = r"^(twc-[0-9a-f]{4}|car-[A-HJ-NPR-Z0-9]{17}|twc3-[a-z0-9-]{1,32}|ocpp-[a-z0-9-]{1,32})$"


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


#: An aware datetime, normalised to UTC, serialised as ISO 8601 with milliseconds and `Z`.
Timestamp = Annotated[
    AwareDatetime,
    AfterValidator(_to_utc),
    PlainSerializer(format_utc, return_type=str, when_used="json"),
]
Vin = Annotated[str, Field(pattern=VIN_PATTERN, description="17 characters of [A-HJ-NPR-Z0-9], upper case")]
EvseId = Annotated[
    str, Field(pattern=EVSE_ID_PATTERN, description="twc-<hex4> | car-<VIN> | twc3-<name> | ocpp-<name>[-<connector>]")
]
Watts = Annotated[float, Field(allow_inf_nan=False)]
NonNegativeWatts = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Phases = Annotated[int, Field(ge=1, le=3)]
Voltage = Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False)]
Amps = Annotated[float, Field(ge=0, allow_inf_nan=False)]
JsonScalar = str | int | float | bool | None


def _echoable(value: str | int | None) -> str | int | None:
    if isinstance(value, str) and not _utf8_text(value):
        raise ValueError("transaction must be UTF-8 text")  # a lone surrogate (\udc00) cannot be echoed back
    return value


def _utf8_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


Transaction = Annotated[
    StrictStr | StrictInt | None, AfterValidator(_echoable), Field(description="echoed back in answers and errors")
]

Mode = Literal["off", "now", "solar", "minsolar"]
MODES: tuple[Mode, ...] = ("off", "now", "solar", "minsolar")
EvseKind = Literal["twc2", "vehicle", "twc3", "ocpp"]

#: What an EVSE id of each kind starts with (docs/contract.md §4): the one place the prefixes are spelt.
EVSE_ID_PREFIXES: dict[EvseKind, str] = {"twc2": "twc-", "vehicle": "car-", "twc3": "twc3-", "ocpp": "ocpp-"}


def evse_kind_of(evse_id: str) -> EvseKind | None:
    """The kind an EVSE id names by its prefix, None for none (the rest of the id is not checked here)."""
    for kind, prefix in EVSE_ID_PREFIXES.items():
        if evse_id.startswith(prefix):
            return kind
    return None


def evse_id_name(evse_id: str) -> str:
    """What follows the kind's prefix: a TWC's hex id, a car's VIN, a Gen3's or an OCPP connector's name."""
    kind = evse_kind_of(evse_id)
    return evse_id.removeprefix(EVSE_ID_PREFIXES[kind]) if kind is not None else evse_id


def make_evse_id(kind: EvseKind, name: str) -> str:
    """The EVSE id of a kind and its name (`make_evse_id("vehicle", vin)` is `car-<VIN>`)."""
    return f"{EVSE_ID_PREFIXES[kind]}{name}"


def car_evse_id(vin: str) -> str:
    """The EVSE a car's own API is (`car-<VIN>`)."""
    return make_evse_id("vehicle", vin)


def vin_of_car_evse(evse_id: str) -> str | None:
    """The VIN of a `car-<VIN>` EVSE id, None for an EVSE of another kind."""
    return evse_id_name(evse_id) if evse_kind_of(evse_id) == "vehicle" else None


Control = Literal["current", "start_stop"]
EvseSource = Literal["rs485", "teslamate", "fleet_api", "ble_proxy", "local_api", "ocpp"]
OnlineState = Literal["online", "asleep", "offline", "unknown"]
ChargingState = Literal["Disconnected", "Stopped", "Charging", "Complete", "NoPower", "Starting"]
ChargePointStatus = Literal[
    "charging",
    "starting",
    "stopping",
    "waiting",
    "kicked_out",
    "full",
    "unplugged",
    "offline",
    "read_only",
    "refused",
]


class Payload(BaseModel):
    """Base of every JSON payload: versioned, unknown fields rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = SCHEMA_VERSION


class EvseState(Payload):
    """`<p>/evse/<evse_id>/state`, retained: one charge controller as a bridge sees it."""

    evse_id: EvseId
    kind: EvseKind
    name: str
    controllable: bool
    controls: list[Control]
    online: bool
    vin: Vin | None = None
    plugged_in: bool | None = None
    plugged_in_at: Timestamp | None = None
    charging: bool | None = None
    phases: Phases
    voltage_v: Voltage
    phase_voltages_v: Annotated[list[Voltage], Field(min_length=1, max_length=3)] | None = None
    current_a: Amps | None = None
    offered_a: Amps | None = None
    power_w: NonNegativeWatts | None = None
    min_power_w: NonNegativeWatts
    max_power_w: NonNegativeWatts
    step_w: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    session_energy_wh: NonNegativeWatts | None = None
    lifetime_energy_wh: NonNegativeWatts | None = None
    state_code: str | None = None
    status_text: str | None = None
    source: EvseSource
    updated_at: Timestamp
    stale: bool
    current_commanded: bool | None = Field(
        default=None,
        description="true: `current_a`/`power_w` are the commanded current, not yet measured (docs/contract.md §6.3)",
    )


class Setpoint(Payload):
    """`<p>/evse/<evse_id>/setpoint`, retained: what the allocator wants from one EVSE, in watts."""

    evse_id: EvseId
    power_w: NonNegativeWatts | None = None
    charge: bool | None = None
    phases: Phases | None = None
    voltage_v: Voltage | None = None
    seq: int | None = Field(default=None, description="informational, epoch ms; bridges do not reject on it")
    expires_at: Timestamp
    ttl_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    reason: str = ""

    def expires_at_epoch(self, received_at: float) -> float:
        """The earlier of `expires_at` and arrival + `ttl_s` (docs/contract.md §6)."""
        deadline = self.expires_at.timestamp()
        if self.ttl_s is not None:
            deadline = min(deadline, received_at + self.ttl_s)
        return deadline


class VehicleState(Payload):
    """`<p>/vehicle/<vin>/state`, retained: a car as the tesla-bridge sees it."""

    vin: Vin
    name: str
    online_state: OnlineState
    at_home: bool | None = None
    plugged_in: bool | None = None
    charging_state: ChargingState | None = None
    soc_pct: Annotated[float, Field(ge=0, le=100)] | None = None
    charge_limit_pct: Annotated[float, Field(ge=0, le=100)] | None = None
    charger_phases: Annotated[int, Field(ge=0, le=3)] | None = None
    charger_voltage_v: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    charger_actual_current_a: Amps | None = None
    charge_current_request_a: Amps | None = None
    charge_current_request_max_a: Amps | None = None
    charger_power_w: NonNegativeWatts | None = None
    charge_energy_added_wh: NonNegativeWatts | None = None
    time_to_full_s: Annotated[float, Field(ge=0)] | None = None
    source: EvseSource
    updated_at: Timestamp
    data_age_s: Annotated[float, Field(ge=0)] | None = None
    current_commanded: bool | None = Field(
        default=None,
        description="true: the `charge_current_*`/`charger_actual_current_a` are commanded (docs/contract.md §6.3)",
    )


class PowerReading(Payload):
    """`<p>/power/<meter>`, retained: a meter reading. Grid convention: + import, - export."""

    power_w: Watts
    energy_wh: Annotated[float, Field(allow_inf_nan=False)] | None = None
    phase_power_w: Annotated[list[Watts], Field(min_length=3, max_length=3)] | None = None
    phase_current_a: Annotated[list[Watts], Field(min_length=3, max_length=3)] | None = None
    ts: Timestamp | None = None
    soc_pct: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None = None  # a battery meter's SoC


class Override(Payload):
    """One active runtime override, as shown in a service's retained state."""

    key: str
    value: Any
    since: Timestamp


class ChargePointState(Payload):
    """One charge point (EVSEs reaching the same car) in `allocator/state`."""

    vin: Vin | None = None
    evse_ids: list[EvseId]
    primary_evse_id: EvseId
    priority: int
    mode: Mode
    allocated_w: NonNegativeWatts
    allocated_a: Amps
    state: ChargePointStatus
    reason: Annotated[str, Field(min_length=1)]
    plan: PlanState | None = None


class CircuitState(Payload):
    """A circuit's limit and per-phase load and headroom in `allocator/state`."""

    id: str
    limit_a: Amps
    load_a: list[float]
    headroom_a: list[float]


class SiteState(Payload):
    """The site limits and the home battery as the allocator sees them; a field is null where not configured."""

    import_w: Watts | None = None  # the grid reading now (+ import, − export); null while stale
    max_import_w: NonNegativeWatts | None = None  # the cap in force: max_import_w or grid_limit, the lower
    average_w: NonNegativeWatts | None = None  # the running window's average import so far
    average_limit_w: NonNegativeWatts | None = None
    window_ends_at: Timestamp | None = None
    battery_soc_pct: Annotated[float, Field(ge=0, le=100)] | None = None
    battery_w: Watts | None = None  # + discharging into the house, − charging


#: At most this many slots in one tariff or forecast message (15-minute slots over four days, with room).
MAX_FORECAST_SLOTS = 1000


class _Slot(BaseModel):
    """One interval `[start, end)` of a tariff or forecast (no `v` of its own: the message carries it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: Timestamp
    end: Timestamp

    @model_validator(mode="after")
    def _ordered(self) -> _Slot:
        if self.end <= self.start:
            raise ValueError("a slot's end must be after its start")
        return self


class PriceSlot(_Slot):
    price: Annotated[float, Field(allow_inf_nan=False)]  # per kWh, in the message's currency; may be negative


class SolarSlot(_Slot):
    power_w: NonNegativeWatts  # expected mean PV generation over the slot


class Co2Slot(_Slot):
    g_per_kwh: Annotated[float, Field(ge=0, allow_inf_nan=False)]


SlotT = TypeVar("SlotT", bound=_Slot)


def _contiguous(slots: list[SlotT]) -> list[SlotT]:
    for before, after in itertools.pairwise(slots):
        if after.start != before.end:
            raise ValueError(
                f"slots must be sorted and contiguous: one ends {before.end}, the next starts {after.start}"
            )
    return slots


class Tariff(Payload):
    """`<p>/tariff/grid` (import price) and `<p>/tariff/feedin` (export earnings), retained."""

    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    slots: Annotated[list[PriceSlot], Field(max_length=MAX_FORECAST_SLOTS), AfterValidator(_contiguous)]


class SolarForecast(Payload):
    """`<p>/forecast/solar`, retained: expected PV generation."""

    slots: Annotated[list[SolarSlot], Field(max_length=MAX_FORECAST_SLOTS), AfterValidator(_contiguous)]


class Co2Forecast(Payload):
    """`<p>/forecast/co2`, retained, optional: the grid's carbon intensity."""

    slots: Annotated[list[Co2Slot], Field(max_length=MAX_FORECAST_SLOTS), AfterValidator(_contiguous)]


class ForecastState(Payload):
    """`<p>/forecast/state`, retained: what the forecast service's sources say about now and the next hour, for
    dashboards (docs/contract.md §10.1); null where no source is configured or no slot covers the moment."""

    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = None
    grid_price: Annotated[float, Field(allow_inf_nan=False)] | None = None  # per kWh, the slot holding now
    grid_price_next_hour: Annotated[float, Field(allow_inf_nan=False)] | None = None  # the slot holding now + 1 h
    feedin_price: Annotated[float, Field(allow_inf_nan=False)] | None = None
    solar_w: NonNegativeWatts | None = None  # the expected PV generation of the slot holding now
    refreshed_at: Timestamp | None = None  # the last fetch that succeeded, any source
    failing: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)  # sources failing now


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
PlanStrategy = Literal["cheapest", "continuous", "solar_only"]
PlanStatus = Literal["on_track", "at_risk", "overrun", "met", "needs_capacity"]
#: A local time of day, `HH:MM` (ASCII digits only): plan departures, schedule windows, tariff switch times.
CLOCK_TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class PlanRequest(Payload):
    """The value of `<p>/vehicle/<vin>/plan/set` (`soc_pct`) or `<p>/evse/<evse_id>/plan/set` (`energy_wh`)."""

    soc_pct: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)] | None = None
    energy_wh: Annotated[float, Field(gt=0, le=500_000, allow_inf_nan=False)] | None = None
    by: Annotated[str, Field(pattern=CLOCK_TIME_PATTERN)] | Timestamp = Field(
        description="HH:MM: the next such local time; or an ISO 8601 time with its offset"
    )
    repeat: Annotated[list[Weekday], Field(min_length=1, max_length=7)] | None = None
    strategy: PlanStrategy = "cheapest"

    @model_validator(mode="after")
    def _one_target(self) -> PlanRequest:
        if (self.soc_pct is None) == (self.energy_wh is None):
            raise ValueError("give exactly one of soc_pct and energy_wh")
        if self.repeat is not None and not isinstance(self.by, str):
            raise ValueError("repeat needs `by` as a local time HH:MM")
        return self


class PlanTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    soc_pct: Annotated[float, Field(gt=0, le=100)] | None = None
    energy_wh: Annotated[float, Field(gt=0)] | None = None


class PlanSlotState(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    start: Timestamp
    end: Timestamp
    power_w: NonNegativeWatts


class PlanState(Payload):
    """A charge point's departure plan in `allocator/state` (null when it has none)."""

    target: PlanTarget
    by: Timestamp
    strategy: PlanStrategy
    needed_wh: NonNegativeWatts  # still to charge, at the wall
    solar_expected_wh: NonNegativeWatts  # of that, what the forecast surplus should bring before `by`
    grid_wh: NonNegativeWatts  # what the planned slots buy from the grid
    cost: float  # of grid_wh at the grid tariff, in `currency`
    currency: str | None = None
    slots: list[PlanSlotState]
    status: PlanStatus
    reason: str = ""


class AllocatorState(Payload):
    """`<p>/allocator/state`, retained: budget, every charge point's allocation and why, circuit headroom."""

    mode: Mode
    charge_now_until: Timestamp | None = None
    available_w: NonNegativeWatts | None = None
    grid_w: Watts | None = None
    surplus_w: Watts | None = None
    overrides: list[Override]
    groups: list[ChargePointState]
    circuits: list[CircuitState]
    site: SiteState | None = None
    computed_at: Timestamp
    compute_ms: Annotated[float, Field(ge=0)]


class HistoryRequest(Payload):
    """`<p>/history/request`: a query, answered on `response_topic` (or the MQTT 5 Response Topic)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    op: Literal["power", "energy", "sessions"]
    evse_id: EvseId | None = None
    vin: Vin | None = None
    from_: Timestamp = Field(alias="from")
    to: Timestamp
    step_s: Annotated[int, Field(ge=1, le=86_400)] = 60
    response_topic: Annotated[str, Field(min_length=1)] | None = None
    transaction: Transaction = None

    @model_validator(mode="after")
    def _one_subject(self) -> HistoryRequest:
        if (self.evse_id is None) == (self.vin is None):
            raise ValueError("give exactly one of evse_id and vin")
        if self.to <= self.from_:
            raise ValueError("'to' must be after 'from'")
        return self


class HistoryResponse(Payload):
    """The answer to a HistoryRequest."""

    transaction: Transaction = None
    status: Literal["ok", "error"]
    data: Any = None
    error: str | None = None


class ErrorEvent(Payload):
    """`<p>/<service>/error`, not retained: one rejected input or one fault condition."""

    topic: str
    payload: Annotated[str, Field(max_length=200)] | None = None
    error: str
    transaction: Transaction = None


class UsageCar(Payload):
    vin: Vin
    data: int
    command: int
    wake: int
    ble: int
    billed_usd: float
    last_call_at: Timestamp | None = None
    by_reason: dict[str, int] = Field(
        default_factory=dict, description="calls made today per cause (what each bought, docs/contract.md §6.8)"
    )


class Usage(Payload):
    """`<p>/tesla-bridge/usage`, retained: Tesla API calls today per car and category."""

    date: date
    rate_limited_until: Timestamp | None = None
    cars: list[UsageCar]


class CommandEnvelope(BaseModel):
    """The JSON form of a command: `{"value": …, "transaction": …}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = SCHEMA_VERSION
    value: Any
    transaction: Transaction = None


#: Every payload model by the name `chargebus schema` prints it under.
PAYLOAD_MODELS: dict[str, type[BaseModel]] = {
    "EvseState": EvseState,
    "Setpoint": Setpoint,
    "VehicleState": VehicleState,
    "PowerReading": PowerReading,
    "AllocatorState": AllocatorState,
    "HistoryRequest": HistoryRequest,
    "HistoryResponse": HistoryResponse,
    "ErrorEvent": ErrorEvent,
    "Usage": Usage,
    "Tariff": Tariff,
    "SolarForecast": SolarForecast,
    "Co2Forecast": Co2Forecast,
    "ForecastState": ForecastState,
    "PlanRequest": PlanRequest,
    "Command": CommandEnvelope,
}

ModelT = TypeVar("ModelT", bound=BaseModel)


class PayloadError(ValueError):
    """A payload that cannot be accepted, with a message fit for an ErrorEvent."""

    def __init__(self, message: str, transaction: str | int | None = None) -> None:
        super().__init__(message)
        self.transaction = transaction


def to_json(model: BaseModel) -> bytes:
    """Serialise a payload with every field present (nulls included) and aliases (`from`)."""
    return model.model_dump_json(by_alias=True).encode()


def describe_validation_error(error: ValidationError) -> str:
    """One short line per problem: `field: why`."""
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "payload"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


TOO_DEEP = "invalid JSON: nested too deeply"


def decode_json(payload: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, no duplicate-key surprises are caught downstream by the models."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError("payload is not UTF-8 text") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"invalid JSON: {exc.msg} at position {exc.pos}") from None
    except RecursionError:
        raise PayloadError(TOO_DEEP) from None
    except ValueError as exc:  # e.g. an integer of more than 4 300 digits
        raise PayloadError(f"invalid JSON: {exc}") from None


def _reject_constant(name: str) -> float:
    raise PayloadError(f"invalid JSON: {name} is not a number")


def transaction_of(data: Any) -> str | int | None:
    """The `transaction` of a decoded JSON object, when it carries a usable one."""
    if isinstance(data, dict):
        value = data.get("transaction")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and _utf8_text(value):
            return value
    return None


def transaction_in(payload: bytes) -> str | int | None:
    """The transaction a raw payload carries, if any: for answering input refused before it is parsed."""
    try:
        return transaction_of(decode_json(payload))
    except (ValueError, RecursionError):  # PayloadError included: no usable transaction
        return None


def parse_payload(model: type[ModelT], payload: bytes) -> ModelT:
    """Decode and validate a JSON payload into `model`, raising PayloadError with a readable message."""
    data = decode_json(payload)
    if not isinstance(data, dict):
        raise PayloadError(f"expected a JSON object for {model.__name__}")
    try:
        # Strict JSON mode: "10" is not a number and 1 is not a boolean, but ISO strings are datetimes.
        return model.model_validate_json(payload, strict=True)
    except ValidationError as exc:
        raise PayloadError(describe_validation_error(exc), transaction_of(data)) from None


def parse_command(payload: bytes) -> CommandEnvelope:
    """A command in either form: plain (`10`, `solar`, `true`, `[…]`) or `{"value": …, "transaction": …}`.

    A plain word that is not JSON (`solar`) is taken as a string, so mosquitto_pub users need no quotes.
    """
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise PayloadError("payload is not UTF-8 text") from None
    if not text:
        raise PayloadError("empty payload")
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError:
        if text[0] in '{["':
            raise PayloadError("invalid JSON") from None
        return CommandEnvelope(value=text)
    except RecursionError:
        raise PayloadError(TOO_DEEP) from None
    except ValueError as exc:  # e.g. an integer of more than 4 300 digits
        raise PayloadError(f"invalid JSON: {exc}") from None
    if isinstance(data, dict):
        try:
            return CommandEnvelope.model_validate(data)
        except ValidationError as exc:
            raise PayloadError(
                f"a JSON object command carries its value in 'value': {describe_validation_error(exc)}",
                transaction_of(data),
            ) from None
    return CommandEnvelope(value=data)


def parse_for_topic(model: type[ModelT], payload: bytes, field: str, topic_id: str | None) -> ModelT:
    """`parse_payload`, and the payload's `field` (`evse_id`, `vin`) must name what its topic names (None: no check)."""
    parsed = parse_payload(model, payload)
    named = getattr(parsed, field)
    if topic_id is not None and named != topic_id:
        raise PayloadError(f"{field} {named!r} does not match the topic's {topic_id!r}")
    return parsed


def parse_power(payload: bytes) -> PowerReading:
    """A meter payload: a plain number of watts, or a PowerReading object."""
    data = decode_json(payload)
    if isinstance(data, bool):
        raise PayloadError("expected a number of watts or a PowerReading object, got a boolean")
    if isinstance(data, int | float):
        if not math.isfinite(data):
            raise PayloadError("power must be finite")
        return PowerReading(power_w=float(data))
    if isinstance(data, dict):
        try:
            return PowerReading.model_validate_json(payload, strict=True)
        except ValidationError as exc:
            raise PayloadError(describe_validation_error(exc), transaction_of(data)) from None
    raise PayloadError("expected a number of watts or a PowerReading object")


def json_schemas() -> dict[str, Any]:
    """The JSON Schema of every payload (validation mode: what a publisher must send)."""
    return {name: model.model_json_schema(by_alias=True) for name, model in PAYLOAD_MODELS.items()}


VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
_VIN_VALUES = {
    **{str(d): d for d in range(10)},
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}


def vin_check_digit_ok(vin: str) -> bool:
    """ISO 3779 / North-American check digit (position 9). Mandatory only in North America: callers warn."""
    if len(vin) != 17 or any(c not in _VIN_VALUES for c in vin):
        return False
    total = sum(_VIN_VALUES[c] * w for c, w in zip(vin, VIN_WEIGHTS, strict=True))
    remainder = total % 11
    return vin[8] == ("X" if remainder == 10 else str(remainder))
