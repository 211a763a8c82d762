"""The thin fetch layer: one call of a provider's own client library per source, its result through the pure
normalisers (`normalise`, `slots`, `fixed`) into a payload of docs/contract.md §10.3.

Each library is imported inside the fetch of its source, so a Pi running only a fixed tariff never loads aiohttp,
and one running Forecast.Solar never loads numpy (which open-meteo-solar-forecast needs).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from chargebus.config import (
    FixedTariffConfig,
    ForecastSolarConfig,
    NordpoolTariffConfig,
    OpenMeteoConfig,
    SourceConfig,
    TibberTariffConfig,
)
from chargebus.schema import SolarForecast, Tariff

from chargebus_forecast.fixed import fixed_pieces
from chargebus_forecast.normalise import nordpool_pieces, period_end_energy, quarter_hour_energy, start_keyed_prices
from chargebus_forecast.slots import ProviderDataError, energy_slots, price_slots

if TYPE_CHECKING:
    import aiohttp

#: Builds the HTTP session a fetch uses (tests give one whose connector reaches a local server).
SessionFactory = Callable[[], "aiohttp.ClientSession"]
#: Nord Pool's delivery days are days in Central European Time.
NORDPOOL_DAY_ZONE = ZoneInfo("Europe/Oslo")
FORECAST_SOLAR_SLOT_S = 3600
OPEN_METEO_SLOT_S = 900
HTTP_TIMEOUT_S = 30.0
USER_AGENT = "chargebus-forecast"


def default_session() -> aiohttp.ClientSession:
    import aiohttp  # noqa: PLC0415 - only sources on the network need it

    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S))


def _non_empty(found: list[Any], what: str) -> None:
    if not found:
        raise ProviderDataError(f"the provider returned no {what} from now on")


def fixed_tariff(config: FixedTariffConfig, now: datetime) -> Tariff:
    zone = ZoneInfo(config.timezone) if config.timezone else _system_zone()
    pieces = fixed_pieces(
        now,
        zone,
        config.days,
        price=config.price,
        day_price=config.day_price,
        night_price=config.night_price,
        night_start=config.night_start,
        night_end=config.night_end,
    )
    return Tariff(currency=config.currency, slots=price_slots(pieces, now))


def _system_zone() -> ZoneInfo:
    from chargebus.zones import system_zone  # noqa: PLC0415 - read only when no zone is configured

    return system_zone()


async def nordpool_tariff(config: NordpoolTariffConfig, session: aiohttp.ClientSession, now: datetime) -> Tariff:
    from pynordpool import Currency, NordPoolClient  # noqa: PLC0415 - lazy: memory on a Pi

    today = now.astimezone(NORDPOOL_DAY_ZONE)
    days = [today, today + timedelta(days=1)]  # tomorrow's prices appear around 13:00 CET; until then it is empty
    client = NordPoolClient(session)
    periods = await client.async_get_delivery_periods(days, Currency(config.currency), [config.area])
    entries = [entry for period in periods.entries.values() for entry in period.entries]
    slots = price_slots(nordpool_pieces(entries, config.area, config.fee_per_kwh, config.vat_pct), now)
    _non_empty(slots, "prices")
    return Tariff(currency=config.currency, slots=slots)


async def tibber_tariff(config: TibberTariffConfig, session: aiohttp.ClientSession, now: datetime) -> Tariff:
    from tibber import Tibber  # noqa: PLC0415 - lazy: memory on a Pi

    client = Tibber(access_token=config.token(), websession=session, user_agent=USER_AGENT, time_zone=UTC)
    await client.update_info()
    homes = client.get_homes(only_active=True)
    if config.home_id is not None:
        homes = [home for home in homes if home.home_id == config.home_id]
    if not homes:
        wanted = f"home {config.home_id}" if config.home_id else "an active home"
        raise ProviderDataError(f"the Tibber account has no {wanted} with a running subscription")
    home = homes[0]
    await home.update_info_and_price_info()
    prices = {datetime.fromisoformat(start): float(total) for start, total in home.price_total.items()}
    slots = price_slots(start_keyed_prices(prices), now)
    _non_empty(slots, "prices")
    return Tariff(currency=home.currency, slots=slots)


async def forecast_solar(config: ForecastSolarConfig, session: aiohttp.ClientSession, now: datetime) -> SolarForecast:
    from forecast_solar import ForecastSolar  # noqa: PLC0415 - lazy: memory on a Pi
    from yarl import URL  # noqa: PLC0415

    client = ForecastSolar(
        latitude=config.lat,
        longitude=config.lon,
        declination=config.declination,
        azimuth=config.azimuth,
        kwp=config.kwp,
        api_key=config.api_key(),
        damping=config.damping,
        session=session,
    )
    client._base_url = URL(config.api_url)  # noqa: SLF001 - the library's own test hook: where its API lives
    estimate = await client.estimate()
    zone = ZoneInfo(estimate.api_timezone)
    wh = {(t if t.tzinfo is not None else t.replace(tzinfo=zone)): float(v) for t, v in estimate.wh_period.items()}
    slots = energy_slots(period_end_energy(wh), now, FORECAST_SOLAR_SLOT_S)
    _non_empty(slots, "PV forecast")
    return SolarForecast(slots=slots)


async def open_meteo(config: OpenMeteoConfig, session: aiohttp.ClientSession, now: datetime) -> SolarForecast:
    from open_meteo_solar_forecast import OpenMeteoSolarForecast  # noqa: PLC0415 - lazy: it brings numpy

    client = OpenMeteoSolarForecast(
        latitude=config.lat,
        longitude=config.lon,
        declination=config.declination,
        azimuth=config.azimuth,
        dc_kwp=config.kwp,
        ac_kwp=config.ac_kwp,
        past_days=0,
        forecast_days=config.forecast_days,
        api_key=config.api_key(),
        base_url=config.api_url,
        session=session,
    )
    estimate = await client.estimate()
    slots = energy_slots(quarter_hour_energy(estimate.wh_period_15m), now, OPEN_METEO_SLOT_S)
    _non_empty(slots, "PV forecast")
    return SolarForecast(slots=slots)


async def fetch(
    config: SourceConfig, now: datetime, session_factory: SessionFactory = default_session
) -> Tariff | SolarForecast:
    """One source's payload now. Raises whatever the library raises, or ProviderDataError for unusable data."""
    now = now.astimezone(UTC)
    if isinstance(config, FixedTariffConfig):
        return fixed_tariff(config, now)
    async with session_factory() as session:
        if isinstance(config, NordpoolTariffConfig):
            return await nordpool_tariff(config, session, now)
        if isinstance(config, TibberTariffConfig):
            return await tibber_tariff(config, session, now)
        if isinstance(config, ForecastSolarConfig):
            return await forecast_solar(config, session, now)
        return await open_meteo(config, session, now)
