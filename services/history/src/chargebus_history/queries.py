"""HistoryRequest answers: read the rows a request needs, reconstruct, shape (docs/contract.md §6 `data`).

The only I/O is reading the store; every rule lives in the pure modules. `now` comes from the injected clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

from chargebus.schema import car_evse_id

from chargebus_history.answers import MAX_POWER_POINTS, energy_data, power_data, sessions_data
from chargebus_history.merge import is_measuring_evse, merge_preferred, only_vin
from chargebus_history.reconstruct import DEFAULT_GAP_LIMIT_S, Segment, reconstruct
from chargebus_history.records import EvseRecord, VehicleRecord
from chargebus_history.sessions import find_sessions
from chargebus_history.store import HistoryStore

# Sessions are read this far around the asked range so one that began before `from` keeps its real start.
SESSION_LOOKAROUND_S = 2 * 86400.0


@dataclass(frozen=True, slots=True)
class EvseTarget:
    evse_id: str


@dataclass(frozen=True, slots=True)
class VehicleTarget:
    vin: str


Target = EvseTarget | VehicleTarget


@dataclass(frozen=True, slots=True)
class LoadedSeries:
    segments: list[Segment]
    sources: list[list[Segment]]  # every source's own series (one for an EVSE; all candidates for a vehicle)


def _series(
    records: Sequence[EvseRecord | VehicleRecord], window_end: float, now: float, gap_limit_s: float
) -> list[Segment]:
    # A row after the window only closes the hold before it; its own hold would run on to `now` over rows we
    # did not read, so it gets none.
    reaches_present = not records or records[-1].ts <= window_end
    horizon = now if reaches_present else records[-1].ts
    return reconstruct([r.to_sample() for r in records], horizon, gap_limit_s)


async def load_series(
    store: HistoryStore,
    target: Target,
    start: float,
    end: float,
    *,
    now: float,
    gap_limit_s: float = DEFAULT_GAP_LIMIT_S,
) -> LoadedSeries:
    if isinstance(target, EvseTarget):
        own = _series(await store.evse_records(target.evse_id, start, end), end, now, gap_limit_s)
        return LoadedSeries(own, [own])
    vin = target.vin
    # A TWC holding this VIN at `start` wrote a row with it within one gap limit before (keepalive rows).
    evse_ids = await store.evse_ids_with_vin(vin, start - gap_limit_s, end)
    candidates = [
        only_vin(_series(await store.evse_records(evse_id, start, end), end, now, gap_limit_s), vin)
        for evse_id in evse_ids
        if is_measuring_evse(evse_id)
    ]
    candidates.append(_series(await store.evse_records(car_evse_id(vin), start, end), end, now, gap_limit_s))
    candidates.append(_series(await store.vehicle_records(vin, start, end), end, now, gap_limit_s))
    return LoadedSeries(merge_preferred(candidates), candidates)


async def power_query(
    store: HistoryStore,
    target: Target,
    start: float,
    end: float,
    step_s: float,
    *,
    now: float,
    gap_limit_s: float = DEFAULT_GAP_LIMIT_S,
    max_points: int = MAX_POWER_POINTS,
) -> list[dict[str, Any]]:
    loaded = await load_series(store, target, start, end, now=now, gap_limit_s=gap_limit_s)
    return power_data(loaded.segments, start, end, step_s, max_points)


async def energy_query(
    store: HistoryStore,
    target: Target,
    start: float,
    end: float,
    zone: tzinfo,
    *,
    now: float,
    gap_limit_s: float = DEFAULT_GAP_LIMIT_S,
) -> dict[str, Any]:
    loaded = await load_series(store, target, start, end, now=now, gap_limit_s=gap_limit_s)
    return energy_data(loaded.segments, start, end, zone)


async def sessions_query(
    store: HistoryStore,
    target: Target,
    start: float,
    end: float,
    *,
    now: float,
    gap_limit_s: float = DEFAULT_GAP_LIMIT_S,
) -> list[dict[str, Any]]:
    """Sessions overlapping [start, end], with their full extent where it lies within the look-around."""
    loaded = await load_series(
        store, target, start - SESSION_LOOKAROUND_S, end + SESSION_LOOKAROUND_S, now=now, gap_limit_s=gap_limit_s
    )
    sessions = find_sessions(loaded.segments, horizon=now, companions=loaded.sources)
    overlapping = [s for s in sessions if s.start < end and (s.end is None or s.end > start)]
    return sessions_data(overlapping)
