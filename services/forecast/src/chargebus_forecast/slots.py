"""Pure slot arithmetic: provider data as pieces `[start, end)` with a value, turned into the contiguous, sorted and
bounded slots of docs/contract.md §10.3.

Two kinds of value: a *price* holds over its piece (it is copied into the slot as it is), an *energy* is spread over
its piece (it is cut at slot boundaries in proportion to the overlap, so no watt-hour is lost or invented, and a
slot's power is its energy over its length).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from chargebus.schema import MAX_FORECAST_SLOTS, PriceSlot, SolarSlot

SECONDS_PER_HOUR = 3600.0
#: Published precision: a tenth of a watt, a millionth of a currency unit per kWh (more is noise in JSON).
POWER_DECIMALS = 1
PRICE_DECIMALS = 6


@dataclass(frozen=True, slots=True)
class Piece:
    """A value over `[start, end)` (aware datetimes): a price per kWh, or an energy in Wh."""

    start: datetime
    end: datetime
    value: float


class ProviderDataError(ValueError):
    """Provider data that cannot become slots (an interval ending before it starts, a value that is not finite)."""


def _checked(pieces: Iterable[Piece]) -> list[Piece]:
    found = []
    for piece in pieces:
        if piece.start.tzinfo is None or piece.end.tzinfo is None:
            raise ProviderDataError(f"a time without a zone: {piece.start.isoformat()}")
        if piece.end <= piece.start:
            raise ProviderDataError(f"an interval ends before it starts: {piece.start.isoformat()}")
        if not math.isfinite(piece.value):
            raise ProviderDataError(f"a value that is not a number at {piece.start.isoformat()}")
        found.append(piece)
    return sorted(found, key=lambda piece: piece.start)


def contiguous_run(pieces: Iterable[Piece]) -> list[Piece]:
    """The pieces sorted, repeats of a start dropped (the first kept), cut at the first gap or overlap: what follows
    a hole cannot be part of one contiguous message."""
    run: list[Piece] = []
    for piece in _checked(pieces):
        if run and piece.start == run[-1].start:
            continue
        if run and piece.start != run[-1].end:
            break
        run.append(piece)
    return run


def price_slots(pieces: Iterable[Piece], now: datetime, limit: int = MAX_FORECAST_SLOTS) -> list[PriceSlot]:
    """Prices as slots: the contiguous run, without the slots that ended by `now`, at most `limit` of them."""
    run = [piece for piece in contiguous_run(pieces) if piece.end > now][:limit]
    return [PriceSlot(start=piece.start, end=piece.end, price=round(piece.value, PRICE_DECIMALS)) for piece in run]


def floor_time(moment: datetime, step_s: int) -> datetime:
    """`moment` rounded down to a multiple of `step_s` since the epoch (UTC): slot boundaries on the clock."""
    epoch = moment.timestamp()
    return datetime.fromtimestamp(epoch - epoch % step_s, UTC)


def energy_slots(
    pieces: Iterable[Piece],
    now: datetime,
    slot_s: int,
    horizon_end: datetime | None = None,
    limit: int = MAX_FORECAST_SLOTS,
) -> list[SolarSlot]:
    """Energies (Wh) as slots of `slot_s` seconds on the clock, from the slot holding `now` to the end of the last
    piece (or `horizon_end`), at most `limit`. Time no piece covers (the night between two days of a PV forecast)
    counts as no energy; each slot's `power_w` is its energy over its length."""
    checked = _checked(pieces)
    if not checked:
        return []
    first = floor_time(now, slot_s)
    end = max(piece.end for piece in checked)
    if horizon_end is not None:
        end = min(end, horizon_end)
    count = min(limit, max(0, math.ceil((end - first).total_seconds() / slot_s)))
    energy = [0.0] * count
    origin = first.timestamp()
    for piece in checked:
        start_s, end_s = piece.start.timestamp(), piece.end.timestamp()
        length = end_s - start_s
        first_index = max(0, int((start_s - origin) // slot_s))
        last_index = min(count - 1, math.ceil((end_s - origin) / slot_s) - 1)
        for index in range(first_index, last_index + 1):
            slot_start = origin + index * slot_s
            overlap = min(end_s, slot_start + slot_s) - max(start_s, slot_start)
            if overlap > 0:
                energy[index] += piece.value * overlap / length
    hours = slot_s / SECONDS_PER_HOUR
    step = timedelta(seconds=slot_s)
    return [
        SolarSlot(
            start=first + index * step,
            end=first + (index + 1) * step,
            power_w=max(0.0, round(wh / hours, POWER_DECIMALS)),
        )
        for index, wh in enumerate(energy)
    ]


SlotT = TypeVar("SlotT", PriceSlot, SolarSlot)


def slot_at(slots: Sequence[SlotT], moment: datetime) -> SlotT | None:
    """The slot holding `moment`, or None outside them all."""
    for slot in slots:
        if slot.start <= moment < slot.end:
            return slot
    return None
