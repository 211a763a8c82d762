"""The recorder's memory: a bounded buffer, held states re-offered while their bridge is there, cadences."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from typing import Any

import pytest
from chargebus_history.dedup import ChangeFilter
from chargebus_history.ingest import Cadence, HeldStates, SampleBuffer, owner_of
from chargebus_history.records import EvseRecord, MeterRecord, Record, VehicleRecord

T0 = 1_800_000_000.0


def meter(t: float) -> MeterRecord:
    return MeterRecord(T0 + t, "grid", t, raw=t)


def test_the_buffer_keeps_order_drops_the_oldest_when_full_and_forgets_what_is_committed() -> None:
    buffer = SampleBuffer(limit=3)
    assert all(buffer.add(meter(t)) for t in range(3))
    batch = buffer.peek(2)
    assert [r.ts - T0 for _, r in batch] == [0, 1]
    assert not buffer.add(meter(3))  # full: record 0 goes
    assert buffer.dropped == 1
    assert buffer.commit(batch[-1][0]) == 1  # only record 1 was still there
    assert [r.ts - T0 for _, r in buffer.peek(10)] == [2, 3]
    assert buffer.committed_through == batch[-1][0]
    assert buffer.newest_seq == 3
    assert buffer.reset_dropped() == 1
    with pytest.raises(ValueError, match="at least one"):
        SampleBuffer(0)


def test_held_states_are_reoffered_unless_their_bridge_is_offline(
    evse_payload: Callable[..., dict[str, Any]], vehicle_payload: Callable[..., dict[str, Any]]
) -> None:
    held = HeldStates()
    twc = EvseRecord.from_payload(T0, evse_payload(source="rs485", power_w=7360.0))
    car = VehicleRecord.from_payload(T0, vehicle_payload())
    held.hold(twc)
    held.hold(car)
    assert (owner_of(twc), owner_of(car)) == ("twc-bridge", "tesla-bridge")
    offers = held.reoffers(T0 + 300)
    assert {r.ts for r in offers} == {T0 + 300}
    assert {r.stream for r in offers} == {twc.stream, car.stream}
    held.set_status("twc-bridge", "offline")
    assert [r.stream for r in held.reoffers(T0 + 600)] == [car.stream]
    held.set_status("twc-bridge", "online")
    assert len(held.reoffers(T0 + 900)) == 2


def test_reoffers_become_keepalive_rows_only_when_the_last_row_is_old(
    evse_payload: Callable[..., dict[str, Any]],
) -> None:
    cadence = Cadence.for_gap_limit(1800)
    changes = ChangeFilter(keepalive_s=cadence.keepalive_s)
    held = HeldStates()
    first = EvseRecord.from_payload(T0, evse_payload(power_w=7360.0, vin=None))
    changes.remember(first)
    held.hold(first)
    stored: list[Record] = [first]
    t = 0.0
    while t < 3 * 3600:
        t += cadence.reoffer_s
        for record in held.reoffers(T0 + t):
            if changes.admit(record):
                changes.remember(record)
                stored.append(record)
    gaps = [b.ts - a.ts for a, b in pairwise(stored)]
    assert max(gaps) <= 1800 * 0.75
    assert len(stored) == 1 + 3 * 3600 // 600
    assert all(r.raw == first.raw for r in stored)  # a keepalive row repeats the payload, updated_at included


@pytest.mark.parametrize("gap_limit_s", [1800.0, 600.0, 60.0])
def test_cadence_stays_below_the_gap_limit(gap_limit_s: float) -> None:
    cadence = Cadence.for_gap_limit(gap_limit_s)
    assert cadence.keepalive_s + cadence.reoffer_s <= 0.75 * gap_limit_s
    assert cadence.reoffer_s <= 300
