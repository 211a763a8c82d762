"""`[forecast]`: where the forecast service fetches prices and the PV forecast from (docs/contract.md §10)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, field_validator, model_validator

from chargebus.config.common import HHMM_PATTERN, OptionalPath, OptionalStr, Section, Timezone
from chargebus.topics import TopicKey

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
HHMM = Annotated[str, Field(pattern=HHMM_PATTERN.pattern)]


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
    def sources(self) -> dict[TopicKey, SourceConfig]:
        """What is configured, by topic key (`tariff_grid`, `tariff_feedin`, `forecast_solar`)."""
        found: dict[TopicKey, SourceConfig | None] = {
            "tariff_grid": self.grid_tariff,
            "tariff_feedin": self.feedin_tariff,
            "forecast_solar": self.solar,
        }
        return {key: source for key, source in found.items() if source is not None}
