"""`chargebus.toml` + environment, per docs/contract.md §2.

One file (``--config``, else ``$CHARGEBUS_CONFIG``, else ``./chargebus.toml``), any scalar key overridable by
``CHARGEBUS_<SECTION>__<KEY>``, plus the shortcuts ``CHARGEBUS_MQTT_URL``, ``CHARGEBUS_TOPIC_PREFIX`` and
``CHARGEBUS_STATE_DIR``. Each service validates only its own sections (plus ``[mqtt]``, ``state_dir`` and, for the
allocator and history, ``[[meters]]``), so a typo in ``[tesla]`` never stops the twc-bridge. Problems are
collected and reported one line each (key, value, why); callers exit 2.

Safety limits are errors, never silent clamps: a 100 A wiring limit on a Gen2 TWC is a mistake to fix, not a
value to quietly reduce.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from chargebus.schema import EVSE_ID_PATTERN, VIN_PATTERN, Mode
from chargebus.topics import DEFAULT_PREFIX, validate_prefix

log = logging.getLogger("chargebus.config")

CONFIG_ENV = "CHARGEBUS_CONFIG"
DEFAULT_CONFIG_FILE = "chargebus.toml"
EXIT_CONFIG_ERROR = 2

#: The largest current any Gen2 TWC is rated for.
GEN2_MAX_AMPS = 80


def _empty_is_none(value: Any) -> Any:
    """The contract writes "not set" as "" in TOML (`ca_file = ""`): read it as None."""
    return None if value == "" else value


OptionalPath = Annotated[Path | None, BeforeValidator(_empty_is_none)]
OptionalStr = Annotated[str | None, BeforeValidator(_empty_is_none)]
Vin = Annotated[str, Field(pattern=VIN_PATTERN)]
EvseId = Annotated[str, Field(pattern=EVSE_ID_PATTERN)]
Priority = Annotated[int, Field(ge=-1000, le=1000)]
PhaseName = Literal["L1", "L2", "L3"]
Wiring = Literal["L1", "L2", "L3", "L1L2L3"]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_TWC3_NAME = re.compile(r"^[a-z0-9-]{1,32}$")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")  # a DNS name or an IPv4 address


def repeated(items: list[str]) -> list[str]:
    """The values that occur more than once, sorted: ids and names must be unique."""
    return sorted({item for item in items if items.count(item) > 1})


class Section(BaseModel):
    """A config table: unknown keys are errors (they are usually misspellings)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_timezone(value: str) -> str:
    if value:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. 'Europe/Berlin')") from None
    return value


#: An IANA time zone name, or "" for the system's.
Timezone = Annotated[str, AfterValidator(_check_timezone)]


