"""`[tesla]`: the Fleet API, TeslaMate, the cars and Gen3 Wall Connectors."""

from __future__ import annotations

from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from chargebus.config.common import HOST_PATTERN, TWC3_NAME_PATTERN, OptionalPath, OptionalStr, Section, Vin, repeated


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
        if not HOST_PATTERN.fullmatch(host) or (port and not (port.isdigit() and 0 < int(port) < 65536)):
            raise ValueError('must be "host" or "host:port" (a name or IPv4 address, no scheme or path)')
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not TWC3_NAME_PATTERN.fullmatch(value):
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
