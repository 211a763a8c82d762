"""The TWC slave simulator over a real pseudo-terminal, driven by a tiny master written with the bridge's codec (a
test may use the bridge to drive the simulator; the simulator itself reads the wire with its own codec)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import serial
from chargebus.clock import FakeClock, SystemClock
from chargebus.schema import Setpoint
from chargebus_sim import twc_wire as wire
from chargebus_sim.twc_slave import SlaveSpec, TwcSlaveSim, specs_from_args
from chargebus_twc.codec import (
    EnergyReport,
    EnergyRequest,
    FrameDecoder,
    MasterHeartbeat,
    MasterLinkready2,
    Message,
    SlaveHeartbeat,
    SlaveLinkready,
    StopCharging,
    UnknownMessage,
    VinReport,
    VinRequest,
    encode,
    pack,
    parse,
)
from chargebus_twc.link import BusLink, demand_for
from chargebus_twc.offer import BusLimits, plan_offers
from chargebus_twc.scheduler import BusTiming
from chargebus_twc.slaves import SlaveRegistry

MASTER = 0x7777
VIN = "5YJ3E1EA8KF000001"
A, B = 0x4A1B, 0x5C2D


class TinyMaster:
    """Just enough of a master to drive the simulator: write frames, collect the answers."""

    def __init__(self, path: str) -> None:
        self.port = serial.Serial(path, 9600, timeout=0)
        self.decoder = FrameDecoder()
        self.inbox: list[Message] = []

    def send(self, message: Message) -> None:
        self.port.write(encode(message))

    def drain(self) -> list[Message]:
        """Everything received so far and not yet consumed."""
        self.inbox += [parse(m) for m in self.decoder.feed(self.port.read(4096))]
        return self.inbox

    async def expect(self, wanted: Callable[[Message], bool], count: int = 1, timeout: float = 1.0) -> list[Message]:
        """Wait until `count` received messages satisfy `wanted`; return (and consume) them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = [m for m in self.drain() if wanted(m)]
            if len(found) >= count:
                self.inbox = [m for m in self.inbox if not wanted(m)]
                return found
            if loop.time() > deadline:
                pytest.fail(f"expected {count} matching messages, got {found} (inbox {self.inbox})")
            await asyncio.sleep(0.01)

    async def heartbeat(self, slave_id: int, command: int, amps: float, protocol: int = 2) -> SlaveHeartbeat:
        tail = bytes(5) if protocol == 2 else bytes(3)
        self.send(MasterHeartbeat(MASTER, slave_id, command, round(amps * 100), tail=tail))
        (reply,) = await self.expect(lambda m: isinstance(m, SlaveHeartbeat) and m.slave_id == slave_id)
        assert isinstance(reply, SlaveHeartbeat)
        return reply

    def close(self) -> None:
        self.port.close()


@pytest.fixture
async def sim() -> AsyncIterator[TwcSlaveSim]:
    specs = [
        SlaveSpec(A, max_amps=32.0, plugged_in=True, vin=VIN, lag_s=0.2),
        SlaveSpec(B, max_amps=80.0, protocol=1, lag_s=0.2),
    ]
    async with TwcSlaveSim(specs, linkready_period_s=0.2, master_timeout_s=0.6, tick_s=0.02) as running:
        yield running


@pytest.fixture
def master(sim: TwcSlaveSim) -> Iterator[TinyMaster]:
    tiny = TinyMaster(sim.port)
    yield tiny
    tiny.close()


def linkready_of(slave_id: int) -> Callable[[Message], bool]:
    return lambda m: isinstance(m, SlaveLinkready) and m.slave_id == slave_id


def vin_part(part: int) -> Callable[[Message], bool]:
    return lambda m: isinstance(m, VinReport) and m.part == part


