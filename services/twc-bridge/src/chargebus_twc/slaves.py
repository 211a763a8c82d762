"""What the bridge knows about each slave, learnt only from received frames. Pure (the clock is passed in).

A slave becomes known by its linkready (FD E2), or — in listen mode, where a real master linked it long ago — by
its first heartbeat. At most three are driven (the TWC's own limit, docs/twc-gen2-protocol.md §1); a fourth is
reported, not added.
A slave silent for 26 s is forgotten and must link again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from chargebus.clock import Clock
from chargebus.schema import VIN_PATTERN, vin_check_digit_ok

from chargebus_twc.codec import (
    EnergyReport,
    MasterHeartbeat,
    MasterLinkready1,
    MasterLinkready2,
    Message,
    SlaveHeartbeat,
    SlaveLinkready,
    VinReport,
)

MAX_SLAVES = 3
SLAVE_TIMEOUT_S = 26.0
#: State 00 ("ready") is also seen with a car plugged in for a moment (docs/twc-gen2-protocol.md §4.4); only a
#: lasting 00 is an unplug.
UNPLUG_AFTER_S = 10.0

STATE_READY = 0x00
#: States that only occur with a car on the cable (docs/twc-gen2-protocol.md §4.4): charging, do-not-charge, ready,
#: starting, and the protocol 2 adjustment echoes. 02 (error), 05 (busy) and unknown codes say nothing about the cable.
PLUGGED_STATES = frozenset({0x01, 0x03, 0x04, 0x06, 0x07, 0x08, 0x09, 0x0A})
_VIN_RE = re.compile(VIN_PATTERN)


@dataclass
class Slave:
    slave_id: int
    protocol: int
    linked_at: float
    last_seen: float
    sign: int | None = None
    advertised_max_centiamps: int | None = None
    state_code: int | None = None
    #: The limit the slave says it applies (D1–D2 of its heartbeat): the echo of our last offer.
    reported_limit_centiamps: int | None = None
    measured_centiamps: int | None = None
    lifetime_kwh: int | None = None
    #: Phase A/B/C in whole volts; 0 means that phase is not wired.
    phase_voltages: tuple[int, int, int] | None = None
    plugged_in: bool | None = None
    #: Epoch seconds of the plug-in seen on the bus (None when it happened before we listened).
    plugged_in_at: float | None = None
    vin: str | None = None
    vin_check_digit_ok: bool | None = None
    #: Monotonic start of the current run of state 00 (unplug debounce).
    ready_since: float | None = field(default=None, repr=False)
    #: VIN characters of the query round in progress, by part.
    vin_parts: dict[int, str] = field(default_factory=dict, repr=False)

    @property
    def advertised_max_amps(self) -> float | None:
        return None if self.advertised_max_centiamps is None else self.advertised_max_centiamps / 100

    @property
    def measured_amps(self) -> float | None:
        return None if self.measured_centiamps is None else self.measured_centiamps / 100

    @property
    def reported_limit_amps(self) -> float | None:
        return None if self.reported_limit_centiamps is None else self.reported_limit_centiamps / 100

    @property
    def phase_voltages_v(self) -> list[float] | None:
        """The wired phases' voltages, or None before the first energy report (or when it reports none)."""
        if self.phase_voltages is None:
            return None
        wired = [float(volts) for volts in self.phase_voltages if volts > 0]
        return wired or None


@dataclass(frozen=True, slots=True)
class SlaveLinked:
    slave_id: int
    protocol: int
    advertised_max_amps: float | None


@dataclass(frozen=True, slots=True)
class SlaveRefused:
    """A fourth slave: reported once, never driven."""

    slave_id: int


@dataclass(frozen=True, slots=True)
class SlaveLost:
    slave_id: int
    silent_s: float


@dataclass(frozen=True, slots=True)
class IdConflict:
    """A slave announced our own master ID; linkready must be repeated so it picks a new one
    (docs/twc-gen2-protocol.md §3)."""

    slave_id: int


@dataclass(frozen=True, slots=True)
class ForeignMaster:
    """Another master talks on this bus (a TWC whose rotary switch is not at F, or a second controller)."""

    master_id: int


@dataclass(frozen=True, slots=True)
class PlugChanged:
    slave_id: int
    plugged_in: bool


@dataclass(frozen=True, slots=True)
class VinRead:
    slave_id: int
    vin: str
    check_digit_ok: bool


SlaveEvent = SlaveLinked | SlaveRefused | SlaveLost | IdConflict | ForeignMaster | PlugChanged | VinRead


