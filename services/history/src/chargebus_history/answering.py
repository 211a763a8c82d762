"""One validated HistoryRequest -> the `data` of its answer (docs/contract.md §6), read from the store.

Runs on the query worker. An id that never appeared is refused (`UnknownSubjectError`) instead of answered with
an empty series, so a misspelt VIN does not read as "nothing charged". Long `energy` ranges are read a month at a
time (cut at local midnights, so every day is still whole) to keep memory bounded.
"""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

from chargebus.schema import HistoryRequest

from chargebus_history.energy import local_days
from chargebus_history.queries import EvseTarget, Target, energy_query, power_query, sessions_query
from chargebus_history.requests import subject_name, target_of
from chargebus_history.store import HistoryStore

ENERGY_CHUNK_DAYS = 31


class UnknownSubjectError(ValueError):
    pass


async def known(store: HistoryStore, target: Target) -> bool:
    if isinstance(target, EvseTarget):
        return await store.has_evse(target.evse_id)
    return await store.has_vehicle(target.vin)


async def chunked_energy(
    store: HistoryStore, target: Target, start: float, end: float, zone: tzinfo, *, now: float, gap_limit_s: float
) -> dict[str, Any]:
    days = local_days(start, end, zone)
    parts: list[dict[str, Any]] = []
    for first in range(0, len(days), ENERGY_CHUNK_DAYS):
        piece = days[first : first + ENERGY_CHUNK_DAYS]
        parts.append(
            await energy_query(store, target, piece[0][1], piece[-1][2], zone, now=now, gap_limit_s=gap_limit_s)
        )
    all_days = [day for part in parts for day in part["days"]]
    known_wh = [part["energy_wh"] for part in parts if part["energy_wh"] is not None]
    return {"energy_wh": round(sum(known_wh), 1) if known_wh else None, "days": all_days}


async def run_request(
    store: HistoryStore, request: HistoryRequest, *, now: float, zone: tzinfo, gap_limit_s: float
) -> Any:
    target = target_of(request)
    if not await known(store, target):
        kind = "evse_id" if isinstance(target, EvseTarget) else "vin"
        raise UnknownSubjectError(f"unknown {kind} {subject_name(target)!r}: nothing recorded for it")
    start, end = request.from_.timestamp(), request.to.timestamp()
    if request.op == "power":
        return await power_query(store, target, start, end, request.step_s, now=now, gap_limit_s=gap_limit_s)
    if request.op == "energy":
        return await chunked_energy(store, target, start, end, zone, now=now, gap_limit_s=gap_limit_s)
    return await sessions_query(store, target, start, end, now=now, gap_limit_s=gap_limit_s)
