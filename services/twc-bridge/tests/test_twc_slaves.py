"""Per-slave state learnt from received frames: linking, the 3-slave limit, timeouts, plug state, VIN, energy."""

from __future__ import annotations

from chargebus.clock import FakeClock
from chargebus_twc.codec import (
    EnergyReport,
    MasterHeartbeat,
    MasterLinkready2,
    SlaveHeartbeat,
    SlaveLinkready,
    VinReport,
    padding,
)
from chargebus_twc.slaves import (
    SLAVE_TIMEOUT_S,
    UNPLUG_AFTER_S,
    ForeignMaster,
    IdConflict,
    PlugChanged,
    Slave,
    SlaveLinked,
    SlaveLost,
    SlaveRefused,
    SlaveRegistry,
    VinRead,
)

MASTER = 0x7777
VIN = "5YJ3E1EA8KF000001"


def linkready(slave_id: int, max_amps: float = 32.0, protocol: int = 2) -> SlaveLinkready:
    return SlaveLinkready(slave_id, 0x42, round(max_amps * 100), padding(SlaveLinkready.FIXED, protocol))


def heartbeat(
    slave_id: int, state: int, limit: float = 0.0, actual: float = 0.25, master: int = MASTER
) -> SlaveHeartbeat:
    return SlaveHeartbeat(slave_id, master, state, round(limit * 100), round(actual * 100))


def vin_parts(slave_id: int, vin: str) -> list[VinReport]:
    chunks = (vin[0:7], vin[7:14], vin[14:17])
    return [VinReport(part, slave_id, chunk.encode().ljust(11, b"\0")) for part, chunk in enumerate(chunks, 1)]


def registry(clock: FakeClock, master: int | None = MASTER) -> SlaveRegistry:
    return SlaveRegistry(clock, master)


def slave_of(reg: SlaveRegistry, slave_id: int) -> Slave:
    """A fresh look at one slave (also keeps mypy from narrowing fields across observations)."""
    slave = reg.get(slave_id)
    assert slave is not None
    return slave


def test_a_linkready_makes_a_slave_known_with_its_protocol_and_rating() -> None:
    reg = registry(FakeClock())
    assert reg.observe(linkready(0x4A1B, 32.0, protocol=2)) == [SlaveLinked(0x4A1B, 2, 32.0)]
    assert reg.observe(linkready(0x5C2D, 80.0, protocol=1)) == [SlaveLinked(0x5C2D, 1, 80.0)]
    assert reg.observe(linkready(0x4A1B)) == []  # a repeat is no news
    first, second = reg.slaves
    assert (first.slave_id, first.protocol, first.advertised_max_amps) == (0x4A1B, 2, 32.0)
    assert (second.slave_id, second.protocol, second.advertised_max_amps) == (0x5C2D, 1, 80.0)


def test_a_fourth_slave_is_reported_once_and_not_driven() -> None:
    clock = FakeClock()
    reg = registry(clock)
    for slave_id in (1, 2, 3):
        reg.observe(linkready(slave_id))
    assert reg.observe(linkready(4)) == [SlaveRefused(4)]
    assert reg.observe(linkready(4)) == []
    assert [s.slave_id for s in reg.slaves] == [1, 2, 3]
    clock.advance(SLAVE_TIMEOUT_S / 2)
    for slave_id in (2, 3):
        reg.observe(heartbeat(slave_id, 0))
    clock.advance(SLAVE_TIMEOUT_S / 2 + 1)
    assert [type(e) for e in reg.expire()] == [SlaveLost]
    assert reg.observe(linkready(4)) == [SlaveLinked(4, 2, 32.0)]


def test_a_silent_slave_is_forgotten_after_26_seconds() -> None:
    clock = FakeClock()
    reg = registry(clock)
    reg.observe(linkready(1))
    clock.advance(SLAVE_TIMEOUT_S)
    assert reg.expire() == []
    clock.advance(0.5)
    assert reg.expire() == [SlaveLost(1, SLAVE_TIMEOUT_S + 0.5)]
    assert reg.slaves == []


def test_heartbeats_update_state_limit_and_measured_current() -> None:
    reg = registry(FakeClock())
    reg.observe(linkready(1))
    reg.observe(heartbeat(1, 0x01, limit=16.0, actual=15.5))
    slave = reg.get(1)
    assert slave is not None
    assert (slave.state_code, slave.reported_limit_amps, slave.measured_amps) == (1, 16.0, 15.5)


def test_master_mode_ignores_heartbeats_of_unlinked_slaves() -> None:
    reg = registry(FakeClock())
    assert reg.observe(heartbeat(9, 0x01)) == []
    assert reg.slaves == []


def test_listen_mode_learns_slaves_from_their_heartbeats() -> None:
    reg = registry(FakeClock(), master=None)
    events = reg.observe(heartbeat(9, 0x01, limit=10.0, actual=9.8, master=0x1234))
    assert events[0] == SlaveLinked(9, 2, None)
    slave = reg.get(9)
    assert slave is not None
    assert slave.measured_amps == 9.8
    assert reg.observe(MasterHeartbeat(0x1234, 9, 9, 1000)) == []  # a real master is normal when listening


