"""chargebus_forecast: tariffs and PV forecasts from providers, normalised to docs/contract.md §10.3."""
