"""Which message goes on the bus next. Pure: the clock is passed in, the caller does the I/O.

One scheduler serialises every transmission — the predecessor polled energy and VINs from a background thread, and
those frames collided with heartbeats (docs/twc-gen2-protocol.md §9). In order of priority:

1. the start-up linkready burst: 5 × FC E1, then 5 × FB E2, 100 ms apart (repeated after an ID conflict);
2. heartbeats, round robin, each slave at most once per `heartbeat_period_s`, each followed by a reply window that
   the slave's answer closes early;
3. only in idle gaps (no heartbeat due within a reply window): queued start/stop commands, then VIN queries (parts
   1 → 2 → 3, while a car is plugged in and no VIN is known, a new round every 60 s), then energy queries (every
   60 s per slave).

Requests are padded to the addressed slave's protocol length (14 or 16 bytes).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from chargebus.clock import Clock

from chargebus_twc.codec import (
    EnergyRequest,
    MasterHeartbeat,
    MasterLinkready1,
    MasterLinkready2,
    Message,
    StartCharging,
    StopCharging,
    VinReport,
    VinRequest,
    padding,
    sender_id,
)
from chargebus_twc.offer import heartbeat_command
from chargebus_twc.slaves import MAX_SLAVES, Slave


@dataclass(frozen=True, slots=True)
class BusTiming:
    linkready_count: int = 5
    linkready_spacing_s: float = 0.1
    heartbeat_period_s: float = 1.0
    reply_window_s: float = 0.1
    #: Pause after a reply before transmitting again, so the slave's trailing byte and line release are not hit.
    turnaround_s: float = 0.02
    energy_period_s: float = 60.0
    vin_retry_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Transmit:
    """Send `message` now; `reply_from` is the slave whose answer is awaited (None: no answer expected)."""

    message: Message
    reply_from: int | None


@dataclass(frozen=True, slots=True)
class Idle:
    """Nothing to send before `until` (monotonic seconds), unless a received frame changes that."""

    until: float


class BusScheduler:
    def __init__(self, clock: Clock, master_id: int, sign: int, timing: BusTiming | None = None) -> None:
        self._clock = clock
        self._master_id = master_id
        self._sign = sign
        self._timing = timing or BusTiming()
        self._burst: deque[Message] = deque()
        self._quiet_until = -math.inf
        self._awaiting: int | None = None
        self._last_heartbeat: dict[int, float] = {}
        self._last_energy: dict[int, float] = {}
        self._last_vin_round: dict[int, float] = {}
        self._vin_next_part: dict[int, int] = {}
        self._commands: dict[int, Message] = {}
        self.restart_linkready()

    def restart_linkready(self) -> None:
        count = self._timing.linkready_count
        self._burst = deque(
            [MasterLinkready1(self._master_id, self._sign)] * count
            + [MasterLinkready2(self._master_id, self._sign)] * count
        )

    def queue_charge(self, slave_id: int, *, start: bool) -> None:
        """Queue FC B1 (start) or FC B2 (stop) for one slave; a newer request replaces one not yet sent."""
        command = StartCharging if start else StopCharging
        self._commands[slave_id] = command(self._master_id, slave_id)

    def received(self, message: Message) -> None:
        """Tell the scheduler about a received message: the awaited reply closes the reply window early."""
        sender = sender_id(message)
        if sender is not None and sender == self._awaiting:
            self._awaiting = None
            self._quiet_until = self._clock.monotonic() + self._timing.turnaround_s
        if isinstance(message, VinReport) and message.part < 3 and message.slave_id in self._last_vin_round:
            self._vin_next_part[message.slave_id] = message.part + 1

    def next_action(self, slaves: Sequence[Slave], offers: Mapping[int, int]) -> Transmit | Idle:
        """The next transmission, recorded as sent now; `offers` are whole amps by slave ID (missing: 0 A)."""
        now = self._clock.monotonic()
        driven = list(slaves[:MAX_SLAVES])
        self._forget_all_but({slave.slave_id for slave in driven})
        if now < self._quiet_until:
            return Idle(self._quiet_until)
        self._awaiting = None
        if self._burst:
            return self._send(self._burst.popleft(), None, now)

        due = {slave.slave_id: self._heartbeat_due(slave.slave_id) for slave in driven}
        overdue = [slave for slave in driven if due[slave.slave_id] <= now]
        if overdue:
            slave = min(overdue, key=lambda s: due[s.slave_id])
            return self._send(self._heartbeat(slave, offers.get(slave.slave_id, 0)), slave.slave_id, now)

        next_heartbeat = min(due.values(), default=math.inf)
        if next_heartbeat >= now + self._timing.reply_window_s:
            query = self._idle_query(driven, now)
            if query is not None:
                return self._send(query, _addressee(query), now)
        query_at = self._next_query_at(driven)
        # A query that is due but does not fit before the next heartbeat waits for that heartbeat.
        until = next_heartbeat if query_at <= now else min(next_heartbeat, query_at)
        return Idle(until if math.isfinite(until) else now + self._timing.heartbeat_period_s)

    def _send(self, message: Message, reply_from: int | None, now: float) -> Transmit:
        self._awaiting = reply_from
        wait = self._timing.linkready_spacing_s if reply_from is None else self._timing.reply_window_s
        self._quiet_until = now + wait
        return Transmit(message, reply_from)

    def _heartbeat_due(self, slave_id: int) -> float:
        last = self._last_heartbeat.get(slave_id)
        return -math.inf if last is None else last + self._timing.heartbeat_period_s

    def _heartbeat(self, slave: Slave, offer: int) -> MasterHeartbeat:
        self._last_heartbeat[slave.slave_id] = self._clock.monotonic()
        command, limit = heartbeat_command(offer, slave.protocol, slave.reported_limit_centiamps)
        tail = padding(MasterHeartbeat.FIXED, slave.protocol)
        return MasterHeartbeat(self._master_id, slave.slave_id, command, limit, tail=tail)

    def _vin_round_due(self, slave: Slave) -> float:
        if not slave.plugged_in or slave.vin is not None:
            return math.inf
        last = self._last_vin_round.get(slave.slave_id)
        return -math.inf if last is None else last + self._timing.vin_retry_s

    def _energy_due(self, slave: Slave) -> float:
        last = self._last_energy.get(slave.slave_id)
        return -math.inf if last is None else last + self._timing.energy_period_s

    def _idle_query(self, driven: list[Slave], now: float) -> Message | None:
        for slave in driven:
            command = self._commands.pop(slave.slave_id, None)
            if command is not None:
                return command
        for slave in driven:
            part = self._vin_next_part.pop(slave.slave_id, None)
            if part is not None:
                return self._vin_request(slave, part)
        for slave in driven:
            if self._vin_round_due(slave) <= now:
                self._last_vin_round[slave.slave_id] = now
                return self._vin_request(slave, 1)
        for slave in driven:
            if self._energy_due(slave) <= now:
                self._last_energy[slave.slave_id] = now
                return EnergyRequest(self._master_id, slave.slave_id, padding(EnergyRequest.FIXED, slave.protocol))
        return None

    def _vin_request(self, slave: Slave, part: int) -> VinRequest:
        return VinRequest(part, self._master_id, slave.slave_id, padding(VinRequest.FIXED, slave.protocol))

    def _next_query_at(self, driven: list[Slave]) -> float:
        if any(slave.slave_id in self._commands or slave.slave_id in self._vin_next_part for slave in driven):
            return -math.inf
        times = [min(self._vin_round_due(slave), self._energy_due(slave)) for slave in driven]
        return min(times, default=math.inf)

    def _forget_all_but(self, slave_ids: set[int]) -> None:
        """Drop the timers and pending commands of slaves that are gone: they start afresh when they link again."""
        for table in (self._last_heartbeat, self._last_energy, self._last_vin_round, self._vin_next_part):
            for slave_id in table.keys() - slave_ids:
                del table[slave_id]
        for slave_id in self._commands.keys() - slave_ids:
            del self._commands[slave_id]


def _addressee(message: Message) -> int | None:
    match message:
        case EnergyRequest() | VinRequest() | StartCharging() | StopCharging():
            return message.slave_id
    return None
