"""The bus as the serial task sees it: bytes in, bytes out, events to report. Pure.

`BusLink` ties the frame decoder, the slave registry, the scheduler and the write gate together, so the I/O module
only moves bytes: feed what the port reads to `receive()`, write what `next_write()` returns (or wait until the
time it names), and call `expire()` now and then. In listen mode nothing is ever returned for writing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from chargebus.clock import Clock
from chargebus.schema import Setpoint

from chargebus_twc.codec import FrameDecoder, MasterHeartbeat, parse
from chargebus_twc.guard import Mode, WriteGate
from chargebus_twc.offer import COMMAND_NO_CHANGE, BusLimits, SlaveDemand, slave_max_amps, slave_min_amps
from chargebus_twc.scheduler import BusScheduler, BusTiming, Idle
from chargebus_twc.slaves import IdConflict, Slave, SlaveEvent, SlaveLost, SlaveRegistry

#: How long a listener waits between looks at the line when it has nothing to send (it never has).
_LISTEN_POLL_S = 1.0


class BusLink:
    def __init__(self, clock: Clock, *, mode: Mode, master_id: int, sign: int, timing: BusTiming | None = None) -> None:
        self._clock = clock
        self.decoder = FrameDecoder()
        self.registry = SlaveRegistry(clock, master_id if mode == "master" else None)
        self.scheduler = BusScheduler(clock, master_id, sign, timing) if mode == "master" else None
        self.gate = WriteGate(mode)
        #: The limit (whole amps) of the last limit heartbeat each slave was sent; "no change" keeps it.
        self.offered: dict[int, int] = {}

    def receive(self, data: bytes) -> list[SlaveEvent]:
        """Bytes read from the port; the events are for logs and `…/error` reports."""
        events: list[SlaveEvent] = []
        for body in self.decoder.feed(data):
            message = parse(body)
            found = self.registry.observe(message)
            if self.scheduler is not None:
                self.scheduler.received(message)
                if any(isinstance(event, IdConflict) for event in found):
                    self.scheduler.restart_linkready()
            events.extend(found)
        return events

    def expire(self) -> list[SlaveEvent]:
        events = self.registry.expire()
        for event in events:
            if isinstance(event, SlaveLost):
                self.offered.pop(event.slave_id, None)
        return events

    def committed(self) -> dict[int, int]:
        """Amps each known slave may be drawing already: the higher of our last offer and its reported limit."""
        return {
            slave.slave_id: max(
                self.offered.get(slave.slave_id, 0), math.ceil((slave.reported_limit_centiamps or 0) / 100)
            )
            for slave in self.registry.slaves
        }

    def next_write(self, offers: Mapping[int, int]) -> bytes | Idle:
        """Wire bytes to write now, or how long to wait (a received frame may end the wait early)."""
        if self.scheduler is None:
            return Idle(self._clock.monotonic() + _LISTEN_POLL_S)
        action = self.scheduler.next_action(self.registry.slaves, offers)
        if isinstance(action, Idle):
            return action
        wire = self.gate.frame(action.message)
        message = action.message
        if isinstance(message, MasterHeartbeat) and message.command != COMMAND_NO_CHANGE:
            self.offered[message.slave_id] = message.limit_centiamps // 100
        return wire


def demand_for(
    slave: Slave,
    limits: BusLimits,
    *,
    voltage_v: float,
    phases: int,
    setpoint: Setpoint | None,
    received_at: float,
    override_amps: float | None,
    current_offer: int,
) -> SlaveDemand:
    """One slave's offer inputs from what the bus reported and what the configuration and MQTT said."""
    return SlaveDemand(
        slave_id=slave.slave_id,
        min_amps=slave_min_amps(limits.min_amps, slave.protocol),
        max_amps=slave_max_amps(limits.wiring_max_amps, slave.advertised_max_amps, override_amps),
        voltage_v=voltage_v,
        phases=phases,
        setpoint=setpoint,
        received_at=received_at,
        current_offer=current_offer,
    )
