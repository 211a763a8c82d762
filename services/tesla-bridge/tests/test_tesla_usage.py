"""Call counts per car, category and UTC day, and their price."""

from __future__ import annotations

import pytest
from chargebus_tesla.poll_policy import utc_day_start
from chargebus_tesla.usage import CallCounter, Category

VIN = "5YJ3E1EA8KF000001"
MIDNIGHT = utc_day_start(1_800_000_000.0)


def test_counts_and_prices_by_category() -> None:
    counter = CallCounter({"data": 0.002, "command": 0.001, "wake": 0.02})
    for category, status in [
        (Category.DATA, 200),
        (Category.DATA, 408),  # billed although the car was asleep
        (Category.DATA, 503),  # 5xx is not billed
        (Category.COMMAND, 200),
        (Category.WAKE, 200),
        (Category.BLE, 200),  # never reaches Tesla
    ]:
        counter.record(VIN, category, status, MIDNIGHT + 60)
    day, cars = counter.snapshot(MIDNIGHT + 120)
    calls = cars[VIN]
    assert (calls.data, calls.command, calls.wake, calls.ble) == (3, 1, 1, 1)
    assert calls.billed_usd == pytest.approx(2 * 0.002 + 0.001 + 0.02)
    assert calls.last_call_at == MIDNIGHT + 60
    assert day.isoformat() == "2027-01-15"


def test_counts_restart_at_utc_midnight() -> None:
    counter = CallCounter()
    counter.record(VIN, Category.DATA, 200, MIDNIGHT - 1)
    assert counter.count(VIN, Category.DATA, MIDNIGHT - 1) == 1
    assert counter.count(VIN, Category.DATA, MIDNIGHT) == 0
    assert counter.snapshot(MIDNIGHT)[1] == {}


def test_snapshot_is_a_copy() -> None:
    counter = CallCounter()
    counter.record(VIN, Category.WAKE, 200, MIDNIGHT)
    _, cars = counter.snapshot(MIDNIGHT)
    cars[VIN].wake = 99
    assert counter.count(VIN, Category.WAKE, MIDNIGHT) == 1