class MqttConfig(Section):
    url: str = "mqtt://127.0.0.1:1883"
    username: OptionalStr = None
    password: SecretStr | None = None
    password_file: OptionalPath = None
    ca_file: OptionalPath = None
    prefix: str = DEFAULT_PREFIX
    ha_discovery: bool = True
    ha_prefix: str = "homeassistant"
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    protocol: Literal["auto", "5", "3.1.1"] = "auto"

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"mqtt", "mqtts"}:
            raise ValueError("must start with mqtt:// or mqtts://")
        if not parts.hostname:
            raise ValueError("has no host")
        try:
            _ = parts.port
        except ValueError:
            raise ValueError("has an invalid port") from None
        return value

    @field_validator("prefix", "ha_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        return validate_prefix(value)

    @model_validator(mode="after")
    def _one_password(self) -> Self:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        return self

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"

    def credentials(self) -> tuple[str | None, str | None]:
        """Username and password from the keys, else from the URL; a password_file is read now."""
        parts = urlsplit(self.url)
        username = self.username or (unquote(parts.username) if parts.username else None)
        password: str | None = None
        if self.password is not None:
            password = self.password.get_secret_value()
        elif self.password_file is not None:
            password = self.password_file.read_text(encoding="utf-8").strip()
        elif parts.password:
            password = unquote(parts.password)
        return username, password

    @property
    def redacted_url(self) -> str:
        """The URL fit for logs: any password replaced by ***."""
        return redact_url(self.url)


class TwcConfig(Section):
    port: str = "/dev/ttyUSB0"
    mode: Literal["master", "listen"] = "master"
    master_id: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{4}$")] = "7777"
    voltage_v: Annotated[float, Field(ge=90, le=260)] = 240
    phases: Literal[1, 3] = 1
    wiring_max_amps: Annotated[int, Field(ge=5)] = 32
    bus_max_amps: Annotated[int, Field(ge=5)] = 32
    min_amps: int = 6
    failsafe_amps: Annotated[int, Field(ge=0)] = 6
    start_stop: bool = False
    vin_hints: dict[Annotated[str, Field(pattern=r"^[0-9a-f]{4}$")], Vin] = Field(default_factory=dict)

    @field_validator("wiring_max_amps")
    @classmethod
    def _wiring_rated(cls, value: int) -> int:
        if value > GEN2_MAX_AMPS:
            raise ValueError(f"above {GEN2_MAX_AMPS} A, the largest Gen2 TWC rating")
        return value

    @field_validator("min_amps")
    @classmethod
    def _min_amps(cls, value: int) -> int:
        if value < 5:
            raise ValueError("below 5 A, which cars do not charge at reliably")
        return value

    @model_validator(mode="after")
    def _consistent_limits(self) -> Self:
        if self.min_amps > self.wiring_max_amps:
            raise ValueError(f"min_amps {self.min_amps} is above wiring_max_amps {self.wiring_max_amps}")
        if self.bus_max_amps < self.min_amps:
            raise ValueError(f"bus_max_amps {self.bus_max_amps} is below min_amps {self.min_amps}")
        if 0 < self.failsafe_amps < self.min_amps:
            raise ValueError(f"failsafe_amps {self.failsafe_amps} is between 0 and min_amps {self.min_amps}")
        if self.failsafe_amps > self.wiring_max_amps:
            raise ValueError(f"failsafe_amps {self.failsafe_amps} is above wiring_max_amps {self.wiring_max_amps}")
        return self


class HomeLocation(Section):
    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]
    radius_m: Annotated[float, Field(gt=0, le=100_000)] = 150


