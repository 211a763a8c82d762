"""The `<p>/tesla-bridge/usage` payload from the call counter's snapshot. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime

from chargebus.schema import Usage, UsageCar

from chargebus_tesla.usage import CarCalls


def usage_payload(
    day: date, counts: Mapping[str, CarCalls], vins: Iterable[str], rate_limited_until: float | None
) -> Usage:
    """Every configured car in order (zeros for one without calls today), and Tesla's 429 deadline if any."""
    cars = []
    for vin in vins:
        calls = counts.get(vin)
        cars.append(
            UsageCar(
                vin=vin,
                data=calls.data if calls else 0,
                command=calls.command if calls else 0,
                wake=calls.wake if calls else 0,
                ble=calls.ble if calls else 0,
                billed_usd=round(calls.billed_usd, 6) if calls else 0.0,
                last_call_at=_utc(calls.last_call_at) if calls and calls.last_call_at else None,
                by_reason=dict(sorted(calls.by_reason.items())) if calls else {},
            )
        )
    return Usage(date=day, rate_limited_until=_utc(rate_limited_until) if rate_limited_until else None, cars=cars)


def _utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=UTC)
