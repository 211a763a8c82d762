"""Gen2 TWC slaves on a pseudo-terminal, for tests, the demo and benchmarks.

One `TwcSlaveSim` is one RS-485 bus with 1–3 slaves behind it. The bridge opens `sim.port` (the pty's slave side)
with pyserial as it would open /dev/ttyUSB0. The slaves announce themselves while no master drives them, answer
linkready, heartbeats, energy and VIN queries, obey the offered limit with a car whose draw follows it after a lag,
and record every frame they receive, so tests can assert what the master did (no dangerous command, no offer above
a limit). A slave can be told to go silent (to make the master time it out), or its car to unplug.

    python -m chargebus_sim.twc_slave --ids 4a1b,5c2d --vin 4a1b=5YJ3E1EA8KF000001

prints the pty path and runs until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tty
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Self

from chargebus.clock import Clock, SystemClock

from chargebus_sim import twc_wire as wire
from chargebus_sim.twc_wire import (
    LIMIT_COMMANDS,
    Deframer,
    EnergyRequest,
    Heading,
    MasterHeartbeat,
    MasterLinkready2,
    StartCharging,
    StopCharging,
    VinRequest,
    damage,
    understand,
)

#: What an idle slave reports as "actual" current: a calibration offset (docs/twc-gen2-protocol.md §4.2).
IDLE_CENTIAMPS = 25
#: A car does not charge on less (docs/twc-gen2-protocol.md §7).
CAR_MIN_AMPS = 5.0

__all__ = ["LIMIT_COMMANDS", "Malformed", "ReceivedFrame", "Refused", "SimSlave", "SlaveSpec", "TwcSlaveSim"]


@dataclass
class SlaveSpec:
    """One simulated TWC and the car on its cable."""

    slave_id: int
    max_amps: float = 32.0
    protocol: int = 2
    sign: int = 0x42
    plugged_in: bool = False
    vin: str | None = None
    car_max_amps: float = 32.0
    #: Seconds the car's draw lags behind the offered limit.
    lag_s: float = 2.0
    voltages: tuple[int, int, int] = (230, 0, 0)
    lifetime_kwh: float = 100.0
    #: Firmware before 4.5.3 does not answer VIN queries.
    answers_vin: bool = True
    #: Amps the car draws below what it may (real cars draw about 0.5 A under the pilot), while it draws at all.
    draw_below_offer_a: float = 0.0


@dataclass
class SimSlave:
    """The live state of one simulated slave."""

    spec: SlaveSpec
    plugged_in: bool
    vin: str | None
    energy_wh: float
    limit_centiamps: int = 0
    silent: bool = False
    relay_open: bool = False
    #: Set by an error command (02): the slave answers once with state 02, then stops talking
    #: (docs/twc-gen2-protocol.md §4.3).
    errored: bool = False
    error_reported: bool = False
    last_heartbeat_at: float | None = None
    last_linkready_at: float | None = None
    #: (since, amps) steps of what the car would like to draw; it draws each `lag_s` after it was set.
    targets: list[tuple[float, float]] = field(default_factory=lambda: [(float("-inf"), 0.0)])

    def target_amps(self) -> float:
        if not self.plugged_in or self.relay_open or self.limit_centiamps < CAR_MIN_AMPS * 100:
            return 0.0
        allowed = min(self.limit_centiamps / 100, self.spec.car_max_amps)
        return max(0.0, allowed - self.spec.draw_below_offer_a) if allowed > 0 else 0.0

    def retarget(self, now: float) -> None:
        target = self.target_amps()
        if target != self.targets[-1][1]:
            self.targets.append((now, target))

    def draw_amps(self, now: float) -> float:
        horizon = now - self.spec.lag_s
        applied = [amps for since, amps in self.targets if since <= horizon]
        # Keep only the step in force and the ones still to come.
        self.targets = self.targets[len(applied) - 1 :]
        return applied[-1]

    def state_code(self, now: float) -> int:
        if self.errored:
            return 0x02
        if not self.plugged_in:
            return 0x00
        if self.relay_open:
            return 0x03
        if self.draw_amps(now) >= 1.0:
            return 0x01
        return 0x08 if self.target_amps() > 0 else 0x04

    def actual_centiamps(self, now: float) -> int:
        return max(IDLE_CENTIAMPS, round(self.draw_amps(now) * 100))


@dataclass(frozen=True, slots=True)
class ReceivedFrame:
    at: float
    message: Heading


@dataclass(frozen=True, slots=True)
class Refused:
    """A frame on the deny list: what could damage a real slave. The simulated one ignores it (an error command
    excepted: that one it obeys as a real slave does, so tests see the consequence)."""

    at: float
    message: Heading
    reason: str


@dataclass(frozen=True, slots=True)
class Malformed:
    """Bytes between two C0s that no TWC would take for a frame, or a heartbeat of the wrong length for the slave."""

    at: float
    raw: bytes
    problem: str


class TwcSlaveSim:
    """1–3 simulated Gen2 slaves on one pseudo-terminal."""

    def __init__(
        self,
        slaves: Sequence[SlaveSpec],
        *,
        clock: Clock | None = None,
        linkready_period_s: float = 10.0,
        master_timeout_s: float = 30.0,
        tick_s: float = 0.05,
        overfull: bool = False,
        real_master: tuple[int, float] | None = None,
        real_master_period_s: float = 1.0,
    ) -> None:
        """`overfull` allows a 4th slave (to test a master's refusal of it); `real_master` = (master ID, amps)
        puts a real master TWC on the bus as well, which heartbeats every slave with that limit each
        `real_master_period_s`: both its frames and the answers appear on the line, as a listener sees them."""
        most = 4 if overfull else 3
        if not 1 <= len(slaves) <= most or len({s.slave_id for s in slaves}) != len(slaves):
            raise ValueError(f"a bus has 1 to {most} slaves with distinct IDs")
        self._clock = clock or SystemClock()
        self._slaves = {
            spec.slave_id: SimSlave(spec, spec.plugged_in, spec.vin, spec.lifetime_kwh * 1000) for spec in slaves
        }
        self._linkready_period_s = linkready_period_s
        self._master_timeout_s = master_timeout_s
        self._tick_s = tick_s
        self._real_master = real_master
        self._real_master_period_s = real_master_period_s
        self._real_master_last: dict[int, float] = {}
        self._deframer = Deframer()
        self._fds: tuple[int, int] | None = None
        self._port: str | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._last_tick: float | None = None
        self.received: list[ReceivedFrame] = []
        #: Frames on the deny list (`dangerous_frames()`), and frames no TWC would accept: both must stay empty.
        self.refused: list[Refused] = []
        self.malformed: list[Malformed] = []
        #: Every byte anyone wrote to the bus through the port (noise and partial frames included).
        self.received_bytes = 0

    # ----- lifecycle -----------------------------------------------------------------------------------------------

    @property
    def port(self) -> str:
        """The path a bridge opens (e.g. /dev/pts/3); available after `start()`."""
        if self._port is None:
            raise RuntimeError("the simulator is not started")
        return self._port

    async def start(self) -> None:
        master_fd, slave_fd = os.openpty()
        # Raw mode: no echo, no line editing, no CR/LF translation — the bytes are binary frames.
        tty.setraw(slave_fd)
        tty.setraw(master_fd)
        os.set_blocking(master_fd, False)
        self._fds = (master_fd, slave_fd)
        self._port = os.ttyname(slave_fd)
        loop = asyncio.get_running_loop()
        loop.add_reader(master_fd, self._on_readable)
        self._ticker = asyncio.create_task(self._tick_forever())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._fds is not None:
            asyncio.get_running_loop().remove_reader(self._fds[0])
            for fd in self._fds:
                os.close(fd)
            self._fds = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    # ----- controls for tests and the demo -------------------------------------------------------------------------

    def slave(self, slave_id: int) -> SimSlave:
        return self._slaves[slave_id]

    def slave_ids(self) -> list[int]:
        return list(self._slaves)

    def draw_w(self, slave_id: int, now: float) -> float:
        """What the car on this slave really draws at `now` (the sim's monotonic clock), in watts."""
        slave = self._slaves[slave_id]
        return slave.draw_amps(now) * sum(slave.spec.voltages)

    def set_silent(self, slave_id: int, silent: bool = True) -> None:
        """A silent slave neither announces itself nor answers: the master should time it out."""
        self._slaves[slave_id].silent = silent

    def unplug(self, slave_id: int) -> None:
        slave = self._slaves[slave_id]
        slave.plugged_in = False
        slave.vin = None
        slave.relay_open = False
        slave.retarget(self._clock.monotonic())

    def plug_in(self, slave_id: int, vin: str | None = None) -> None:
        slave = self._slaves[slave_id]
        slave.plugged_in = True
        slave.vin = vin
        slave.retarget(self._clock.monotonic())

    # ----- what the master did -------------------------------------------------------------------------------------

    def dangerous_frames(self) -> list[Heading]:
        """Every received frame that could damage a real slave (must stay empty)."""
        return [refused.message for refused in self.refused]

    def offered_amps(self, slave_id: int) -> list[float]:
        """Every limit a master heartbeat set for this slave, in order."""
        return [
            frame.message.limit_centiamps / 100
            for frame in self.received
            if isinstance(frame.message, MasterHeartbeat)
            and frame.message.slave_id == slave_id
            and frame.message.command in LIMIT_COMMANDS
        ]

    # ----- the bus -------------------------------------------------------------------------------------------------

    def _on_readable(self) -> None:
        assert self._fds is not None
        try:
            data = os.read(self._fds[0], 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""  # EIO: nobody holds the slave side open right now
        self.received_bytes += len(data)
        now = self._clock.monotonic()
        for heard in self._deframer.feed(data):
            if heard.problem is not None:
                self.malformed.append(Malformed(now, heard.message, heard.problem))
                continue
            message = understand(heard.message)
            self.received.append(ReceivedFrame(now, message))
            reason = damage(heard.message)
            if reason is not None:
                self.refused.append(Refused(now, message, reason))
            self._check_length(message, heard.message, now)
            for reply in self._answer(message, now, refused=reason is not None):
                self._write(reply)

    def _check_length(self, message: Heading, body: bytes, now: float) -> None:
        if isinstance(message, MasterHeartbeat) and message.slave_id in self._slaves:
            protocol = self._slaves[message.slave_id].spec.protocol
            if len(body) + 1 != wire.HEARTBEAT_LENGTH[protocol]:
                problem = f"{len(body) + 1}-byte heartbeat to a protocol {protocol} slave"
                self.malformed.append(Malformed(now, body, problem))

    def _write(self, message: bytes) -> None:
        if self._fds is not None:
            # Real TWCs send a stray FE after each frame. A line nobody reads loses what is sent on it.
            with contextlib.suppress(BlockingIOError, InterruptedError):
                os.write(self._fds[0], wire.to_wire(message) + b"\xfe")

    def _answer(self, message: Heading, now: float, *, refused: bool = False) -> list[bytes]:
        if isinstance(message, MasterLinkready2):
            return [self._linkready(s, now) for s in self._slaves.values() if self._talks(s)]
        slave_id = getattr(message, "slave_id", None)
        slave = self._slaves.get(slave_id) if isinstance(slave_id, int) else None
        if slave is None or not self._talks(slave):
            return []
        protocol = slave.spec.protocol
        reply: bytes | None = None
        match message:
            case MasterHeartbeat() if not refused or message.command == 0x02:
                reply = self._on_heartbeat(slave, message, now)
            case MasterHeartbeat():  # a limit above 80 A: answered, not obeyed
                reply = self._heartbeat_reply(slave, message.master_id, now)
            case EnergyRequest():
                reply = wire.energy_report(slave.spec.slave_id, int(slave.energy_wh // 1000), slave.spec.voltages)
            case VinRequest() if slave.spec.answers_vin:
                reply = self._vin_report(slave, message.part)
            case StartCharging() | StopCharging():
                slave.relay_open = isinstance(message, StopCharging)
                slave.retarget(now)
                function = wire.STOP if slave.relay_open else wire.START
                reply = wire.acknowledge(function, slave.spec.slave_id, protocol)
            case _:
                pass
        return [] if reply is None else [reply]

    def _talks(self, slave: SimSlave) -> bool:
        # After an error command a slave answers once with state 02, then stays quiet until reset.
        return not slave.silent and not (slave.errored and slave.error_reported)

    def _on_heartbeat(self, slave: SimSlave, message: MasterHeartbeat, now: float) -> bytes:
        slave.last_heartbeat_at = now
        command = message.command
        if command == 0x02:  # the error command
            slave.errored = True
        elif command in LIMIT_COMMANDS:
            slave.limit_centiamps = message.limit_centiamps
        elif command in {0x06, 0x07} and slave.spec.protocol == 2:
            step = 200 if command == 0x06 else -200
            slave.limit_centiamps = max(0, slave.limit_centiamps + step)
        slave.retarget(now)
        if slave.errored:
            slave.error_reported = True
        return self._heartbeat_reply(slave, message.master_id, now)

    def _heartbeat_reply(self, slave: SimSlave, master_id: int, now: float) -> bytes:
        return wire.slave_heartbeat(
            slave.spec.slave_id,
            master_id,
            slave.state_code(now),
            slave.limit_centiamps,
            slave.actual_centiamps(now),
            protocol=slave.spec.protocol,
        )

    def _linkready(self, slave: SimSlave, now: float) -> bytes:
        slave.last_linkready_at = now
        spec = slave.spec
        return wire.slave_linkready(spec.slave_id, spec.sign, round(spec.max_amps * 100), spec.protocol)

    def _vin_report(self, slave: SimSlave, part: int) -> bytes:
        vin = (slave.vin or "").encode("ascii") if slave.plugged_in else b""
        return wire.vin_report(part, slave.spec.slave_id, vin[(part - 1) * 7 : part * 7], slave.spec.protocol)

    async def _tick_forever(self) -> None:
        while True:
            self._tick(self._clock.monotonic())
            # Real time between ticks; the simulated clock may run faster (CHARGEBUS_TIME_SCALE).
            await asyncio.sleep(self._tick_s)

    def _tick(self, now: float) -> None:
        elapsed = 0.0 if self._last_tick is None else now - self._last_tick
        self._last_tick = now
        if self._real_master is not None:
            self._drive_as_real_master(*self._real_master, now)
        for slave in self._slaves.values():
            volts = sum(slave.spec.voltages)
            slave.energy_wh += slave.draw_amps(now) * volts * elapsed / 3600
            linked = slave.last_heartbeat_at is not None and now - slave.last_heartbeat_at <= self._master_timeout_s
            if not linked and slave.last_heartbeat_at is not None:
                # The master is gone: stop charging and offer ourselves again (docs/twc-gen2-protocol.md §5, ~30 s).
                slave.last_heartbeat_at = None
                slave.limit_centiamps = 0
                slave.retarget(now)
            due = slave.last_linkready_at is None or now - slave.last_linkready_at >= self._linkready_period_s
            if not linked and due and self._talks(slave):
                self._write(self._linkready(slave, now))

    def _drive_as_real_master(self, master_id: int, amps: float, now: float) -> None:
        for slave in self._slaves.values():
            last = self._real_master_last.get(slave.spec.slave_id)
            if last is not None and now - last < self._real_master_period_s:
                continue
            self._real_master_last[slave.spec.slave_id] = now
            protocol = slave.spec.protocol
            heartbeat = wire.master_heartbeat(
                master_id, slave.spec.slave_id, 0x09, round(amps * 100), protocol=protocol
            )
            self._write(heartbeat)
            if self._talks(slave):
                message = understand(heartbeat)
                assert isinstance(message, MasterHeartbeat)
                self._write(self._on_heartbeat(slave, message, now))


# ----- command line --------------------------------------------------------------------------------------------------


def _pairs(text: str) -> dict[int, str]:
    pairs: dict[int, str] = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        pairs[wire.twc_id(key.strip())] = value.strip()
    return pairs


def specs_from_args(argv: Sequence[str] | None = None) -> tuple[list[SlaveSpec], float]:
    parser = argparse.ArgumentParser(
        prog="python -m chargebus_sim.twc_slave", description="Gen2 TWC slaves on a pseudo-terminal"
    )
    parser.add_argument("--ids", default="4a1b", help="comma-separated slave IDs, 4 hex digits each (1–3)")
    parser.add_argument("--max-amps", type=float, default=32.0, help="advertised maximum of every slave")
    parser.add_argument("--protocol", type=int, choices=(1, 2), default=2)
    parser.add_argument("--vin", default="", help="plugged cars: id=VIN,…")
    parser.add_argument("--plugged", default="", help="plugged cars without a VIN: id,…")
    parser.add_argument("--lag", type=float, default=2.0, help="seconds the car draw lags behind the offer")
    parser.add_argument("--voltage", type=int, default=230)
    parser.add_argument("--linkready-period", type=float, default=10.0)
    args = parser.parse_args(argv)
    vins = _pairs(args.vin)
    plugged = set(_pairs(args.plugged)) | set(vins)
    specs = [
        SlaveSpec(
            slave_id=slave_id,
            max_amps=args.max_amps,
            protocol=args.protocol,
            plugged_in=slave_id in plugged,
            vin=vins.get(slave_id) or None,
            lag_s=args.lag,
            voltages=(args.voltage, 0, 0),
        )
        for slave_id in (wire.twc_id(text.strip()) for text in args.ids.split(","))
    ]
    return specs, args.linkready_period


async def _serve(specs: list[SlaveSpec], linkready_period_s: float) -> None:
    async with TwcSlaveSim(specs, linkready_period_s=linkready_period_s) as sim:
        ids = ",".join(wire.id_text(spec.slave_id) for spec in specs)
        sys.stdout.write(f"{sim.port}\n")
        sys.stdout.flush()
        sys.stderr.write(f"twc-slave-sim port={sim.port} ids={ids}\n")
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> None:
    specs, linkready_period_s = specs_from_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(specs, linkready_period_s))


if __name__ == "__main__":
    main()
