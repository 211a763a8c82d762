"""Pure: the `ForecastState` dashboards read (docs/contract.md §10.1) from the last good message of each source."""

from __future__ import annotations

from datetime import datetime, timedelta

from chargebus.schema import ForecastState, SolarForecast, Tariff

from chargebus_forecast.slots import slot_at

NEXT_HOUR = timedelta(hours=1)


def summarise(
    now: datetime,
    *,
    grid: Tariff | None,
    feedin: Tariff | None,
    solar: SolarForecast | None,
    refreshed_at: datetime | None,
    failing: list[str],
) -> ForecastState:
    grid_now = slot_at(grid.slots, now) if grid else None
    grid_next = slot_at(grid.slots, now + NEXT_HOUR) if grid else None
    feedin_now = slot_at(feedin.slots, now) if feedin else None
    solar_now = slot_at(solar.slots, now) if solar else None
    currency = grid.currency if grid else feedin.currency if feedin else None
    return ForecastState(
        currency=currency,
        grid_price=grid_now.price if grid_now else None,
        grid_price_next_hour=grid_next.price if grid_next else None,
        feedin_price=feedin_now.price if feedin_now else None,
        solar_w=solar_now.power_w if solar_now else None,
        refreshed_at=refreshed_at,
        failing=sorted(failing),
    )