async def test_unlinked_slaves_announce_themselves_with_rating_and_protocol(master: TinyMaster) -> None:
    (a,) = await master.expect(linkready_of(A))
    (b,) = await master.expect(linkready_of(B))
    assert isinstance(a, SlaveLinkready)
    assert isinstance(b, SlaveLinkready)
    assert (a.max_centiamps, a.protocol, len(pack(a)) + 1) == (3200, 2, 16)
    assert (b.max_centiamps, b.protocol, len(pack(b)) + 1) == (8000, 1, 14)


async def test_linkready2_is_answered_by_every_slave(sim: TwcSlaveSim, master: TinyMaster) -> None:
    await asyncio.sleep(0.05)
    master.inbox.clear()
    master.port.reset_input_buffer()
    master.send(MasterLinkready2(MASTER, 0x77))
    await master.expect(linkready_of(A))
    await master.expect(linkready_of(B))
    assert sim.received[-1].message == wire.MasterLinkready2(MASTER, 0x77)


async def test_the_car_follows_the_offer_after_its_lag(sim: TwcSlaveSim, master: TinyMaster) -> None:
    first = await master.heartbeat(A, 0x09, 16.0)
    assert first.limit_centiamps == 1600  # the limit is echoed at once
    assert first.state == 0x08  # starting: the car has not followed yet
    assert first.actual_centiamps == 25
    await asyncio.sleep(0.25)
    later = await master.heartbeat(A, 0x00, 0.0)  # "no change" keeps the limit
    assert (later.state, later.limit_centiamps, later.actual_centiamps) == (0x01, 1600, 1600)
    assert sim.offered_amps(A) == [16.0]


async def test_a_protocol_1_slave_answers_in_14_bytes_and_stays_idle_without_a_car(master: TinyMaster) -> None:
    reply = await master.heartbeat(B, 0x05, 10.0, protocol=1)
    assert len(pack(reply)) + 1 == 14
    assert (reply.state, reply.limit_centiamps, reply.actual_centiamps) == (0x00, 1000, 25)


async def test_energy_and_vin_queries_are_answered(master: TinyMaster) -> None:
    registry = SlaveRegistry(FakeClock(), MASTER)
    registry.observe((await master.expect(linkready_of(A)))[0])
    master.send(EnergyRequest(MASTER, A))
    (energy,) = await master.expect(lambda m: isinstance(m, EnergyReport))
    assert energy == EnergyReport(A, 100, 230, 0, 0, bytes(1))
    for part in (1, 2, 3):
        master.send(VinRequest(part, MASTER, A))
        (report,) = await master.expect(vin_part(part))
        registry.observe(report)
    slave = registry.get(A)
    assert slave is not None
    assert slave.vin == VIN


async def test_unplugging_stops_the_draw_and_clears_the_vin(sim: TwcSlaveSim, master: TinyMaster) -> None:
    await master.heartbeat(A, 0x09, 16.0)
    sim.unplug(A)
    reply = await master.heartbeat(A, 0x00, 0.0)
    assert (reply.state, reply.actual_centiamps) == (0x00, 25)
    master.send(VinRequest(1, MASTER, A))
    (report,) = await master.expect(vin_part(1))
    assert isinstance(report, VinReport)
    assert report.text == ""
    sim.plug_in(A, VIN)
    assert (await master.heartbeat(A, 0x00, 0.0)).state == 0x08


async def test_a_silent_slave_answers_nothing(sim: TwcSlaveSim, master: TinyMaster) -> None:
    sim.set_silent(A)
    master.drain()
    master.inbox.clear()  # anything A said before it fell silent
    master.send(MasterHeartbeat(MASTER, A, 0x09, 600))
    await master.heartbeat(B, 0x05, 6.0, protocol=1)  # B still answers, so the line works
    await asyncio.sleep(0.25)  # longer than A's linkready period
    assert not [m for m in master.drain() if getattr(m, "slave_id", None) == A]


async def test_a_slave_left_without_heartbeats_stops_and_announces_itself_again(
    sim: TwcSlaveSim, master: TinyMaster
) -> None:
    await master.heartbeat(A, 0x09, 16.0)
    master.inbox.clear()
    await master.expect(linkready_of(A), timeout=1.5)  # master_timeout_s = 0.6
    assert sim.slave(A).limit_centiamps == 0


