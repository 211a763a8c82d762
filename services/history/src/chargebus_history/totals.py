"""All-time energy per EVSE and per vehicle, for Home Assistant's Energy dashboard (`total_increasing` sensors).

HA reads a decrease of a `total_increasing` sensor as a meter reset and counts the new value again, so the figure
must never go down — not when rows are pruned, not at a restart, not when a held state turns out to be a gap:

* The **settled** part is energy up to `now - gap_limit_s`: reconstruction cannot change any more there (a hold
  older than the gap limit is already unknown or already closed by a later row). It is added once, in chunks of at
  most a day, and stored with its cursor (`energy_totals`), so pruning old samples never lowers it.
* The **provisional** part is the energy since then, recomputed every time.
* The published figure is `max(last published, settled + provisional)`, and the last published figure is stored
  too. A provisional figure that later shrinks (a hold that became a gap) only pauses the increase.

A subject is caught up at most `max_catch_up_s` per update, so a first run over years of rows is spread over many
updates instead of one long job; its sensor is published once it is caught up.
"""

from __future__ import annotations

from dataclasses import dataclass

from chargebus_history.queries import EvseTarget, Target, VehicleTarget, load_series
from chargebus_history.reconstruct import integrate
from chargebus_history.store import HistoryStore, StoredTotal

CHUNK_S = 86400.0
DEFAULT_MAX_CATCH_UP_S = 31 * 86400.0
EVSE_KIND = "evse"
VEHICLE_KIND = "vehicle"


def subject_key(target: Target) -> str:
    return f"{EVSE_KIND}:{target.evse_id}" if isinstance(target, EvseTarget) else f"{VEHICLE_KIND}:{target.vin}"


def subject_target(key: str) -> Target:
    kind, _, name = key.partition(":")
    return EvseTarget(name) if kind == EVSE_KIND else VehicleTarget(name)


def chunks(start: float, end: float, size: float = CHUNK_S) -> list[tuple[float, float]]:
    """[start, end) cut into pieces of at most `size`."""
    pieces: list[tuple[float, float]] = []
    k = 0
    while start + k * size < end:
        pieces.append((start + k * size, min(start + (k + 1) * size, end)))
        k += 1
    return pieces


def next_published(previous: float | None, settled_wh: float, provisional_wh: float) -> float:
    """The figure to show: never below what was shown before."""
    figure = round(settled_wh + provisional_wh, 1)
    return figure if previous is None else max(previous, figure)


@dataclass(frozen=True, slots=True)
class TotalUpdate:
    stored: StoredTotal
    published_wh: float | None  # None while still catching up


async def known_energy(
    store: HistoryStore, target: Target, start: float, end: float, *, now: float, gap_limit_s: float
) -> float:
    """Known energy over [start, end), read a day at a time so memory stays bounded."""
    energy = 0.0
    for a, b in chunks(start, end):
        loaded = await load_series(store, target, a, b, now=now, gap_limit_s=gap_limit_s)
        energy += integrate(loaded.segments, a, b).energy_wh
    return energy


async def update_total(
    store: HistoryStore,
    target: Target,
    stored: StoredTotal | None,
    *,
    now: float,
    gap_limit_s: float,
    max_catch_up_s: float = DEFAULT_MAX_CATCH_UP_S,
) -> TotalUpdate | None:
    """Advance one subject's total; None when it has no rows at all."""
    if stored is None:
        first = (
            await store.first_evse_ts(target.evse_id)
            if isinstance(target, EvseTarget)
            else await store.first_vehicle_ts(target.vin)
        )
        if first is None:
            return None
        stored = StoredTotal(subject_key(target), 0.0, first, None)
    settle_to = now - gap_limit_s
    if stored.settled_until < settle_to:
        until = min(settle_to, stored.settled_until + max_catch_up_s)
        added = await known_energy(store, target, stored.settled_until, until, now=now, gap_limit_s=gap_limit_s)
        stored = StoredTotal(stored.subject, stored.total_wh + added, until, stored.published_wh)
    if stored.settled_until < settle_to:
        return TotalUpdate(stored, None)
    provisional = await known_energy(store, target, stored.settled_until, now, now=now, gap_limit_s=gap_limit_s)
    published = next_published(stored.published_wh, stored.total_wh, provisional)
    return TotalUpdate(StoredTotal(stored.subject, stored.total_wh, stored.settled_until, published), published)


async def update_totals(
    store: HistoryStore, *, now: float, gap_limit_s: float, max_catch_up_s: float = DEFAULT_MAX_CATCH_UP_S
) -> dict[str, float]:
    """Advance every known subject, store the totals, return the figures to publish by subject key."""
    evse_ids, vins = await store.subjects()
    targets: list[Target] = [EvseTarget(e) for e in evse_ids]
    targets += [VehicleTarget(v) for v in vins]
    saved = await store.load_totals()
    updates: list[TotalUpdate] = []
    for target in targets:
        update = await update_total(
            store,
            target,
            saved.get(subject_key(target)),
            now=now,
            gap_limit_s=gap_limit_s,
            max_catch_up_s=max_catch_up_s,
        )
        if update is not None:
            updates.append(update)
    await store.save_totals(u.stored for u in updates)
    return {u.stored.subject: u.published_wh for u in updates if u.published_wh is not None}


def topic_id(key: str) -> str:
    """The id in `<p>/history/energy/<id>`: the evse_id or the VIN."""
    return key.partition(":")[2]