class SlaveRegistry:
    """Per-slave state from received frames. `master_id` None means listen mode (no master of our own)."""

    def __init__(self, clock: Clock, master_id: int | None, *, max_slaves: int = MAX_SLAVES) -> None:
        self._clock = clock
        self._master_id = master_id
        self._max_slaves = max_slaves
        self._slaves: dict[int, Slave] = {}
        self._refused: set[int] = set()
        self._foreign_masters: set[int] = set()

    @property
    def slaves(self) -> list[Slave]:
        """Known slaves in the order they linked."""
        return list(self._slaves.values())

    def get(self, slave_id: int) -> Slave | None:
        return self._slaves.get(slave_id)

    def observe(self, message: Message) -> list[SlaveEvent]:
        """Update from one received message; the events are for logs and `…/error` reports."""
        match message:
            case SlaveLinkready():
                return self._on_linkready(message)
            case SlaveHeartbeat():
                return self._on_heartbeat(message)
            case EnergyReport():
                slave = self._touch(message.slave_id)
                if slave is not None:
                    slave.lifetime_kwh = message.lifetime_kwh
                    slave.phase_voltages = (message.voltage_a, message.voltage_b, message.voltage_c)
            case VinReport():
                return self._on_vin(message)
            case MasterLinkready1() | MasterLinkready2() | MasterHeartbeat():
                return self._on_master_frame(message.master_id)
            case _:
                pass
        return []

    def expire(self) -> list[SlaveEvent]:
        """Forget slaves silent for longer than the slave timeout."""
        now = self._clock.monotonic()
        lost = [slave for slave in self._slaves.values() if now - slave.last_seen > SLAVE_TIMEOUT_S]
        for slave in lost:
            del self._slaves[slave.slave_id]
        return [SlaveLost(slave.slave_id, now - slave.last_seen) for slave in lost]

    def _touch(self, slave_id: int) -> Slave | None:
        slave = self._slaves.get(slave_id)
        if slave is not None:
            slave.last_seen = self._clock.monotonic()
        return slave

    def _admit(self, slave_id: int, protocol: int) -> Slave | SlaveRefused | None:
        slave = self._touch(slave_id)
        if slave is not None:
            return slave
        if len(self._slaves) >= self._max_slaves:
            if slave_id in self._refused:
                return None
            self._refused.add(slave_id)
            return SlaveRefused(slave_id)
        self._refused.discard(slave_id)
        now = self._clock.monotonic()
        slave = Slave(slave_id=slave_id, protocol=protocol, linked_at=now, last_seen=now)
        self._slaves[slave_id] = slave
        return slave

    def _on_linkready(self, message: SlaveLinkready) -> list[SlaveEvent]:
        if message.slave_id == self._master_id:
            return [IdConflict(message.slave_id)]
        known = message.slave_id in self._slaves
        admitted = self._admit(message.slave_id, message.protocol)
        if not isinstance(admitted, Slave):
            return [] if admitted is None else [admitted]
        admitted.sign = message.sign
        admitted.protocol = message.protocol
        admitted.advertised_max_centiamps = message.max_centiamps
        if known:
            return []
        return [SlaveLinked(message.slave_id, message.protocol, admitted.advertised_max_amps)]

    def _on_heartbeat(self, message: SlaveHeartbeat) -> list[SlaveEvent]:
        events: list[SlaveEvent] = []
        if self._master_id is None:
            known = message.slave_id in self._slaves
            admitted = self._admit(message.slave_id, message.protocol)
            if not isinstance(admitted, Slave):
                return [] if admitted is None else [admitted]
            if not known:
                events.append(SlaveLinked(message.slave_id, message.protocol, None))
            slave = admitted
        else:
            if message.master_id != self._master_id:
                return self._on_master_frame(message.master_id)
            found = self._touch(message.slave_id)
            if found is None:
                return []
            slave = found
        slave.state_code = message.state
        slave.reported_limit_centiamps = message.limit_centiamps
        slave.measured_centiamps = message.actual_centiamps
        events.extend(self._track_plug(slave, message.state))
        return events

    def _track_plug(self, slave: Slave, state: int) -> list[SlaveEvent]:
        now = self._clock.monotonic()
        if state in PLUGGED_STATES:
            slave.ready_since = None
            if slave.plugged_in is not True:
                # A car already on the cable when we first heard the slave has no plug-in time we know of.
                slave.plugged_in_at = self._clock.time() if slave.plugged_in is False else None
                slave.plugged_in = True
                return [PlugChanged(slave.slave_id, plugged_in=True)]
            return []
        if state != STATE_READY:
            return []
        if slave.ready_since is None:
            slave.ready_since = now
        if slave.plugged_in is not False and (slave.plugged_in is None or now - slave.ready_since >= UNPLUG_AFTER_S):
            was_plugged = slave.plugged_in is True
            slave.plugged_in = False
            slave.plugged_in_at = None
            # docs/contract.md §6: the VIN is kept until the car is unplugged (or another VIN is read).
            slave.vin = None
            slave.vin_check_digit_ok = None
            slave.vin_parts.clear()
            return [PlugChanged(slave.slave_id, plugged_in=False)] if was_plugged else []
        return []

    def _on_vin(self, message: VinReport) -> list[SlaveEvent]:
        slave = self._touch(message.slave_id)
        if slave is None:
            return []
        parts = slave.vin_parts
        if message.part == 1:
            parts.clear()
        elif message.part - 1 not in parts:
            return []  # a part without its predecessors belongs to no round we can finish
        parts[message.part] = message.text
        if message.part != 3:
            return []
        vin = "".join(parts[part] for part in (1, 2, 3))
        parts.clear()
        if not _VIN_RE.fullmatch(vin) or vin == slave.vin:
            # Empty: no CAN, a non-Tesla car or nothing to say; malformed: a bad read. Both keep the last VIN.
            return []
        slave.vin = vin
        slave.vin_check_digit_ok = vin_check_digit_ok(vin)
        return [VinRead(slave.slave_id, vin, check_digit_ok=slave.vin_check_digit_ok)]

    def _on_master_frame(self, master_id: int) -> list[SlaveEvent]:
        # Our own frames may come back from an adapter that echoes what it sends; in listen mode a master is normal.
        if self._master_id is None or master_id == self._master_id or master_id in self._foreign_masters:
            return []
        self._foreign_masters.add(master_id)
        return [ForeignMaster(master_id)]