async def test_stop_command_opens_the_relay_and_is_acknowledged(sim: TwcSlaveSim, master: TinyMaster) -> None:
    await master.heartbeat(A, 0x09, 16.0)
    master.send(StopCharging(MASTER, A))
    (ack,) = await master.expect(lambda m: isinstance(m, UnknownMessage) and m.code == b"\xfd\xb2")
    assert len(pack(ack)) + 1 == 16
    assert (await master.heartbeat(A, 0x00, 0.0)).state == 0x03


async def test_every_received_frame_is_recorded_and_dangerous_ones_are_flagged(
    sim: TwcSlaveSim, master: TinyMaster
) -> None:
    await master.heartbeat(A, 0x09, 16.0)
    assert sim.dangerous_frames() == []
    master.port.write(encode(UnknownMessage(bytes.fromhex("FC19 7777 4A1B") + bytes(9))))
    reply = await master.heartbeat(A, 0x02, 1.0)  # the error command: state 02 once, then silence
    assert reply.state == 0x02
    assert [refused.reason for refused in sim.refused] == [
        "FC 19 may disable a TWC for good",
        "heartbeat command 02 (error): some bitmaps clear only with a power cycle",
    ]
    assert sim.dangerous_frames() == [refused.message for refused in sim.refused]
    last = sim.received[-1].message
    assert isinstance(last, wire.MasterHeartbeat)
    assert (last.master_id, last.slave_id, last.command, last.limit_centiamps) == (MASTER, A, 0x02, 100)
    master.drain()
    master.inbox.clear()
    master.send(MasterHeartbeat(MASTER, A, 0x09, 600))
    await asyncio.sleep(0.1)
    assert not [m for m in master.drain() if isinstance(m, SlaveHeartbeat) and m.slave_id == A]


async def test_offers_above_the_rating_are_visible_to_tests(sim: TwcSlaveSim, master: TinyMaster) -> None:
    await master.heartbeat(A, 0x09, 40.0)
    assert max(sim.offered_amps(A)) > sim.slave(A).spec.max_amps
    assert sim.refused == []  # above this slave's rating, but within what any Gen2 TWC can be told


async def test_a_limit_above_80_a_is_flagged_and_not_obeyed(sim: TwcSlaveSim, master: TinyMaster) -> None:
    await master.heartbeat(A, 0x09, 16.0)
    reply = await master.heartbeat(A, 0x09, 80.01)
    assert reply.limit_centiamps == 1600  # a real slave would take it: the simulated one keeps what it had
    (refused,) = sim.refused
    assert refused.reason == "a limit of 80.01 A, above the largest Gen2 rating (80 A)"
    assert sim.slave(A).limit_centiamps == 1600


async def test_frames_no_twc_would_accept_are_recorded_and_not_answered(sim: TwcSlaveSim, master: TinyMaster) -> None:
    await master.heartbeat(A, 0x09, 16.0)
    master.drain()
    master.inbox.clear()
    good = encode(MasterHeartbeat(MASTER, A, 0x09, 600, tail=bytes(5)))
    bad_checksum = good[:-2] + bytes([good[-2] ^ 0x01]) + good[-1:]
    master.port.write(b"\x12\x34" + bad_checksum + b"\xfe")
    master.port.write(encode(MasterHeartbeat(MASTER, A, 0x09, 600, tail=bytes(3))))  # 14 bytes to a P2 slave
    await asyncio.sleep(0.1)
    problems = [m.problem for m in sim.malformed]
    assert problems[0].startswith("checksum ")
    assert problems[1] == "14-byte heartbeat to a protocol 2 slave"
    assert sim.slave(A).limit_centiamps == 600  # the bad checksum changed nothing; the short heartbeat was obeyed


