"""Pure slot arithmetic: prices copied, energies spread without loss, always contiguous and bounded."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from chargebus.schema import SolarForecast, Tariff
from chargebus_forecast.slots import (
    Piece,
    ProviderDataError,
    contiguous_run,
    energy_slots,
    floor_time,
    price_slots,
    slot_at,
)
from hypothesis import given
from hypothesis import strategies as st

T0 = datetime(2026, 6, 15, 0, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_price_slots_copy_prices_and_drop_what_ended() -> None:
    pieces = [Piece(at(60 * i), at(60 * (i + 1)), 0.1 * i) for i in range(4)]
    slots = price_slots(pieces, now=at(90))
    assert [(s.start, s.price) for s in slots] == [(at(60), 0.1), (at(120), 0.2), (at(180), pytest.approx(0.3))]


def test_a_gap_ends_the_usable_prices() -> None:
    pieces = [Piece(at(0), at(60), 1.0), Piece(at(60), at(120), 2.0), Piece(at(180), at(240), 4.0)]
    assert [p.value for p in contiguous_run(pieces)] == [1.0, 2.0]


def test_a_repeated_start_keeps_the_first() -> None:
    pieces = [Piece(at(0), at(60), 1.0), Piece(at(0), at(60), 9.0), Piece(at(60), at(75), 2.0)]
    assert [p.value for p in contiguous_run(pieces)] == [1.0, 2.0]


@pytest.mark.parametrize(
    "piece",
    [
        Piece(at(60), at(60), 1.0),
        Piece(at(0), at(60), float("nan")),
        Piece(datetime(2026, 6, 15), datetime(2026, 6, 15, 1), 1.0),  # noqa: DTZ001 - the naive time is the point
    ],
)
def test_unusable_pieces_are_errors(piece: Piece) -> None:
    with pytest.raises(ProviderDataError):
        price_slots([piece], now=at(0))


def test_energy_is_spread_over_slots_by_overlap() -> None:
    # 600 Wh from 05:20 to 06:20: 240 Wh fall into 05:00-06:00, 360 Wh into 06:00-07:00
    slots = energy_slots([Piece(at(320), at(380), 600.0)], now=at(300), slot_s=3600)
    assert [s.start for s in slots] == [at(300), at(360)]
    assert [s.power_w for s in slots] == pytest.approx([400.0, 200.0])


def test_time_no_piece_covers_is_no_energy() -> None:
    pieces = [Piece(at(0), at(60), 100.0), Piece(at(180), at(240), 100.0)]
    slots = energy_slots(pieces, now=at(0), slot_s=3600)
    assert [s.power_w for s in slots] == [100.0, 0.0, 0.0, 100.0]


def test_energy_slots_start_at_the_slot_holding_now() -> None:
    slots = energy_slots([Piece(at(0), at(240), 400.0)], now=at(100), slot_s=900)
    assert slots[0].start == at(90)
    assert slots[-1].end == at(240)
    assert all(s.power_w == pytest.approx(100.0) for s in slots)


def test_energy_slots_are_bounded() -> None:
    slots = energy_slots([Piece(at(0), at(60 * 24 * 30), 1.0)], now=at(0), slot_s=900, limit=1000)
    assert len(slots) == 1000
    SolarForecast(slots=slots)


def test_slot_at() -> None:
    slots = price_slots([Piece(at(0), at(60), 1.0), Piece(at(60), at(75), 2.0)], now=at(0))
    assert slot_at(slots, at(59.9)) is slots[0]
    assert slot_at(slots, at(60)) is slots[1]
    assert slot_at(slots, at(75)) is None
    assert slot_at(slots, at(-1)) is None


def test_floor_time_is_on_the_clock() -> None:
    assert floor_time(at(61.5), 900) == at(60)
    assert floor_time(at(61.5), 3600) == at(60)


# -- properties --------------------------------------------------------------------------------------------------

minutes = st.integers(min_value=0, max_value=3 * 24 * 60)
energies = st.floats(min_value=0, max_value=1e5, allow_nan=False)
raw_pieces = st.lists(st.tuples(minutes, st.integers(min_value=1, max_value=600), energies), max_size=30)


@given(raw_pieces, st.sampled_from([900, 1800, 3600]))
def test_energy_slots_keep_every_watt_hour_after_their_start(raw: list[tuple[int, int, float]], slot_s: int) -> None:
    pieces = [Piece(at(start), at(start + length), wh) for start, length, wh in raw]
    slots = energy_slots(pieces, now=T0, slot_s=slot_s)
    assert SolarForecast(slots=slots).slots == slots  # contiguous and valid
    energy = sum(s.power_w * (s.end - s.start).total_seconds() / 3600 for s in slots)
    rounding = 0.05 * len(slots) * slot_s / 3600  # power is published to a tenth of a watt
    assert energy == pytest.approx(sum(p.value for p in pieces), rel=1e-9, abs=rounding + 1e-6)
    assert all(s.start.timestamp() % slot_s == 0 for s in slots)


@given(st.lists(st.tuples(minutes, st.integers(min_value=1, max_value=240), st.floats(-5, 5)), max_size=40), minutes)
def test_price_slots_are_always_a_valid_tariff(raw: list[tuple[int, int, float]], now: int) -> None:
    pieces = [Piece(at(start), at(start + length), price) for start, length, price in raw]
    slots = price_slots(pieces, now=at(now))
    Tariff(currency="EUR", slots=slots)
    assert all(s.end > at(now) for s in slots)
    for before, after in itertools.pairwise(slots):
        assert before.end == after.start