class TeslaVehicleConfig(Section):
    vin: Vin
    name: str = ""
    teslamate_car_id: Annotated[int, Field(ge=1)] | None = None
    controllable: bool = True
    home: HomeLocation | None = None
    wall_connector: OptionalStr = None
    phases: Annotated[int, Field(ge=1, le=3)] = 1
    voltage_v: Annotated[float, Field(ge=90, le=260)] = 230
    transport: Literal["fleet", "ble_proxy"] = "fleet"
    ble_proxy_url: OptionalStr = None
    # BLE proxy cars only: per-call timeout, the circuit breaker (this many failed calls in a row pause BLE calls
    # for ble_breaker_open_s, then one is tried), and what happens meanwhile ("fleet": the Fleet API, billed).
    ble_timeout_s: Annotated[float, Field(gt=0, le=300)] = 30
    ble_breaker_failures: Annotated[int, Field(ge=1, le=100)] = 3
    ble_breaker_open_s: Annotated[float, Field(gt=0, le=86_400)] = 300
    ble_fallback: Literal["none", "fleet"] = "none"

    @field_validator("ble_proxy_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in {"http", "https"}:
            raise ValueError("must be an http:// or https:// URL (e.g. http://127.0.0.1:8080)")
        return value

    @model_validator(mode="after")
    def _proxy_url(self) -> Self:
        if self.transport == "ble_proxy" and not self.ble_proxy_url:
            raise ValueError('transport "ble_proxy" needs ble_proxy_url')
        return self

    @property
    def uses_fleet_api(self) -> bool:
        """Whether this car may call the Fleet API: on that transport, or as the BLE proxy's fallback."""
        return self.transport == "fleet" or self.ble_fallback == "fleet"


class WallConnectorConfig(Section):
    name: str
    host: str
    # The installer's current limit, which the local API does not report; unset = the unit's rating.
    max_current_a: Annotated[float, Field(gt=0, le=80)] | None = None

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        host, _, port = value.partition(":")
        if not _HOST.fullmatch(host) or (port and not (port.isdigit() and 0 < int(port) < 65536)):
            raise ValueError('must be "host" or "host:port" (a name or IPv4 address, no scheme or path)')
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _TWC3_NAME.fullmatch(value):
            raise ValueError("must be 1-32 characters of a-z, 0-9 and '-' (it becomes the id twc3-<name>)")
        return value


class Prices(Section):
    data: Annotated[float, Field(ge=0)] = 0.002
    command: Annotated[float, Field(ge=0)] = 0.001
    wake: Annotated[float, Field(ge=0)] = 0.02


class TeslaConfig(Section):
    api_base: str = "https://fleet-api.prd.na.vn.cloud.tesla.com"
    command_base: OptionalStr = None
    token_url: str = "https://fleet-auth.prd.vn.cloud.tesla.com/oauth2/v3/token"  # noqa: S105 - a URL, not a secret
    client_id: OptionalStr = None
    token_file: OptionalPath = None
    ca_file: OptionalPath = None
    teslamate_prefix: str = "teslamate"
    teslamate_stale_s: Annotated[float, Field(gt=0)] = 900
    max_wakes_per_day: Annotated[int, Field(ge=0, le=100)] = 6
    command_min_interval_s: Annotated[float, Field(ge=1)] = 60
    min_amps: Annotated[int, Field(ge=1, le=16)] = 5
    failsafe_amps: Annotated[int, Field(ge=0, le=48)] = 0
    prices: Prices = Field(default_factory=Prices)
    vehicles: list[TeslaVehicleConfig] = Field(default_factory=list)
    wall_connectors: list[WallConnectorConfig] = Field(default_factory=list)

    @field_validator("api_base", "token_url", "command_base")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in {"http", "https"}:
            raise ValueError("must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _references(self) -> Self:
        if duplicates := repeated([v.vin for v in self.vehicles]):
            raise ValueError(f"vehicles list VIN {', '.join(duplicates)} more than once")
        if duplicates := repeated([w.name for w in self.wall_connectors]):
            raise ValueError(f"wall_connectors name {', '.join(duplicates)} is defined more than once")
        names = {w.name for w in self.wall_connectors}
        for vehicle in self.vehicles:
            if vehicle.wall_connector and vehicle.wall_connector not in names:
                raise ValueError(
                    f"vehicle {vehicle.vin} names wall_connector {vehicle.wall_connector!r}, "
                    "which no [[tesla.wall_connectors]] entry defines"
                )
        if any(v.uses_fleet_api for v in self.vehicles) and (not self.client_id or self.token_file is None):
            raise ValueError('vehicles on the Fleet API (or with ble_fallback = "fleet") need client_id and token_file')
        return self


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
        if not _HHMM.fullmatch(value):
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


class MeterConfig(Section):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    topic: Annotated[str, Field(min_length=1)]
    json_path: OptionalStr = None
    scale: Annotated[float, Field(allow_inf_nan=False)] = 1.0
    invert: bool = False
    stale_after_s: Annotated[float, Field(gt=0)] = 30

    @field_validator("topic")
    @classmethod
    def _no_wildcards(cls, value: str) -> str:
        if "#" in value or "+" in value:
            raise ValueError("a meter reads one topic: no wildcards")
        return value


class HistoryConfig(Section):
    database: OptionalStr = None
    retention_days: Annotated[int, Field(ge=1, le=36_500)] = 730
    timezone: Timezone = ""
    gap_limit_s: Annotated[float, Field(gt=0)] = 1800

    @field_validator("database")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("must be sqlite:////absolute/path.sqlite or postgresql://…")
        return value


#: What a tariff or forecast source may be (docs/contract.md §10.2); the ones the forecast service cannot fetch yet
#: are refused at load time, so a config naming one never starts a service that publishes nothing.
TARIFF_SOURCES = ("nordpool", "entsoe", "tibber", "octopus", "fixed")
SOLAR_SOURCES = ("forecast_solar", "open_meteo")
NOT_SUPPORTED_YET = frozenset({"entsoe", "octopus"})
#: The bidding zones pynordpool knows (its `AREAS`), copied: chargebus never imports a service's libraries.
NORDPOOL_AREAS = (
    "EE", "LT", "LV", "AT", "BE", "FR", "GER", "NL", "PL", "DK1", "DK2", "FI", "NO1", "NO2", "NO3", "NO4", "NO5",
    "SE1", "SE2", "SE3", "SE4", "BG", "TEL", "SYS",
)  # fmt: skip
NORDPOOL_CURRENCIES = ("EUR", "BGN", "DKK", "NOK", "PLN", "RON", "SEK")
Price = Annotated[float, Field(ge=-100, le=100, allow_inf_nan=False)]  # per kWh: a real one is far inside
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
HHMM = Annotated[str, Field(pattern=_HHMM.pattern)]


def _check_source(known: tuple[str, ...]) -> Any:
    def check(value: Any) -> Any:
        source = value.get("source") if isinstance(value, dict) else None
        if isinstance(value, dict) and source is None:
            raise ValueError(f"needs source = one of {', '.join(known)}")
        if source in NOT_SUPPORTED_YET:
            supported = ", ".join(s for s in known if s not in NOT_SUPPORTED_YET)
            raise ValueError(f"source {source!r} is not supported yet (supported: {supported})")
        if isinstance(source, str) and source not in known:
            raise ValueError(f"unknown source {source!r} (known: {', '.join(known)})")
        return value

    return BeforeValidator(check)


class Fees(Section):
    """What turns a spot price per MWh into a price per kWh: `(spot / 1000 + fee_per_kwh) × (1 + vat_pct / 100)`."""

    fee_per_kwh: Price = 0
    vat_pct: Annotated[float, Field(ge=0, le=100)] = 0


class FixedTariffConfig(Section):
    """A flat price, or a day and a night price switching at local times (no provider, no library)."""

    source: Literal["fixed"]
    currency: Currency = "EUR"
    price: Price | None = None
    day_price: Price | None = None
    night_price: Price | None = None
    night_start: HHMM = "22:00"
    night_end: HHMM = "06:00"
    timezone: Timezone = ""
    days: Annotated[int, Field(ge=1, le=7)] = 2

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        rates = (self.day_price is not None, self.night_price is not None)
        if self.price is not None and any(rates):
            raise ValueError("give price (flat), or day_price and night_price, not both")
        if self.price is None and not all(rates):
            raise ValueError("needs price (flat), or both day_price and night_price")
        if self.price is None and self.night_start == self.night_end:
            raise ValueError("night_start and night_end must differ")
        return self


class NordpoolTariffConfig(Fees):
    """Nord Pool day-ahead prices of one bidding zone (pynordpool)."""

    source: Literal["nordpool"]
    area: str
    currency: Literal["EUR", "BGN", "DKK", "NOK", "PLN", "RON", "SEK"] = "EUR"

    @field_validator("area")
    @classmethod
    def _known_area(cls, value: str) -> str:
        if value not in NORDPOOL_AREAS:
            raise ValueError(f"not a Nord Pool area (one of {', '.join(NORDPOOL_AREAS)})")
        return value


class TibberTariffConfig(Section):
    """Tibber's prices for one home (pytibber): totals per kWh, taxes and fees included, in the home's currency."""

    source: Literal["tibber"]
    token_file: Path  # a file holding only the API access token (developer.tibber.com); never logged
    home_id: OptionalStr = None  # which home, when the account has several; default the first active one

    def token(self) -> str:
        """The access token: the file's content, stripped."""
        return self.token_file.read_text(encoding="utf-8").strip()


class SolarPlane(Section):
    """One PV array: where it is, how it faces, how big it is. Azimuth: 0 = south, -90 = east, 90 = west."""

    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]
    declination: Annotated[float, Field(ge=0, le=90)]
    azimuth: Annotated[float, Field(ge=-180, le=180)]
    kwp: Annotated[float, Field(gt=0, le=10_000)]
    api_key_file: OptionalPath = None

    @field_validator("api_url", check_fields=False)
    @classmethod
    def _http_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in {"http", "https"} or not urlsplit(value).hostname:
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    def api_key(self) -> str | None:
        """The key from `api_key_file` (its content, stripped); None without one."""
        if self.api_key_file is None:
            return None
        return self.api_key_file.read_text(encoding="utf-8").strip() or None


class ForecastSolarConfig(SolarPlane):
    """Forecast.Solar's estimate (forecast-solar); hourly slots."""

    source: Literal["forecast_solar"]
    damping: Annotated[float, Field(ge=0, le=1)] = 0
    api_url: str = "https://api.forecast.solar"


class OpenMeteoConfig(SolarPlane):
    """Open-Meteo's irradiance turned into PV power (open-meteo-solar-forecast); 15-minute slots."""

    source: Literal["open_meteo"]
    ac_kwp: Annotated[float, Field(gt=0, le=10_000)] | None = None
    forecast_days: Annotated[int, Field(ge=1, le=7)] = 3
    api_url: str = "https://api.open-meteo.com"


GridTariffConfig = Annotated[
    FixedTariffConfig | NordpoolTariffConfig | TibberTariffConfig,
    Field(discriminator="source"),
    _check_source(TARIFF_SOURCES),
]
SolarConfig = Annotated[
    ForecastSolarConfig | OpenMeteoConfig, Field(discriminator="source"), _check_source(SOLAR_SOURCES)
]


#: Any one source's table.
SourceConfig = FixedTariffConfig | NordpoolTariffConfig | TibberTariffConfig | ForecastSolarConfig | OpenMeteoConfig


class ForecastConfig(Section):
    refresh_s: Annotated[float, Field(ge=60, le=86_400, allow_inf_nan=False)] = 3600
    # After a failed fetch: retry after retry_initial_s, doubling up to retry_max_s, until the next success.
    retry_initial_s: Annotated[float, Field(ge=1, le=3600, allow_inf_nan=False)] = 60
    retry_max_s: Annotated[float, Field(ge=1, le=86_400, allow_inf_nan=False)] = 1800
    grid_tariff: GridTariffConfig | None = None
    feedin_tariff: GridTariffConfig | None = None
    solar: SolarConfig | None = None
    co2: dict[str, Any] | None = None

    @field_validator("co2")
    @classmethod
    def _no_co2_source(cls, value: dict[str, Any] | None) -> None:
        if value is not None:
            raise ValueError("no CO2 provider is supported yet: leave it out (anyone may publish <p>/forecast/co2)")
        return value

    @model_validator(mode="after")
    def _retry_bounds(self) -> Self:
        if self.retry_initial_s > self.retry_max_s:
            raise ValueError(f"retry_initial_s {self.retry_initial_s:g} is above retry_max_s {self.retry_max_s:g}")
        return self

    @property
    def sources(self) -> dict[str, SourceConfig]:
        """What is configured, by topic key (`tariff_grid`, `tariff_feedin`, `forecast_solar`)."""
        found = {"tariff_grid": self.grid_tariff, "tariff_feedin": self.feedin_tariff, "forecast_solar": self.solar}
        return {key: source for key, source in found.items() if source is not None}


#: A charge point's name becomes `ocpp-<name>`, and `ocpp-<name>-<n>` for its connectors 2…9.
_OCPP_NAME = re.compile(r"^[a-z0-9-]{1,30}$")
#: The lowest current IEC 61851 lets a charger signal to a car.
IEC_MIN_AMPS = 6
#: Type 2 / IEC 62196 stops at 63 A per phase; 80 A is the largest North-American AC rating.
OCPP_MAX_AMPS = 80


def _listen_address(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError('must be "host:port" (e.g. "0.0.0.0:9000")')
    host = host.strip("[]")
    if host and not (_HOST.fullmatch(host) or ":" in host):
        raise ValueError('must be "host:port" with a host name or IP address')
    return value


class OcppChargePointConfig(Section):
    ocpp_id: Annotated[str, Field(pattern=r"^[\x21-\x7e]{1,48}$")]
    name: str
    password_file: OptionalPath = None
    max_current_a: Annotated[int, Field(ge=IEC_MIN_AMPS, le=OCPP_MAX_AMPS)] = 16
    min_current_a: Annotated[int, Field(ge=IEC_MIN_AMPS, le=OCPP_MAX_AMPS)] = 6
    phases: Literal[1, 3] = 3
    voltage_v: Annotated[float, Field(ge=90, le=260)] = 230
    rate_unit: Literal["A", "W"] = "A"
    failsafe_current_a: Annotated[int, Field(ge=0, le=OCPP_MAX_AMPS)] = 6
    start_stop: bool = False
    id_tags: dict[Annotated[str, Field(min_length=1, max_length=20)], Vin] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _OCPP_NAME.fullmatch(value):
            raise ValueError("must be 1-30 characters of a-z, 0-9 and '-' (it becomes the id ocpp-<name>)")
        return value

    @field_validator("ocpp_id")
    @classmethod
    def _url_safe(cls, value: str) -> str:
        if any(c in value for c in "/?#%"):
            raise ValueError("must not contain '/', '?', '#' or '%' (it is the last part of the charger's URL)")
        return value

    @model_validator(mode="after")
    def _limits(self) -> Self:
        if self.min_current_a > self.max_current_a:
            raise ValueError(f"min_current_a {self.min_current_a} is above max_current_a {self.max_current_a}")
        if 0 < self.failsafe_current_a < self.min_current_a:
            raise ValueError(
                f"failsafe_current_a {self.failsafe_current_a} is between 0 and min_current_a {self.min_current_a}"
            )
        if self.failsafe_current_a > self.max_current_a:
            raise ValueError(
                f"failsafe_current_a {self.failsafe_current_a} is above max_current_a {self.max_current_a}"
            )
        return self

    def password(self) -> str | None:
        """The HTTP Basic password: the file's content without its trailing newline; None when none is set."""
        if self.password_file is None:
            return None
        return self.password_file.read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")


class OcppConfig(Section):
    listen: Annotated[str, AfterValidator(_listen_address)] = "0.0.0.0:9000"
    cert_file: OptionalPath = None
    key_file: OptionalPath = None
    meter_interval_s: Annotated[int, Field(ge=1, le=3600)] = 10
    heartbeat_s: Annotated[int, Field(ge=5, le=86_400)] = 60
    allow_unknown: bool = False
    charge_points: list[OcppChargePointConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Self:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give both cert_file and key_file (wss://), or neither (ws://)")
        if duplicates := repeated([cp.ocpp_id for cp in self.charge_points]):
            raise ValueError(f"charge_points list ocpp_id {', '.join(duplicates)} more than once")
        names = [cp.name for cp in self.charge_points]
        if duplicates := repeated(names):
            raise ValueError(f"charge_points name {', '.join(duplicates)} is defined more than once")
        taken = set(names)
        for name in names:
            base, _, connector = name.rpartition("-")
            if connector.isdigit() and base in taken:
                raise ValueError(f"charge point name {name!r} is also the id of connector {connector} of {base!r}")
        return self

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def tls(self) -> bool:
        return self.cert_file is not None


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "chargebus"


KNOWN_TOP_LEVEL = frozenset({"state_dir", "mqtt", "twc", "tesla", "allocator", "meters", "history", "ocpp", "forecast"})


class _ShortcutEnv(PydanticBaseSettingsSource):
    """CHARGEBUS_MQTT_URL and CHARGEBUS_TOPIC_PREFIX, the two shortcuts of docs/contract.md §2."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        del field
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        mqtt: dict[str, str] = {}
        if url := os.environ.get("CHARGEBUS_MQTT_URL"):
            mqtt["url"] = url
        if prefix := os.environ.get("CHARGEBUS_TOPIC_PREFIX"):
            mqtt["prefix"] = prefix
        return {"mqtt": mqtt} if mqtt else {}


class CommonConfig(BaseSettings):
    """What every service reads: state_dir and [mqtt]."""

    model_config = SettingsConfigDict(
        env_prefix="CHARGEBUS_",
        env_nested_delimiter="__",
        extra="ignore",
        frozen=True,
        case_sensitive=False,
    )
    #: The sections this service validates; the rest of the file is another service's business.
    SECTIONS: ClassVar[frozenset[str]] = frozenset({"state_dir", "mqtt"})

    state_dir: Path = Field(default_factory=default_state_dir)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier sources win: environment over the file (passed as init values).
        del dotenv_settings, file_secret_settings
        return (_ShortcutEnv(settings_cls), env_settings, init_settings)


class TwcBridgeConfig(CommonConfig):
    SECTIONS: ClassVar[frozenset[str]] = CommonConfig.SECTIONS | {"twc"}
    twc: TwcConfig = Field(default_factory=TwcConfig)


class TeslaBridgeConfig(CommonConfig):
    SECTIONS: ClassVar[frozenset[str]] = CommonConfig.SECTIONS | {"tesla"}
    tesla: TeslaConfig = Field(default_factory=TeslaConfig)


class OcppBridgeConfig(CommonConfig):
    SECTIONS: ClassVar[frozenset[str]] = CommonConfig.SECTIONS | {"ocpp"}
    ocpp: OcppConfig = Field(default_factory=OcppConfig)


class AllocatorServiceConfig(CommonConfig):
    SECTIONS: ClassVar[frozenset[str]] = CommonConfig.SECTIONS | {"allocator", "meters"}
    allocator: AllocatorConfig = Field(default_factory=AllocatorConfig)
    meters: list[MeterConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_meters(self) -> Self:
        if duplicates := repeated([m.name for m in self.meters]):
            raise ValueError(f"meter name {', '.join(duplicates)} is defined more than once")
        return self


class HistoryServiceConfig(CommonConfig):
    SECTIONS: ClassVar[frozenset[str]] = CommonConfig.SECTIONS | {"history", "meters"}
    history: HistoryConfig = Field(default_factory=HistoryConfig)
    meters: list[MeterConfig] = Field(default_factory=list)

    @property
    def database_url(self) -> str:
        return self.history.database or f"sqlite:///{(self.state_dir / 'history.sqlite').absolute()}"


class ForecastServiceConfig(CommonConfig):
    SECTIONS: ClassVar[frozenset[str]] = CommonConfig.SECTIONS | {"forecast"}
    forecast: ForecastConfig = Field(default_factory=ForecastConfig)


class FullConfig(
    TwcBridgeConfig,
    TeslaBridgeConfig,
    OcppBridgeConfig,
    AllocatorServiceConfig,
    HistoryServiceConfig,
    ForecastServiceConfig,
):
    """Every section at once: `chargebus config check` and the example file's test."""

    SECTIONS: ClassVar[frozenset[str]] = KNOWN_TOP_LEVEL


#: `chargebus config check` without --service validates every section.
FULL_CONFIG_SERVICE: type[CommonConfig] = FullConfig

#: Config class of each service, by service name.
SERVICE_CONFIGS: dict[str, type[CommonConfig]] = {
    "twc-bridge": TwcBridgeConfig,
    "tesla-bridge": TeslaBridgeConfig,
    "allocator": AllocatorServiceConfig,
    "history": HistoryServiceConfig,
    "ocpp-bridge": OcppBridgeConfig,
    "forecast": ForecastServiceConfig,
}

ConfigT = TypeVar("ConfigT", bound=CommonConfig)


class ConfigError(Exception):
    """An invalid configuration: one human-readable line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def resolve_config_path(explicit: str | Path | None) -> tuple[Path, bool]:
    """The config file to read, and whether the user asked for it (then it must exist)."""
    if explicit:
        return Path(explicit), True
    if env := os.environ.get(CONFIG_ENV):
        return Path(env), True
    return Path(DEFAULT_CONFIG_FILE), False


def _read_toml(path: Path, required: bool) -> dict[str, Any]:
    if not path.exists():
        if required:
            raise ConfigError([f"config: file {path} does not exist"])
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"config: {path} is not valid TOML: {exc}"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"config: cannot read {path}: {exc}"]) from None


def redact_url(url: str) -> str:
    """A URL fit for logs and messages: any password replaced by ***."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return "***"
    return parts._replace(netloc=netloc).geturl()


def _show_value(value: Any, key: str) -> str:
    if any(word in key for word in _SECRET_WORDS) and "file" not in key and "url" not in key:
        return "***"
    if isinstance(value, str) and "@" in value:
        value = redact_url(value)
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _describe(error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors(include_url=False):
        key = ".".join(str(part) for part in item["loc"])
        why = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            why = "unknown key (misspelt?)"
        if item["type"] == "missing":
            lines.append(f"config: {key}: missing")
        elif item["type"] in {"model_type", "model_attributes_type"} or not key:
            lines.append(f"config: {key or '(top level)'}: {why}")
        else:
            lines.append(f"config: {key} = {_show_value(item.get('input'), key)}: {why}")
    return lines


_SECRET_WORDS = ("password", "secret", "token", "api_key")
#: Files already warned about in this process: one warning each, however often the config is read.
_warned_readable: set[Path] = set()


def _leaves(table: dict[str, Any], where: str = "") -> Iterator[tuple[str, str, Any]]:
    """(dotted key, key, value) of every scalar in a TOML tree, arrays of tables included."""
    for key, value in table.items():
        dotted = f"{where}{key}"
        if isinstance(value, dict):
            yield from _leaves(value, f"{dotted}.")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, dict):
                    yield from _leaves(item, f"{dotted}.{index}.")
        else:
            yield dotted, key.lower(), value


def _has_password(url: str) -> bool:
    try:
        return urlsplit(url).password is not None
    except ValueError:
        return False


def _secret_keys(raw: dict[str, Any]) -> tuple[list[str], list[tuple[str, str]]]:
    """Dotted keys holding a secret value, and (key, path) of the files named as holding one (`*password_file`,
    `token_file`). A URL counts when it carries a password (`mqtt://u:p@host`)."""
    keys: list[str] = []
    files: list[tuple[str, str]] = []
    for dotted, key, value in _leaves(raw):
        if not isinstance(value, str) or not value:
            continue
        if key.endswith("url"):
            if _has_password(value):
                keys.append(dotted)
        elif any(word in key for word in _SECRET_WORDS):
            if key.endswith("_file"):
                files.append((dotted, value))
            else:
                keys.append(dotted)
    return keys, files


def _readable_by_others(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & stat.S_IROTH)
    except OSError:
        return False


def warn_if_secrets_readable(config_path: Path, raw: dict[str, Any]) -> list[str]:
    """Warn (once per file) when the config file holds a secret, or names a secret file, that other users of the
    machine can read. Returns the warnings given now (for tests)."""
    keys, files = _secret_keys(raw)
    found: list[tuple[Path, str]] = []
    if keys and _readable_by_others(config_path):
        found.append((config_path, f"holds secrets ({', '.join(keys)})"))
    for key, name in files:
        secret_file = Path(name)
        if _readable_by_others(secret_file):
            found.append((secret_file, f"is a secret file (named by {key} in {config_path})"))
    warnings = []
    for path, why in found:
        if path.absolute() in _warned_readable:
            continue
        _warned_readable.add(path.absolute())
        line = (
            f"config: warning: file={path} {why} and can be read by every user of this machine "
            f"(mode {stat.S_IMODE(path.stat().st_mode):04o}); fix: chmod 600 {path}"
        )
        log.warning(line)
        warnings.append(line)
    return warnings


def load_config(
    config_cls: type[ConfigT],
    path: str | Path | None = None,
) -> ConfigT:
    """Read and validate the sections `config_cls` needs. Raises ConfigError with one line per problem."""
    config_path, required = resolve_config_path(path)
    raw = _read_toml(config_path, required)
    unknown = sorted(set(raw) - KNOWN_TOP_LEVEL)
    problems = [
        f"config: {key}: unknown section or key (known: {', '.join(sorted(KNOWN_TOP_LEVEL))})" for key in unknown
    ]
    relevant = {key: value for key, value in raw.items() if key in config_cls.SECTIONS}
    try:
        config = config_cls(**relevant)
    except ValidationError as exc:
        problems += _describe(exc)
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    # Only a config that starts a service is worth the warning; an invalid one gets its problem lines alone.
    warn_if_secrets_readable(config_path, raw)
    return config


def load_or_exit(config_cls: type[ConfigT], path: str | Path | None = None) -> ConfigT:
    """`load_config`, but print the problems to stderr and exit 2: what a service does at start."""
    try:
        return load_config(config_cls, path)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)  # noqa: T201 - the user's terminal is the audience
        sys.exit(EXIT_CONFIG_ERROR)
