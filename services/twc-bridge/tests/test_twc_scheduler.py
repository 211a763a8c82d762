"""The bus scheduler: linkready burst, heartbeat round robin, reply windows, idle-gap queries, at most 3 slaves."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from chargebus.clock import FakeClock
from chargebus_twc.codec import (
    EnergyReport,
    EnergyRequest,
    MasterHeartbeat,
    MasterLinkready1,
    MasterLinkready2,
    Message,
    SlaveHeartbeat,
    SlaveLinkready,
    StartCharging,
    StopCharging,
    VinReport,
    VinRequest,
    pack,
    padding,
)
from chargebus_twc.scheduler import BusScheduler, BusTiming, Idle, Transmit
from chargebus_twc.slaves import SlaveRegistry

MASTER = 0x7777
VIN = "5YJ3E1EA8KF000001"
TIMING = BusTiming()
REPLY_DELAY_S = 0.03
# Simulated times are sums of floats: compare them with a hair of slack.
EPS = 1e-9


def link(registry: SlaveRegistry, slave_id: int, protocol: int = 2) -> None:
    registry.observe(SlaveLinkready(slave_id, 0x42, 3200, padding(SlaveLinkready.FIXED, protocol)))


@dataclass
class Bus:
    """A scheduler, a registry and instantly answering slaves on simulated time."""

    clock: FakeClock = field(default_factory=FakeClock)
    offers: Mapping[int, int] = field(default_factory=dict)
    plugged: set[int] = field(default_factory=set)
    silent: set[int] = field(default_factory=set)
    sent: list[tuple[float, Message]] = field(default_factory=list)
    limits: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.registry = SlaveRegistry(self.clock, MASTER)
        self.scheduler = BusScheduler(self.clock, MASTER, 0x77)

    def skip_linkready(self) -> None:
        self.run(1.0)
        self.sent.clear()

    def run(self, seconds: float, on_send: Callable[[Transmit], None] | None = None) -> None:
        end = self.clock.monotonic() + seconds
        while self.clock.monotonic() < end:
            now = self.clock.monotonic()
            action = self.scheduler.next_action(self.registry.slaves, self.offers)
            if isinstance(action, Idle):
                assert action.until > now
                self.clock.advance(min(action.until, end) - now)
                continue
            self.sent.append((now, action.message))
            if on_send is not None:
                on_send(action)
            reply = self.answer(action.message)
            if reply is not None:
                self.clock.advance(REPLY_DELAY_S)
                self.registry.observe(reply)
                self.scheduler.received(reply)

    def answer(self, message: Message) -> Message | None:
        match message:
            case MasterHeartbeat(slave_id=slave_id) if slave_id not in self.silent:
                if message.command in {0x05, 0x09}:
                    self.limits[slave_id] = message.limit_centiamps
                state = 0x01 if slave_id in self.plugged else 0x00
                return SlaveHeartbeat(slave_id, MASTER, state, self.limits.get(slave_id, 0), 25)
            case EnergyRequest(slave_id=slave_id) if slave_id not in self.silent:
                return EnergyReport(slave_id, 100, 230, 0, 0)
            case VinRequest(part=part, slave_id=slave_id) if slave_id not in self.silent:
                chunk = (VIN[0:7], VIN[7:14], VIN[14:17])[part - 1]
                return VinReport(part, slave_id, chunk.encode().ljust(11, b"\0"))
        return None

    def of(self, kind: type, slave_id: int | None = None) -> list[float]:
        return [
            at
            for at, m in self.sent
            if isinstance(m, kind) and (slave_id is None or getattr(m, "slave_id", None) == slave_id)
        ]


def test_startup_sends_five_linkready1_then_five_linkready2_100_ms_apart() -> None:
    bus = Bus()
    bus.run(2.0)
    kinds = [type(m) for _, m in bus.sent]
    assert kinds == [MasterLinkready1] * 5 + [MasterLinkready2] * 5
    times = [at for at, _ in bus.sent]
    assert all(b - a >= TIMING.linkready_spacing_s - EPS for a, b in itertools.pairwise(times))
    assert all(m == MasterLinkready1(MASTER, 0x77) for _, m in bus.sent[:5])


def test_a_new_slave_gets_a_heartbeat_at_once_with_its_offer() -> None:
    bus = Bus(offers={1: 16})
    bus.skip_linkready()
    link(bus.registry, 1)
    bus.run(0.05)
    assert bus.sent == [(bus.sent[0][0], MasterHeartbeat(MASTER, 1, 0x09, 1600))]


def test_protocol_1_slaves_get_05_in_14_byte_frames() -> None:
    bus = Bus(offers={1: 10})
    bus.skip_linkready()
    link(bus.registry, 1, protocol=1)
    bus.run(0.05)
    message = bus.sent[0][1]
    assert message == MasterHeartbeat(MASTER, 1, 0x05, 1000, tail=bytes(3))
    assert len(pack(message)) + 1 == 14


def test_echoed_offer_means_no_change_and_zero_is_always_explicit() -> None:
    bus = Bus(offers={1: 16})
    bus.skip_linkready()
    link(bus.registry, 1)
    bus.run(2.5)
    heartbeats = [m for _, m in bus.sent if isinstance(m, MasterHeartbeat)]
    assert [(h.command, h.limit_centiamps) for h in heartbeats] == [(0x09, 1600), (0x00, 0), (0x00, 0)]
    bus.offers = {1: 0}
    bus.sent.clear()
    bus.run(3.0)
    heartbeats = [m for _, m in bus.sent if isinstance(m, MasterHeartbeat)]
    assert {(h.command, h.limit_centiamps) for h in heartbeats} == {(0x09, 0)}


def test_round_robin_polls_each_slave_about_once_a_second_never_faster() -> None:
    bus = Bus(offers={1: 6, 2: 6, 3: 6})
    bus.skip_linkready()
    for slave_id in (1, 2, 3):
        link(bus.registry, slave_id)
    bus.run(30.0)
    for slave_id in (1, 2, 3):
        times = bus.of(MasterHeartbeat, slave_id)
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert len(times) >= 28
        assert min(gaps) >= TIMING.heartbeat_period_s - EPS
        # Queries fit in idle gaps: they never hold a heartbeat back by more than one reply window.
        assert max(gaps) <= TIMING.heartbeat_period_s + TIMING.reply_window_s + 2 * REPLY_DELAY_S


def test_a_reply_window_waits_for_the_answer_or_times_out() -> None:
    bus = Bus(offers={1: 6, 2: 6}, silent={1})
    bus.skip_linkready()
    link(bus.registry, 1)
    link(bus.registry, 2)
    bus.run(0.5)
    first, second = bus.sent[0], bus.sent[1]
    assert first[1] == MasterHeartbeat(MASTER, 1, 0x09, 600)
    assert second[0] - first[0] >= TIMING.reply_window_s - EPS  # slave 1 is silent: the full window passed
    third = bus.sent[2]
    assert third[0] - second[0] < TIMING.reply_window_s  # slave 2 answered: the window closed early


def test_energy_is_polled_every_60_seconds_per_slave_in_idle_gaps() -> None:
    bus = Bus(offers={1: 6, 2: 6})
    bus.skip_linkready()
    link(bus.registry, 1)
    link(bus.registry, 2, protocol=1)
    bus.run(125.0)
    for slave_id in (1, 2):
        times = bus.of(EnergyRequest, slave_id)
        assert len(times) == 3
        assert all(b - a >= TIMING.energy_period_s - EPS for a, b in itertools.pairwise(times))
    p1_request = next(m for _, m in bus.sent if isinstance(m, EnergyRequest) and m.slave_id == 2)
    assert len(pack(p1_request)) + 1 == 14
    slave = bus.registry.get(1)
    assert slave is not None
    assert slave.lifetime_kwh == 100


def test_vin_is_read_part_by_part_while_plugged_in_and_not_again_once_known() -> None:
    bus = Bus(offers={1: 16}, plugged={1})
    bus.skip_linkready()
    link(bus.registry, 1)
    bus.run(90.0)
    parts = [m.part for _, m in bus.sent if isinstance(m, VinRequest)]
    assert parts == [1, 2, 3]
    slave = bus.registry.get(1)
    assert slave is not None
    assert slave.vin == VIN


def test_vin_rounds_retry_every_60_seconds_while_unanswered() -> None:
    bus = Bus(offers={1: 16}, plugged={1})
    bus.skip_linkready()
    link(bus.registry, 1)

    def unanswered_vin(action: Transmit) -> None:
        if isinstance(action.message, VinRequest):
            bus.silent.add(1)
        else:
            bus.silent.discard(1)

    bus.run(125.0, on_send=unanswered_vin)
    times = bus.of(VinRequest, 1)
    assert len(times) == 3
    assert all(b - a >= TIMING.vin_retry_s - EPS for a, b in itertools.pairwise(times))


def test_no_vin_query_without_a_car() -> None:
    bus = Bus(offers={1: 6})
    bus.skip_linkready()
    link(bus.registry, 1)
    bus.run(65.0)
    assert bus.of(VinRequest) == []


def test_start_stop_commands_go_out_once_and_the_latest_wins() -> None:
    bus = Bus(offers={1: 6})
    bus.skip_linkready()
    link(bus.registry, 1)
    bus.scheduler.queue_charge(1, start=False)
    bus.scheduler.queue_charge(1, start=True)
    bus.run(5.0)
    commands = [m for _, m in bus.sent if isinstance(m, StartCharging | StopCharging)]
    assert commands == [StartCharging(MASTER, 1)]


def test_only_three_slaves_are_ever_driven() -> None:
    bus = Bus()
    bus.skip_linkready()
    for slave_id in (1, 2, 3, 4):
        link(bus.registry, slave_id)
    assert [s.slave_id for s in bus.registry.slaves] == [1, 2, 3]
    # Even when handed four (a registry configured wrongly), the scheduler drives the first three.
    bus.registry = SlaveRegistry(bus.clock, MASTER, max_slaves=4)
    for slave_id in (1, 2, 3, 4):
        link(bus.registry, slave_id)
    bus.run(3.0)
    assert bus.of(MasterHeartbeat, 4) == []
    assert all(bus.of(MasterHeartbeat, s) for s in (1, 2, 3))


def test_a_slave_that_links_again_after_a_timeout_starts_afresh() -> None:
    bus = Bus(offers={1: 6}, silent={1})
    bus.skip_linkready()
    link(bus.registry, 1)
    bus.run(27.0)
    assert [type(e).__name__ for e in bus.registry.expire()] == ["SlaveLost"]
    bus.run(1.0)
    bus.sent.clear()
    bus.silent.clear()
    link(bus.registry, 1)
    bus.run(0.05)
    assert isinstance(bus.sent[0][1], MasterHeartbeat)


def test_an_id_conflict_repeats_the_linkready_burst() -> None:
    bus = Bus()
    bus.skip_linkready()
    bus.scheduler.restart_linkready()
    bus.run(2.0)
    assert [type(m) for _, m in bus.sent] == [MasterLinkready1] * 5 + [MasterLinkready2] * 5


def test_idle_without_slaves_does_not_spin() -> None:
    bus = Bus()
    bus.skip_linkready()
    action = bus.scheduler.next_action([], {})
    assert isinstance(action, Idle)
    assert action.until >= bus.clock.monotonic() + TIMING.reply_window_s