def test_id_conflict_and_foreign_masters_are_reported() -> None:
    reg = registry(FakeClock())
    assert reg.observe(linkready(MASTER)) == [IdConflict(MASTER)]
    assert reg.slaves == []
    assert reg.observe(MasterLinkready2(0x1234, 0x11)) == [ForeignMaster(0x1234)]
    assert reg.observe(MasterLinkready2(0x1234, 0x11)) == []
    assert reg.observe(MasterLinkready2(MASTER, 0x77)) == []  # our own frame echoed by the adapter


def test_plug_state_with_an_unplug_debounce() -> None:
    clock = FakeClock()
    reg = registry(clock)
    reg.observe(linkready(1))
    assert reg.observe(heartbeat(1, 0x00)) == []
    assert slave_of(reg, 1).plugged_in is False
    clock.advance(5)
    assert reg.observe(heartbeat(1, 0x04)) == [PlugChanged(1, plugged_in=True)]
    assert slave_of(reg, 1).plugged_in_at == clock.time()
    clock.advance(1)
    reg.observe(heartbeat(1, 0x00))  # "ready" blips are seen with a car on the cable
    clock.advance(UNPLUG_AFTER_S - 1)
    assert reg.observe(heartbeat(1, 0x00)) == []
    assert slave_of(reg, 1).plugged_in is True
    clock.advance(1)
    assert reg.observe(heartbeat(1, 0x00)) == [PlugChanged(1, plugged_in=False)]
    assert slave_of(reg, 1).plugged_in_at is None


def test_states_that_say_nothing_about_the_cable_change_nothing() -> None:
    reg = registry(FakeClock())
    reg.observe(linkready(1))
    for state in (0x02, 0x05, 0x0F):
        reg.observe(heartbeat(1, state))
    slave = reg.get(1)
    assert slave is not None
    assert slave.plugged_in is None


def test_a_car_already_plugged_when_first_heard_has_no_plug_in_time() -> None:
    reg = registry(FakeClock())
    reg.observe(linkready(1))
    assert reg.observe(heartbeat(1, 0x01, 16, 15.9)) == [PlugChanged(1, plugged_in=True)]
    slave = reg.get(1)
    assert slave is not None
    assert slave.plugged_in_at is None


def test_vin_is_assembled_from_three_parts_and_kept_until_unplug() -> None:
    clock = FakeClock()
    reg = registry(clock)
    reg.observe(linkready(1))
    reg.observe(heartbeat(1, 0x01, 16, 16))
    events = [e for part in vin_parts(1, VIN) for e in reg.observe(part)]
    assert events == [VinRead(1, VIN, check_digit_ok=True)]
    slave = reg.get(1)
    assert slave is not None
    assert slave.vin == VIN
    reg.observe(heartbeat(1, 0x03, 0, 0.25))  # the car stopped (solar dip): the VIN stays
    for part in vin_parts(1, "\0" * 17):
        reg.observe(part)  # an empty read says nothing new
    assert slave.vin == VIN
    reg.observe(heartbeat(1, 0x00))
    clock.advance(UNPLUG_AFTER_S)
    reg.observe(heartbeat(1, 0x00))
    assert slave.vin is None


def test_another_vin_replaces_the_last_one() -> None:
    reg = registry(FakeClock())
    reg.observe(linkready(1))
    for part in vin_parts(1, VIN):
        reg.observe(part)
    other = "5YJ3E1EA8KF000002"
    events = [e for part in vin_parts(1, other) for e in reg.observe(part)]
    assert events == [VinRead(1, other, check_digit_ok=False)]  # accepted with a warning (docs/contract.md §4)


def test_incomplete_or_malformed_vin_reads_are_dropped() -> None:
    reg = registry(FakeClock())
    reg.observe(linkready(1))
    first, second, third = vin_parts(1, VIN)
    assert reg.observe(second) == []
    assert reg.observe(third) == []  # parts without part 1 belong to no round
    for part in vin_parts(1, "5YJ3E1EA8KF00000O"):  # O is not a VIN character
        assert reg.observe(part) == []
    slave = reg.get(1)
    assert slave is not None
    assert slave.vin is None
    assert [e for p in (first, second, third) for e in reg.observe(p)] == [VinRead(1, VIN, check_digit_ok=True)]


def test_energy_report_updates_lifetime_energy_and_voltages() -> None:
    reg = registry(FakeClock())
    reg.observe(linkready(1))
    assert slave_of(reg, 1).phase_voltages_v is None
    reg.observe(EnergyReport(1, 924, 238, 0, 0))
    assert (slave_of(reg, 1).lifetime_kwh, slave_of(reg, 1).phase_voltages_v) == (924, [238.0])
    reg.observe(EnergyReport(1, 925, 230, 231, 229))
    assert slave_of(reg, 1).phase_voltages_v == [230.0, 231.0, 229.0]
    assert reg.observe(EnergyReport(2, 1, 230, 0, 0)) == []  # unknown slave: ignored
