"""Tariffs, forecasts and plan requests (docs/planning.md §1, §2): what is accepted and what is refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from chargebus.schema import (
    MAX_FORECAST_SLOTS,
    PayloadError,
    PlanRequest,
    SolarForecast,
    Tariff,
    parse_payload,
    to_json,
)


def _slots(count: int, *, key: str, value: float, gap_at: int | None = None) -> list[dict[str, object]]:
    out = []
    start = int(datetime(2026, 12, 7, tzinfo=UTC).timestamp())
    for i in range(count):
        begin = start + i * 900 + (60 if gap_at is not None and i >= gap_at else 0)
        out.append(
            {
                "start": datetime.fromtimestamp(begin, UTC).isoformat(),
                "end": datetime.fromtimestamp(begin + 900, UTC).isoformat(),
                key: value,
            }
        )
    return out


def test_a_tariff_round_trips_without_a_version_per_slot() -> None:
    tariff = parse_payload(
        Tariff, json.dumps({"v": 1, "currency": "EUR", "slots": _slots(4, key="price", value=0.2)}).encode()
    )
    data = json.loads(to_json(tariff))
    assert data["currency"] == "EUR"
    assert set(data["slots"][0]) == {"start", "end", "price"}
    assert data["slots"][0]["start"] == "2026-12-07T00:00:00.000Z"


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"currency": "EUR", "slots": _slots(3, key="price", value=0.2, gap_at=2)}, "contiguous"),
        ({"currency": "eur", "slots": []}, "currency"),
        (
            {
                "currency": "EUR",
                "slots": [{"start": "2026-12-07T01:00:00Z", "end": "2026-12-07T01:00:00Z", "price": 1}],
            },
            "after its start",
        ),
        ({"currency": "EUR", "slots": _slots(1, key="price", value=0.2), "extra": 1}, "extra"),
        ({"currency": "EUR", "slots": _slots(MAX_FORECAST_SLOTS + 1, key="price", value=0.2)}, "at most"),
    ],
)
def test_a_bad_tariff_is_refused_with_a_reason(payload: dict[str, object], fragment: str) -> None:
    with pytest.raises(PayloadError, match=fragment):
        parse_payload(Tariff, json.dumps(payload).encode())


def test_solar_power_may_not_be_negative() -> None:
    with pytest.raises(PayloadError):
        parse_payload(SolarForecast, json.dumps({"slots": _slots(1, key="power_w", value=-1)}).encode())


def test_plan_requests() -> None:
    plan = PlanRequest.model_validate({"soc_pct": 80, "by": "07:00", "repeat": ["mon", "fri"]})
    assert plan.strategy == "cheapest"
    assert PlanRequest.model_validate({"energy_wh": 9000, "by": "2026-12-08T07:00:00+01:00"}).by == datetime(
        2026, 12, 8, 6, tzinfo=UTC
    )
    for bad in (
        {"soc_pct": 80, "by": "07:00\n"},  # a trailing newline is not a time
        {"soc_pct": 80, "by": "24:00"},
        {"soc_pct": 80, "by": "2026-12-08T07:00:00"},  # no offset: ambiguous
        {"soc_pct": 80, "energy_wh": 9000, "by": "07:00"},
        {"by": "07:00"},
        {"soc_pct": 80, "by": "2026-12-08T07:00:00Z", "repeat": ["mon"]},
        {"soc_pct": 80, "by": "07:00", "strategy": "fastest"},
    ):
        with pytest.raises(ValueError):  # noqa: PT011 - pydantic's ValidationError is a ValueError
            PlanRequest.model_validate(bad)