async def test_draw_is_capped_by_the_car() -> None:
    spec = SlaveSpec(A, plugged_in=True, car_max_amps=16.0, lag_s=0.0)
    async with TwcSlaveSim([spec], linkready_period_s=10.0) as sim:
        tiny = TinyMaster(sim.port)
        try:
            await tiny.heartbeat(A, 0x09, 32.0)
            reply = await tiny.heartbeat(A, 0x00, 0.0)
            assert reply.actual_centiamps == 1600
        finally:
            tiny.close()


def test_a_bus_has_one_to_three_distinct_slaves() -> None:
    with pytest.raises(ValueError, match="1 to 3"):
        TwcSlaveSim([SlaveSpec(i) for i in range(4)])
    with pytest.raises(ValueError, match="1 to 3"):
        TwcSlaveSim([SlaveSpec(1), SlaveSpec(1)])


def test_command_line_arguments_become_slave_specs() -> None:
    specs, period = specs_from_args(["--ids", "4a1b,5c2d", "--vin", f"4a1b={VIN}", "--protocol", "1"])
    assert [(s.slave_id, s.plugged_in, s.vin, s.protocol) for s in specs] == [
        (A, True, VIN, 1),
        (B, False, None, 1),
    ]
    assert period == 10.0


def test_module_entry_prints_the_pty_path() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "chargebus_sim.twc_slave", "--ids", "4a1b,5c2d"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        path = process.stdout.readline().strip()
        assert path.startswith("/dev/")
        assert Path(path).exists()
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_the_bridge_core_drives_the_sim_within_every_limit() -> None:
    """The twc-bridge's pure core over the real pty: linking, offers under the bus cap, VIN and energy read."""
    specs = [
        SlaveSpec(A, max_amps=16.0, plugged_in=True, vin=VIN, lag_s=0.1),
        SlaveSpec(B, max_amps=32.0, protocol=1, lag_s=0.1),
    ]
    limits = BusLimits(wiring_max_amps=32, bus_max_amps=20, min_amps=6, failsafe_amps=6)
    fast = BusTiming(
        linkready_spacing_s=0.01,
        heartbeat_period_s=0.1,
        reply_window_s=0.05,
        turnaround_s=0.005,
        energy_period_s=0.5,
        vin_retry_s=0.5,
    )
    clock = SystemClock()
    wants_everything = Setpoint(evse_id="twc-4a1b", power_w=50_000.0, expires_at=datetime(2100, 1, 1, tzinfo=UTC))
    setpoints = {A: wants_everything}  # B has none: failsafe
    loop = asyncio.get_running_loop()
    async with TwcSlaveSim(specs, linkready_period_s=10.0) as sim:
        port = serial.Serial(sim.port, 9600, timeout=0)
        link = BusLink(clock, mode="master", master_id=MASTER, sign=0x77, timing=fast)
        offers: dict[int, int] = {}
        end = loop.time() + 1.0
        try:
            while loop.time() < end:
                link.receive(port.read(4096))
                demands = [
                    demand_for(
                        slave,
                        limits,
                        voltage_v=230.0,
                        phases=1,
                        setpoint=setpoints.get(slave.slave_id),
                        received_at=clock.time(),
                        override_amps=None,
                        current_offer=offers.get(slave.slave_id, 0),
                    )
                    for slave in link.registry.slaves
                ]
                offers = plan_offers(demands, limits, clock.time())
                out = link.next_write(offers)
                if isinstance(out, bytes):
                    port.write(out)
                else:
                    await asyncio.sleep(min(0.01, max(0.0, out.until - clock.monotonic())))
        finally:
            port.close()
        # 16 A (A's rating) + 6 A failsafe for B > 20 A: B's cut share is below its minimum, so B gets 0.
        assert offers == {A: 16, B: 0}
        assert sim.dangerous_frames() == []
        assert sim.offered_amps(A)
        assert max(sim.offered_amps(A)) <= 16.0
        assert set(sim.offered_amps(B)) == {0.0}
        slave_a = link.registry.get(A)
        assert slave_a is not None
        assert (slave_a.vin, slave_a.lifetime_kwh, slave_a.measured_amps) == (VIN, 100, 16.0)
