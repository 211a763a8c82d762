"""Provider data → pieces, one pure function per provider (docs/contract.md §10.3). The fetch layer (`providers`)
hands these the objects the providers' client libraries return; nothing here imports a library, so the functions
are typed against the few attributes they read.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Protocol

from chargebus_forecast.slots import Piece, ProviderDataError

KWH_PER_MWH = 1000.0
QUARTER_HOUR = timedelta(minutes=15)


def with_fees(spot_per_mwh: float, fee_per_kwh: float, vat_pct: float) -> float:
    """A spot price per MWh as a price per kWh with fees and VAT: `(spot / 1000 + fee) × (1 + vat / 100)`."""
    return (spot_per_mwh / KWH_PER_MWH + fee_per_kwh) * (1 + vat_pct / 100)


class NordPoolEntry(Protocol):
    """pynordpool's `DeliveryPeriodEntry`: one delivery period and the price of each area in it, per MWh."""

    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime: ...
    @property
    def entry(self) -> Mapping[str, float | None]: ...


def nordpool_pieces(entries: Iterable[NordPoolEntry], area: str, fee_per_kwh: float, vat_pct: float) -> list[Piece]:
    """Day-ahead prices of `area` per kWh, fees and VAT included. A period without a price for the area ends the
    usable data there (`slots.contiguous_run`); a response without the area at all is an error."""
    pieces = []
    entries = list(entries)
    for item in entries:
        spot = item.entry.get(area)
        if spot is not None:
            pieces.append(Piece(item.start, item.end, with_fees(float(spot), fee_per_kwh, vat_pct)))
    if entries and not pieces:
        raise ProviderDataError(f"the response has no price for area {area}")
    return pieces


def period_end_energy(wh_by_end: Mapping[datetime, float]) -> list[Piece]:
    """Energies keyed by the *end* of their period, each period starting at the key before (Forecast.Solar's
    `watt_hours_period`: the first key of a day is sunrise, worth 0 Wh, and the night before it is one period
    worth 0 Wh too)."""
    times = sorted(wh_by_end)
    return [Piece(start, end, float(wh_by_end[end])) for start, end in itertools.pairwise(times)]


def quarter_hour_energy(wh_by_start: Mapping[datetime, float]) -> list[Piece]:
    """Energies of the quarter hour each key starts (open-meteo-solar-forecast's `wh_period_15m`)."""
    return [Piece(start, start + QUARTER_HOUR, float(wh)) for start, wh in sorted(wh_by_start.items())]


def start_keyed_prices(by_start: Mapping[datetime, float]) -> list[Piece]:
    """Prices keyed by the start of their period, each lasting until the next key (Tibber's `price_total`). The
    shortest step between keys is the resolution: the last period lasts one step, and a longer distance between two
    keys is a hole, not one long period (the message ends there, `slots.contiguous_run`)."""
    starts = sorted(by_start)
    if not starts:
        return []
    steps = [b - a for a, b in itertools.pairwise(starts)]
    step = min(steps) if steps else QUARTER_HOUR
    ends = [min(end, start + step) for start, end in itertools.pairwise(starts)] + [starts[-1] + step]
    return [Piece(start, end, float(by_start[start])) for start, end in zip(starts, ends, strict=True)]
