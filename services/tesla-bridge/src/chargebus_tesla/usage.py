"""Counting Tesla API calls per car, category and UTC day, with their estimated price.

Tesla bills every answer below 500 (401, 408 and 429 included) and none of the 5xx; BLE-proxy calls never reach
Tesla. The counts feed `<p>/tesla-bridge/usage` and the cost benchmark. Each call the bridge decides on is also
counted under its cause (a poll's `PollCause`, a command's name, `refresh`): what each call bought.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum


class Category(StrEnum):
    DATA = "data"
    COMMAND = "command"
    WAKE = "wake"
    BLE = "ble"


#: Tesla's list prices in USD per request (contract `[tesla] prices`).
DEFAULT_PRICES_USD: Mapping[str, float] = {"data": 0.002, "command": 0.001, "wake": 0.02}


@dataclass
class CarCalls:
    data: int = 0
    command: int = 0
    wake: int = 0
    ble: int = 0
    billed_usd: float = 0.0
    last_call_at: float | None = None
    #: calls per cause; one per decision, whatever the transport (a request retried after a 5xx counts once)
    by_reason: dict[str, int] = field(default_factory=dict)

    def count(self, category: Category) -> int:
        count: int = getattr(self, category.value)
        return count


def utc_day(epoch_s: float) -> date:
    return datetime.fromtimestamp(epoch_s, tz=UTC).date()


class CallCounter:
    """Calls today, per VIN; the counts restart at UTC midnight."""

    def __init__(self, prices: Mapping[str, float] | None = None) -> None:
        self._prices = dict(DEFAULT_PRICES_USD if prices is None else prices)
        self._day: date | None = None
        self._cars: dict[str, CarCalls] = {}

    def record(self, vin: str, category: Category, status: int, now: float) -> None:
        """One request answered with HTTP `status` at `now`."""
        car = self._today(now).setdefault(vin, CarCalls())
        setattr(car, category.value, car.count(category) + 1)
        car.last_call_at = now
        if category is not Category.BLE and status < 500:
            car.billed_usd += self._prices.get(category.value, 0.0)

    def attribute(self, vin: str, reason: str, now: float) -> None:
        """One call the bridge made for `reason` (counted by `record` per request and category as well)."""
        car = self._today(now).setdefault(vin, CarCalls())
        car.by_reason[reason] = car.by_reason.get(reason, 0) + 1

    def count(self, vin: str, category: Category, now: float) -> int:
        car = self._today(now).get(vin)
        return 0 if car is None else car.count(category)

    def snapshot(self, now: float) -> tuple[date, dict[str, CarCalls]]:
        """Today's UTC date and a copy of every car's counts."""
        cars = self._today(now)
        assert self._day is not None
        return self._day, {
            vin: CarCalls(**(vars(calls) | {"by_reason": dict(calls.by_reason)})) for vin, calls in cars.items()
        }

    def _today(self, now: float) -> dict[str, CarCalls]:
        day = utc_day(now)
        if day != self._day:
            self._day, self._cars = day, {}
        return self._cars
