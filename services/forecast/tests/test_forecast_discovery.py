"""What Home Assistant is told: one sensor per configured value, on the forecast device, bound to its status."""

from __future__ import annotations

from datetime import UTC, datetime

from chargebus.config import ForecastConfig, ForecastServiceConfig, MqttConfig
from chargebus.mqtt import Service
from chargebus.schema import SolarForecast, SolarSlot, Tariff
from chargebus_forecast.service import ForecastRuntime
from chargebus_forecast.slots import Piece, price_slots
from chargebus_forecast.summary import summarise

NOW = datetime(2026, 6, 15, 9, 30, tzinfo=UTC)


def runtime(**forecast: object) -> ForecastRuntime:
    config = ForecastServiceConfig(mqtt=MqttConfig(prefix="home"), forecast=ForecastConfig(**forecast))
    return ForecastRuntime(Service("forecast", config.mqtt), config)


def test_sensors_follow_the_configured_sources() -> None:
    everything = runtime(
        grid_tariff={"source": "nordpool", "area": "SE3", "currency": "SEK"},
        feedin_tariff={"source": "fixed", "price": 0.5, "currency": "SEK"},
        solar={"source": "open_meteo", "lat": 59, "lon": 18, "declination": 30, "azimuth": 0, "kwp": 5},
    ).entities()
    by_id = {item.unique_id: item.config for item in everything}
    assert set(by_id) == {
        "forecast_grid_price",
        "forecast_grid_price_next_hour",
        "forecast_feedin_price",
        "forecast_solar_now",
        "forecast_last_refresh",
    }
    assert by_id["forecast_grid_price"]["unit_of_measurement"] == "SEK/kWh"
    assert by_id["forecast_grid_price"]["state_topic"] == "home/forecast/state"
    assert by_id["forecast_grid_price"]["value_template"] == "{{ value_json.grid_price }}"
    assert by_id["forecast_solar_now"]["device_class"] == "power"
    assert by_id["forecast_last_refresh"]["device_class"] == "timestamp"
    assert all(c["availability"][0]["topic"] == "home/forecast/status" for c in by_id.values())
    assert {c["device"]["identifiers"][0] for c in by_id.values()} == {"chargebus_forecast"}
    only_solar = runtime(
        solar={"source": "forecast_solar", "lat": 5, "lon": 5, "declination": 0, "azimuth": 0, "kwp": 1}
    )
    assert {item.unique_id for item in only_solar.entities()} == {"forecast_solar_now", "forecast_last_refresh"}


def test_the_summary_reads_the_slots_holding_now_and_an_hour_later() -> None:
    pieces = [
        Piece(datetime(2026, 6, 15, h, tzinfo=UTC), datetime(2026, 6, 15, h + 1, tzinfo=UTC), h / 10)
        for h in range(8, 12)
    ]
    grid = Tariff(currency="EUR", slots=price_slots(pieces, NOW))
    solar = SolarForecast(
        slots=[
            SolarSlot(
                start=datetime(2026, 6, 15, 9, tzinfo=UTC), end=datetime(2026, 6, 15, 10, tzinfo=UTC), power_w=2500
            )
        ]
    )
    state = summarise(NOW, grid=grid, feedin=None, solar=solar, refreshed_at=NOW, failing=["home/tariff/feedin"])
    assert (state.grid_price, state.grid_price_next_hour, state.feedin_price, state.solar_w) == (0.9, 1.0, None, 2500)
    assert state.currency == "EUR"
    assert state.failing == ["home/tariff/feedin"]
    late = summarise(
        datetime(2026, 6, 15, 11, 30, tzinfo=UTC), grid=grid, feedin=None, solar=solar, refreshed_at=None, failing=[]
    )
    assert (late.grid_price, late.grid_price_next_hour, late.solar_w) == (1.1, None, None)
