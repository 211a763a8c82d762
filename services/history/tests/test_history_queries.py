"""HistoryRequest data over a real store: shapes as docs/contract.md §6, a merged car counted once, gaps null."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from chargebus_history.answers import MAX_POWER_POINTS, power_data
from chargebus_history.dedup import ChangeFilter
from chargebus_history.queries import EvseTarget, VehicleTarget, energy_query, power_query, sessions_query
from chargebus_history.records import EvseRecord, Record, VehicleRecord
from chargebus_history.store import HistoryStore

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z = 09:00 in Berlin
VIN = "5YJ3E1EA8KF000001"
CAR = f"car-{VIN}"
BERLIN = ZoneInfo("Europe/Berlin")


async def record(store: HistoryStore, records: Sequence[Record]) -> int:
    """What the recorder does per message: store it if the change filter admits it."""
    changes = ChangeFilter()
    stored = 0
    for item in sorted(records, key=lambda r: r.ts):
        if changes.admit(item):
            stored += await store.insert([item])
            changes.remember(item)
    return stored


def merged_evening(
    evse_payload: Callable[..., dict[str, Any]], vehicle_payload: Callable[..., dict[str, Any]]
) -> list[Record]:
    """A car plugged into twc-4a1b charges an hour at 7.36 kW; its API reports a coarse 7 kW meanwhile."""
    records: list[Record] = []
    for second in range(0, 3600 + 1, 10):  # TWC heartbeats (one every 10 s is enough for the test)
        on = 60 <= second < 3660 - 60
        records.append(
            EvseRecord.from_payload(
                T0 + second,
                evse_payload(vin=VIN, plugged_in=True, charging=on, power_w=7360.0 if on else 0.0),
            )
        )
    records.append(EvseRecord.from_payload(T0 + 3660, evse_payload(vin=None, plugged_in=False)))
    for second in range(0, 3660, 300):  # the car's view, every 5 min
        on = 60 <= second < 3600
        state = {"plugged_in": True, "charging": on, "power_w": 7000.0 if on else 0.0, "vin": VIN}
        records.append(EvseRecord.from_payload(T0 + second, evse_payload(CAR, source="teslamate", **state)))
        charging_state = "Charging" if on else "Stopped"
        vehicle = vehicle_payload(plugged_in=True, charging_state=charging_state, charger_power_w=state["power_w"])
        records.append(VehicleRecord.from_payload(T0 + second, vehicle))
    records.append(EvseRecord.from_payload(T0 + 3660, evse_payload(CAR, vin=VIN, plugged_in=False)))
    records.append(VehicleRecord.from_payload(T0 + 3660, vehicle_payload(plugged_in=False)))
    return records


async def test_a_merged_car_is_counted_once_at_the_twc_figure(
    store: HistoryStore,
    evse_payload: Callable[..., dict[str, Any]],
    vehicle_payload: Callable[..., dict[str, Any]],
) -> None:
    stored = await record(store, merged_evening(evse_payload, vehicle_payload))
    assert stored < 50  # unchanged heartbeats add no rows
    now = T0 + 7200
    vehicle = await energy_query(store, VehicleTarget(VIN), T0 - 3600, now, BERLIN, now=now)
    twc = await energy_query(store, EvseTarget("twc-4a1b"), T0 - 3600, now, BERLIN, now=now)
    car = await energy_query(store, EvseTarget(CAR), T0 - 3600, now, BERLIN, now=now)
    twc_wh = 7360.0 * (3600 - 60) / 3600  # charging from +60 s to the heartbeat at +3600 s
    assert twc["energy_wh"] == pytest.approx(twc_wh, abs=0.1)
    assert car["energy_wh"] == pytest.approx(7000.0 * (3600 - 300) / 3600, abs=0.1)
    assert vehicle["energy_wh"] == pytest.approx(twc_wh, abs=0.1)
    assert vehicle["days"] == [{"date": "2027-01-15", "energy_wh": pytest.approx(twc_wh, abs=0.1)}]


async def test_sessions_list_every_evse_that_saw_the_car(
    store: HistoryStore,
    evse_payload: Callable[..., dict[str, Any]],
    vehicle_payload: Callable[..., dict[str, Any]],
) -> None:
    await record(store, merged_evening(evse_payload, vehicle_payload))
    sessions = await sessions_query(store, VehicleTarget(VIN), T0 + 1800, T0 + 1900, now=T0 + 7200)
    assert sessions == [
        {
            "start": "2027-01-15T08:00:00.000Z",
            "end": "2027-01-15T09:01:00.000Z",
            "energy_wh": pytest.approx(7360.0 * 3540 / 3600, abs=0.1),
            "vin": VIN,
            "evse_ids": [CAR, "twc-4a1b"],
            "peak_power_w": 7360.0,
        }
    ]
    assert await sessions_query(store, EvseTarget("twc-4a1b"), T0 + 5000, T0 + 6000, now=T0 + 7200) == []


async def test_power_points_are_null_across_a_silence_and_after_now(
    store: HistoryStore, evse_payload: Callable[..., dict[str, Any]]
) -> None:
    on = {"vin": VIN, "plugged_in": True, "charging": True}
    await record(
        store,
        [
            EvseRecord.from_payload(T0, evse_payload(power_w=3680.0, **on)),
            EvseRecord.from_payload(T0 + 600, evse_payload(power_w=7360.0, **on)),
            # the recorder was down from here: the next row comes 2 h later
            EvseRecord.from_payload(T0 + 8100, evse_payload(power_w=0.0, **on)),
        ],
    )
    now = T0 + 8400
    points = await power_query(store, EvseTarget("twc-4a1b"), T0, T0 + 3 * 3600, 300, now=now)
    # The whole silence is unknown, including its start right after the last row before it.
    assert points[:3] == [
        {"ts": "2027-01-15T08:00:00.000Z", "power_w": 3680.0},
        {"ts": "2027-01-15T08:05:00.000Z", "power_w": 3680.0},
        {"ts": "2027-01-15T08:10:00.000Z", "power_w": None},  # the 7.36 kW row at 08:10 is the last before it
    ]
    by_ts = {p["ts"]: p["power_w"] for p in points}
    assert by_ts["2027-01-15T10:15:00.000Z"] == 0.0  # after the silence: known again
    assert by_ts["2027-01-15T10:20:00.000Z"] is None  # after now: not known yet
    assert len(points) == 36


async def test_an_evse_with_no_rows_has_nothing_known(store: HistoryStore) -> None:
    data = await energy_query(store, EvseTarget("twc-ffff"), T0, T0 + 86400, BERLIN, now=T0 + 86400)
    assert data == {
        "energy_wh": None,
        "days": [{"date": "2027-01-15", "energy_wh": None}, {"date": "2027-01-16", "energy_wh": None}],
    }


def test_a_request_cannot_ask_for_unbounded_points() -> None:
    with pytest.raises(ValueError, match="larger step_s"):
        power_data([], T0, T0 + MAX_POWER_POINTS * 60 + 60, 60)
    with pytest.raises(ValueError, match="positive"):
        power_data([], T0, T0 + 60, 0)
