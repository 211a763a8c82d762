"""BusLink: bytes in, bytes out. Listen mode never writes; an ID conflict repeats the linkready burst."""

from __future__ import annotations

from datetime import UTC, datetime

from chargebus.clock import FakeClock
from chargebus.schema import Setpoint
from chargebus_twc.codec import (
    MasterHeartbeat,
    MasterLinkready1,
    MasterLinkready2,
    SlaveHeartbeat,
    SlaveLinkready,
    decode,
    encode,
    padding,
)
from chargebus_twc.link import BusLink, demand_for
from chargebus_twc.offer import BusLimits
from chargebus_twc.scheduler import Idle
from chargebus_twc.slaves import ForeignMaster, IdConflict, SlaveLinked

MASTER = 0x7777
LIMITS = BusLimits(wiring_max_amps=32, bus_max_amps=32, min_amps=6, failsafe_amps=6)


def drain(link: BusLink, clock: FakeClock, seconds: float, offers: dict[int, int]) -> list[bytes]:
    writes: list[bytes] = []
    end = clock.monotonic() + seconds
    while clock.monotonic() < end:
        out = link.next_write(offers)
        if isinstance(out, Idle):
            clock.advance(min(out.until, end) - clock.monotonic())
        else:
            writes.append(out)
    return writes


def test_listen_mode_never_writes_a_byte_but_still_learns_the_bus() -> None:
    clock = FakeClock()
    link = BusLink(clock, mode="listen", master_id=MASTER, sign=0x77)
    for _ in range(60):
        link.receive(encode(MasterHeartbeat(0x1234, 0x4A1B, 0x09, 1600)))
        events = link.receive(encode(SlaveHeartbeat(0x4A1B, 0x1234, 0x01, 1600, 1590)))
        assert drain(link, clock, 1.0, {0x4A1B: 32}) == []
        assert not [e for e in events if isinstance(e, ForeignMaster)]  # a real master is normal here
    slave = link.registry.get(0x4A1B)
    assert slave is not None
    assert slave.measured_amps == 15.9


def test_master_mode_starts_with_the_linkready_burst_then_drives_a_slave() -> None:
    clock = FakeClock()
    link = BusLink(clock, mode="master", master_id=MASTER, sign=0x77)
    burst = [m for wire in drain(link, clock, 1.2, {}) for m in decode(wire)]
    assert burst == [MasterLinkready1(MASTER, 0x77)] * 5 + [MasterLinkready2(MASTER, 0x77)] * 5
    events = link.receive(encode(SlaveLinkready(0x4A1B, 0x42, 3200)) + b"\xfe")
    assert events == [SlaveLinked(0x4A1B, 2, 32.0)]
    (first, *_) = drain(link, clock, 0.05, {0x4A1B: 10})
    assert decode(first) == [MasterHeartbeat(MASTER, 0x4A1B, 0x09, 1000)]


def test_an_id_conflict_repeats_the_linkready_burst() -> None:
    clock = FakeClock()
    link = BusLink(clock, mode="master", master_id=MASTER, sign=0x77)
    drain(link, clock, 2.0, {})
    events = link.receive(encode(SlaveLinkready(MASTER, 0x42, 3200, padding(SlaveLinkready.FIXED, 1))))
    assert events == [IdConflict(MASTER)]
    again = [m for wire in drain(link, clock, 1.2, {}) for m in decode(wire)]
    assert again.count(MasterLinkready1(MASTER, 0x77)) == 5


def test_demand_for_folds_rating_override_and_protocol_minimum() -> None:
    clock = FakeClock()
    link = BusLink(clock, mode="master", master_id=MASTER, sign=0x77)
    link.receive(encode(SlaveLinkready(0x4A1B, 0x42, 1600, padding(SlaveLinkready.FIXED, 1))))
    slave = link.registry.get(0x4A1B)
    assert slave is not None
    setpoint = Setpoint(evse_id="twc-4a1b", power_w=2300.0, expires_at=datetime(2030, 1, 1, tzinfo=UTC))
    demand = demand_for(
        slave,
        LIMITS,
        voltage_v=230.0,
        phases=1,
        setpoint=setpoint,
        received_at=clock.time(),
        override_amps=None,
        current_offer=0,
    )
    assert (demand.min_amps, demand.max_amps) == (6, 16)
    overridden = demand_for(
        slave,
        LIMITS,
        voltage_v=230.0,
        phases=1,
        setpoint=None,
        received_at=0.0,
        override_amps=10.0,
        current_offer=0,
    )
    assert overridden.max_amps == 10
