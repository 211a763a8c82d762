"""The closed-loop site meter: it sees what the simulated cars really draw, below their offer and after their ramp."""

from __future__ import annotations

import itertools
import json

import pytest
from chargebus.clock import FakeClock, SystemClock
from chargebus_sim.site_meter import SiteMeter
from chargebus_sim.twc_slave import SimSlave, SlaveSpec, TwcSlaveSim

from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Recorder

A, B = 0x4A1B, 0x5C2D


def _slave(margin_a: float = 0.0) -> SimSlave:
    spec = SlaveSpec(A, plugged_in=True, lag_s=2.0, draw_below_offer_a=margin_a)
    return SimSlave(spec, plugged_in=True, vin=None, energy_wh=0.0)


def test_a_car_draws_its_offer_less_the_configured_margin_after_its_ramp() -> None:
    slave = _slave(margin_a=0.6)
    slave.limit_centiamps = 1600
    slave.retarget(10.0)
    assert slave.draw_amps(11.9) == 0.0  # still ramping
    assert slave.draw_amps(12.0) == pytest.approx(15.4)


def test_without_a_margin_a_car_draws_exactly_its_offer() -> None:
    slave = _slave()
    slave.limit_centiamps = 1600
    slave.retarget(0.0)
    assert slave.draw_amps(5.0) == pytest.approx(16.0)


def test_the_reading_is_house_plus_cars_minus_pv() -> None:
    clock = FakeClock()
    slaves = TwcSlaveSim(
        [SlaveSpec(A, plugged_in=True, lag_s=0.0, voltages=(240, 0, 0)), SlaveSpec(B, lag_s=0.0)], clock=clock
    )
    slaves.slave(A).limit_centiamps = 1000
    slaves.slave(A).retarget(clock.monotonic())
    meter = SiteMeter("mqtt://unused:1", "grid", slaves, clock, pv_w=lambda _t: 5000.0, house_w=lambda _t: 300.0)
    clock.advance(1.0)
    assert slaves.draw_w(A, clock.monotonic()) == pytest.approx(2400.0)
    assert slaves.draw_w(B, clock.monotonic()) == 0.0  # not plugged in
    assert meter.reading(clock.time()) == pytest.approx(300.0 + 2400.0 - 5000.0)


def test_noise_stays_within_its_bound_and_is_reproducible() -> None:
    clock = FakeClock()
    slaves = TwcSlaveSim([SlaveSpec(A)], clock=clock)
    first = SiteMeter("mqtt://unused:1", "grid", slaves, clock, pv_w=lambda _t: 1000.0, noise_w=50.0, seed=7)
    second = SiteMeter("mqtt://unused:1", "grid", slaves, clock, pv_w=lambda _t: 1000.0, noise_w=50.0, seed=7)
    readings = [first.reading(0.0) for _ in range(200)]
    assert all(-1050.0 <= r <= -950.0 for r in readings)
    assert readings == [second.reading(0.0) for _ in range(200)]
    assert len(set(readings)) > 100  # noise, not a constant offset


@pytest.mark.parametrize("plain", [True, False])
async def test_it_publishes_on_its_cadence(mqtt_broker: BrokerUnderTest, prefix: str, plain: bool) -> None:
    clock = SystemClock(scale=20.0)
    slaves = TwcSlaveSim([SlaveSpec(A)], clock=clock)
    topic = f"{prefix}/power/grid"
    async with Recorder(mqtt_broker.url, [topic]) as bus:
        meter = SiteMeter(mqtt_broker.url, topic, slaves, clock, pv_w=lambda _t: 2500.0, cadence_s=5.0, plain=plain)
        async with meter:
            await bus.wait_for(lambda: len(bus.messages) >= 3, timeout=10.0)
    payloads = [m.payload.decode() for m in bus.messages[:3]]
    if plain:
        assert payloads == ["-2500", "-2500", "-2500"]
    else:
        readings = [json.loads(p) for p in payloads]
        assert [r["power_w"] for r in readings] == [-2500.0] * 3
        assert all(r["ts"].endswith("Z") for r in readings)
    stamps = [at for at, _w in meter.published[:3]]
    assert all(4.0 <= later - earlier <= 6.0 for earlier, later in itertools.pairwise(stamps))
