"""Sessions: one per plug-in, split by unplug, gap or VIN change; kWh, peak and EVSE ids."""

from __future__ import annotations

import pytest
from chargebus.schema import car_evse_id
from chargebus_history.reconstruct import Sample, Segment, step_hold
from chargebus_history.sessions import find_sessions

T0 = 1_800_000_000.0
VIN = "5YJ3E1EA8KF000001"
OTHER = "5YJ3E1EA8KF000002"
TWC = "twc-4a1b"


def state(ts: float, power_w: float, *, plugged: bool | None = True, vin: str | None = VIN) -> Sample:
    return Sample(T0 + ts, TWC, power_w=power_w, charging=power_w > 0, plugged_in=plugged, vin=vin)


def test_one_plug_in_with_solar_pauses_is_one_session() -> None:
    samples = [
        state(0, 0, plugged=False, vin=None),
        state(600, 0),  # plugged in, waiting for the sun
        state(900, 3680),
        state(1500, 0),  # a cloud
        state(2100, 7360),
        state(2700, 0),
        state(3300, 0, plugged=False, vin=None),
    ]
    (session,) = find_sessions(step_hold(samples, T0 + 4000, 1800))
    assert (session.start, session.end) == (T0 + 600, T0 + 3300)
    assert session.energy_wh == pytest.approx((3680 + 7360) * 600 / 3600)
    assert session.peak_power_w == 7360
    assert (session.vin, session.evse_ids) == (VIN, (TWC,))


def test_a_plug_in_without_charging_is_no_session_and_an_open_one_is_ongoing() -> None:
    idle = [state(0, 0), state(600, 0, plugged=False, vin=None)]
    assert find_sessions(step_hold(idle, T0 + 700, 1800)) == []
    running = [state(0, 7000), state(60, 7000)]
    (session,) = find_sessions(step_hold(running, T0 + 120, 1800), horizon=T0 + 120)
    assert session.end is None


def test_a_gap_or_another_vin_ends_a_session() -> None:
    samples = [state(0, 7000), state(600, 7000), state(600 + 3600, 7000), state(5000, 7000, vin=OTHER)]
    sessions = find_sessions(step_hold(samples, T0 + 5600, 1800))
    assert [(s.start - T0, None if s.end is None else s.end - T0, s.vin) for s in sessions] == [
        (0, 600, VIN),
        (4200, 5000, VIN),
        (5000, 5600, OTHER),
    ]


def test_without_a_plug_signal_charging_counts_as_plugged_in() -> None:
    samples = [state(0, 0, plugged=None), state(60, 5000, plugged=None), state(120, 0, plugged=None)]
    (session,) = find_sessions(step_hold(samples, T0 + 180, 1800))
    assert (session.start, session.end) == (T0 + 60, T0 + 120)


def test_companions_that_saw_the_same_car_are_listed() -> None:
    merged = [Segment(T0, T0 + 600, 7000, source=TWC, vin=VIN, plugged_in=True, charging=True)]
    car = [Segment(T0 - 60, T0 + 700, 6000, source=car_evse_id(VIN), vin=VIN, plugged_in=True, charging=True)]
    elsewhere = [Segment(T0, T0 + 600, 5000, source="twc-0001", vin=OTHER, plugged_in=True, charging=True)]
    (session,) = find_sessions(merged, companions=[car, elsewhere])
    assert session.evse_ids == (car_evse_id(VIN), TWC)
