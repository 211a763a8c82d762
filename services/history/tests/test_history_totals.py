"""All-time energy for HA: settled + provisional, never down, kept across pruning, caught up in pieces."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from chargebus_history.queries import EvseTarget, VehicleTarget
from chargebus_history.records import EvseRecord
from chargebus_history.store import HistoryStore
from chargebus_history.totals import chunks, next_published, subject_key, subject_target, update_totals

T0 = 1_800_000_000.0
VIN = "5YJ3E1EA8KF000001"
GAP = 1800.0


def test_pure_helpers() -> None:
    assert chunks(0, 250, 100) == [(0, 100), (100, 200), (200, 250)]
    assert chunks(5, 5) == []
    assert next_published(None, 10.0, 2.04) == 12.0
    assert next_published(15.0, 10.0, 2.0) == 15.0
    assert subject_target(subject_key(EvseTarget("twc-4a1b"))) == EvseTarget("twc-4a1b")
    assert subject_target(subject_key(VehicleTarget(VIN))) == VehicleTarget(VIN)


async def test_settled_plus_provisional_for_an_evse_and_its_car(
    store: HistoryStore, evse_payload: Callable[..., dict[str, Any]]
) -> None:
    on = {"vin": VIN, "plugged_in": True, "charging": True}
    await store.insert([EvseRecord.from_payload(T0, evse_payload(power_w=7200.0, **on))])
    early = await update_totals(store, now=T0 + 1000, gap_limit_s=GAP)
    assert early == {"evse:twc-4a1b": pytest.approx(2000.0), f"vehicle:{VIN}": pytest.approx(2000.0)}
    await store.insert(
        [
            EvseRecord.from_payload(T0 + 1800, evse_payload(power_w=7200.0, **on)),  # a keepalive row
            EvseRecord.from_payload(T0 + 3600, evse_payload(vin=VIN, plugged_in=False)),
        ]
    )
    later = await update_totals(store, now=T0 + 5400, gap_limit_s=GAP)
    assert later == {"evse:twc-4a1b": pytest.approx(7200.0), f"vehicle:{VIN}": pytest.approx(7200.0)}
    saved = await store.load_totals()
    assert saved["evse:twc-4a1b"].settled_until == T0 + 5400 - GAP
    assert saved["evse:twc-4a1b"].total_wh == pytest.approx(7200.0)


async def test_a_hold_that_turns_into_a_gap_pauses_the_figure_instead_of_lowering_it(
    store: HistoryStore, evse_payload: Callable[..., dict[str, Any]]
) -> None:
    await store.insert([EvseRecord.from_payload(T0, evse_payload(power_w=7200.0, plugged_in=True, charging=True))])
    assert await update_totals(store, now=T0 + 1000, gap_limit_s=GAP) == {"evse:twc-4a1b": pytest.approx(2000.0)}
    # Nobody wrote a row since: the hold is longer than the gap limit now, so it is unknown, not 7.2 kW.
    assert await update_totals(store, now=T0 + 4000, gap_limit_s=GAP) == {"evse:twc-4a1b": pytest.approx(2000.0)}
    assert (await store.load_totals())["evse:twc-4a1b"].total_wh == 0.0


async def test_pruning_old_rows_never_lowers_the_total(
    store: HistoryStore, evse_payload: Callable[..., dict[str, Any]]
) -> None:
    on = {"plugged_in": True, "charging": True}
    await store.insert(
        [EvseRecord.from_payload(T0 + t, evse_payload(power_w=3600.0, **on)) for t in range(0, 7201, 600)]
    )
    before = await update_totals(store, now=T0 + 7200, gap_limit_s=GAP)
    assert before["evse:twc-4a1b"] == pytest.approx(7200.0)
    await store.prune(T0 + 6000)
    after = await update_totals(store, now=T0 + 7300, gap_limit_s=GAP)
    assert after["evse:twc-4a1b"] >= before["evse:twc-4a1b"]


async def test_a_long_history_is_caught_up_in_pieces(
    store: HistoryStore, evse_payload: Callable[..., dict[str, Any]]
) -> None:
    on = {"plugged_in": True, "charging": True}
    await store.insert(
        [EvseRecord.from_payload(T0 + t, evse_payload(power_w=1000.0, **on)) for t in range(0, 4 * 86400, 900)]
    )
    now = T0 + 4 * 86400
    assert await update_totals(store, now=now, gap_limit_s=GAP, max_catch_up_s=86400) == {}
    assert (await store.load_totals())["evse:twc-4a1b"].settled_until == T0 + 86400
    figures: dict[str, float] = {}
    for _ in range(4):
        figures = await update_totals(store, now=now, gap_limit_s=GAP, max_catch_up_s=86400)
    assert figures["evse:twc-4a1b"] == pytest.approx(4 * 24 * 1000.0, rel=1e-6)  # held up to now
