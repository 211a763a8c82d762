"""Each provider's own client library against its recorded responses, served locally at the library's real address
(`provider_server.local_session`), then normalised: never the internet."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from chargebus.config import ForecastConfig
from chargebus.schema import SolarForecast, Tariff
from chargebus_forecast.normalise import (
    nordpool_pieces,
    period_end_energy,
    quarter_hour_energy,
    start_keyed_prices,
    with_fees,
)
from chargebus_forecast.providers import fetch
from chargebus_forecast.service import describe_error
from chargebus_forecast.slots import ProviderDataError, price_slots

from services.forecast.tests.provider_server import local_session, recorded, serve

NOW = datetime(2026, 6, 15, 9, 7, tzinfo=UTC)
PLANE = {"lat": 52.52, "lon": 13.4, "declination": 30, "azimuth": 0, "kwp": 6}


def source(**table: object) -> object:
    config = (
        ForecastConfig(grid_tariff=table)
        if table["source"] in {"fixed", "nordpool", "tibber"}
        else ForecastConfig(solar=table)
    )
    return config.grid_tariff or config.solar


async def test_nordpool_day_ahead_prices_with_fees(tmp_path: Path) -> None:
    config = source(source="nordpool", area="SE3", fee_per_kwh=0.1, vat_pct=25)
    async with serve(tmp_path) as server:
        tariff = await fetch(config, NOW, lambda: local_session(server))  # type: ignore[arg-type]
    assert isinstance(tariff, Tariff)
    assert tariff.currency == "EUR"
    day1 = recorded("nordpool_2026-06-15.json")["multiAreaEntries"]
    first = next(e for e in day1 if e["deliveryStart"] == "2026-06-15T09:00:00Z")
    assert tariff.slots[0].start == datetime(2026, 6, 15, 9, tzinfo=UTC)
    assert tariff.slots[0].price == pytest.approx((first["entryPerArea"]["SE3"] / 1000 + 0.1) * 1.25)
    # quarter hours today, whole hours tomorrow: 52 quarter hours from 09:00 to 22:00 UTC, then 24 hours
    lengths = [(s.end - s.start) for s in tariff.slots]
    assert lengths.count(timedelta(minutes=15)) == 52
    assert lengths.count(timedelta(hours=1)) == 24
    assert tariff.slots[-1].end == datetime(2026, 6, 16, 22, tzinfo=UTC)
    assert "deliveryArea=SE3" in server.requests[0]


async def test_nordpool_before_tomorrows_prices_are_out(tmp_path: Path) -> None:
    config = source(source="nordpool", area="SE4")
    async with serve(tmp_path) as server:
        server.nordpool_days = {"2026-06-15"}  # tomorrow answers 204, as before 13:00 CET
        tariff = await fetch(config, NOW, lambda: local_session(server))  # type: ignore[arg-type]
    assert isinstance(tariff, Tariff)
    assert tariff.slots[-1].end == datetime(2026, 6, 15, 22, tzinfo=UTC)


async def test_nordpool_with_no_prices_from_now_on_is_an_error(tmp_path: Path) -> None:
    config = source(source="nordpool", area="SE3")
    async with serve(tmp_path) as server:
        server.nordpool_days = set()
        with pytest.raises(ProviderDataError, match="no prices"):
            await fetch(config, NOW, lambda: local_session(server))  # type: ignore[arg-type]


async def test_tibber_totals_of_the_first_active_home(tmp_path: Path) -> None:
    token = tmp_path / "tibber.token"
    token.write_text("t1bb3r-t0k3n\n", encoding="utf-8")
    config = source(source="tibber", token_file=str(token))
    async with serve(tmp_path) as server:
        tariff = await fetch(config, NOW, lambda: local_session(server))  # type: ignore[arg-type]
    assert isinstance(tariff, Tariff)
    assert tariff.currency == "NOK"
    today = recorded("tibber_price_info.json")["data"]["viewer"]["home"]["currentSubscription"]["priceInfo"]["today"]
    now_row = next(row for row in today if datetime.fromisoformat(row["startsAt"]) == NOW.replace(minute=0))
    assert tariff.slots[0].start == NOW.replace(minute=0)
    assert tariff.slots[0].price == now_row["total"]  # Tibber's total already holds taxes and fees
    assert all(s.end - s.start == timedelta(minutes=15) for s in tariff.slots)
    assert tariff.slots[-1].end == datetime(2026, 6, 16, 22, tzinfo=UTC)  # tomorrow's last quarter hour, in UTC
    assert len(server.requests) == 2  # the account's homes, then one home's prices


async def test_tibber_home_that_is_not_there_or_a_bad_token(tmp_path: Path) -> None:
    from tibber.exceptions import InvalidLoginError  # noqa: PLC0415

    token = tmp_path / "tibber.token"
    token.write_text("t1bb3r-t0k3n", encoding="utf-8")
    ended_home = source(source="tibber", token_file=str(token), home_id="68e6938b-91a6-4199-a0d4-f24c22be87bb")
    async with serve(tmp_path) as server:
        with pytest.raises(ProviderDataError, match="no home 68e6938b"):
            await fetch(ended_home, NOW, lambda: local_session(server))  # type: ignore[arg-type]
        token.write_text("wrong", encoding="utf-8")
        with pytest.raises(InvalidLoginError):
            await fetch(source(source="tibber", token_file=str(token)), NOW, lambda: local_session(server))  # type: ignore[arg-type]


def test_tibber_prices_last_until_the_next_start_and_a_hole_ends_them() -> None:
    starts = [NOW, NOW + timedelta(minutes=15), NOW + timedelta(minutes=30), NOW + timedelta(minutes=90)]
    pieces = start_keyed_prices(dict.fromkeys(starts, 1.0))
    assert [(p.start, p.end) for p in pieces][:3] == [
        (NOW, NOW + timedelta(minutes=15)),
        (NOW + timedelta(minutes=15), NOW + timedelta(minutes=30)),
        (NOW + timedelta(minutes=30), NOW + timedelta(minutes=45)),
    ]
    assert len(price_slots(pieces, NOW)) == 3  # the hole from :45 to 10:37 ends the message


async def test_forecast_solar_estimate_as_hourly_mean_power(tmp_path: Path) -> None:
    config = source(source="forecast_solar", **PLANE)
    async with serve(tmp_path) as server:
        forecast = await fetch(config, NOW, lambda: local_session(server))  # type: ignore[arg-type]
    assert isinstance(forecast, SolarForecast)
    assert forecast.slots[0].start == datetime(2026, 6, 15, 9, tzinfo=UTC)
    assert all(s.end - s.start == timedelta(hours=1) for s in forecast.slots)
    estimate = recorded("forecast_solar_estimate.json")["result"]["watt_hours_period"]
    # every watt-hour of the periods ending after 09:00 UTC (11:00 in Berlin) is in the slots
    after = sum(wh for key, wh in estimate.items() if datetime.fromisoformat(key) > NOW.replace(minute=0))
    energy = sum(s.power_w for s in forecast.slots)  # one-hour slots: W = Wh
    assert energy == pytest.approx(after, abs=1)
    assert "/estimate/52.52/13.4/30.0/0.0/6.0" in server.requests[0]


async def test_forecast_solar_with_an_api_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "forecast_solar.key"
    key_file.write_text("k3y-0f-the-us3r\n", encoding="utf-8")
    config = source(source="forecast_solar", api_key_file=str(key_file), **PLANE)
    async with serve(tmp_path) as server:
        await fetch(config, NOW, lambda: local_session(server))  # type: ignore[arg-type]
    assert server.requests[0].startswith("/k3y-0f-the-us3r/estimate/")


async def test_forecast_solar_outage_raises_the_library_error(tmp_path: Path) -> None:
    from forecast_solar import ForecastSolarConnectionError  # noqa: PLC0415

    config = source(source="forecast_solar", **PLANE)
    async with serve(tmp_path) as server:
        server.fail_next = 1
        with pytest.raises(ForecastSolarConnectionError):
            await fetch(config, NOW, lambda: local_session(server))  # type: ignore[arg-type]


async def test_open_meteo_as_quarter_hour_mean_power(tmp_path: Path) -> None:
    config = source(source="open_meteo", forecast_days=3, **PLANE)
    async with serve(tmp_path) as server:
        forecast = await fetch(config, NOW, lambda: local_session(server))  # type: ignore[arg-type]
    assert isinstance(forecast, SolarForecast)
    assert forecast.slots[0].start == datetime(2026, 6, 15, 9, tzinfo=UTC)
    assert all(s.end - s.start == timedelta(minutes=15) for s in forecast.slots)
    peak = max(forecast.slots, key=lambda s: s.power_w)
    assert 0 < peak.power_w <= 6000  # never above the array's 6 kWp
    assert "past_days=0" in server.requests[0]
    assert "forecast_days=3" in server.requests[0]


async def test_fixed_tariff_needs_no_network() -> None:
    def no_session() -> object:
        raise AssertionError("a fixed tariff opened a connection")

    config = source(source="fixed", day_price=0.3, night_price=0.2, timezone="Europe/Berlin")
    tariff = await fetch(config, NOW, no_session)  # type: ignore[arg-type]
    assert isinstance(tariff, Tariff)
    assert tariff.slots[0].price == 0.3  # 11:07 in Berlin: day


# -- the pure normalisers on their own ---------------------------------------------------------------------------


def test_fees_and_vat() -> None:
    assert with_fees(100.0, 0.05, 25) == pytest.approx(0.1875)
    assert with_fees(-20.0, 0, 0) == pytest.approx(-0.02)  # negative prices stay negative


def test_nordpool_response_without_the_area_is_an_error() -> None:
    from pynordpool import DeliveryPeriodEntry  # noqa: PLC0415

    entries = [DeliveryPeriodEntry(start=NOW, end=NOW + timedelta(hours=1), entry={"SE4": 10.0})]
    with pytest.raises(ProviderDataError, match="area SE3"):
        nordpool_pieces(entries, "SE3", 0, 0)


def test_forecast_solar_periods_end_at_their_key() -> None:
    wh = {NOW: 0.0, NOW + timedelta(minutes=53): 89.0, NOW + timedelta(minutes=113): 376.0}
    pieces = period_end_energy(wh)
    assert [(p.start, p.end, p.value) for p in pieces] == [
        (NOW, NOW + timedelta(minutes=53), 89.0),
        (NOW + timedelta(minutes=53), NOW + timedelta(minutes=113), 376.0),
    ]


def test_open_meteo_quarter_hours_start_at_their_key() -> None:
    (piece,) = quarter_hour_energy({NOW: 250.0})
    assert (piece.start, piece.end, piece.value) == (NOW, NOW + timedelta(minutes=15), 250.0)


def test_errors_never_carry_the_api_key() -> None:
    error = ValueError("GET https://api.forecast.solar/s3cr3t/estimate/1/2/3/4/5 failed")
    assert "s3cr3t" not in describe_error(error, ["s3cr3t"])
    assert describe_error(error, ["s3cr3t"]).startswith("ValueError: GET https://api.forecast.solar/***/estimate")


def test_provider_libraries_are_loaded_only_by_the_source_that_needs_them() -> None:
    script = (
        "import asyncio, sys\n"
        "from datetime import UTC, datetime\n"
        "import chargebus_forecast.service\n"
        "from chargebus.config import ForecastConfig\n"
        "from chargebus_forecast.providers import fetch\n"
        "config = ForecastConfig(grid_tariff={'source': 'fixed', 'day_price': 0.3, 'night_price': 0.2})\n"
        "asyncio.run(fetch(config.grid_tariff, datetime.now(UTC)))\n"
        "heavy = ('aiohttp', 'numpy', 'pynordpool', 'tibber', 'forecast_solar', 'open_meteo_solar_forecast')\n"
        "print(sorted(name for name in heavy if name in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
