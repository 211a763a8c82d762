"""SerialBus on its own: a socket:// line that goes away and comes back, and the write gate on the real path."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator

import pytest
import serial
import serial.rfc2217
from chargebus.clock import SystemClock
from chargebus_sim.twc_slave import SlaveSpec, TwcSlaveSim
from chargebus_sim.twc_tcp import TwcTcpServer
from chargebus_sim.twc_wire import MasterHeartbeat
from chargebus_twc.bus import BusEvent, PortDown, PortUp, SerialBus, WriteRefused
from chargebus_twc.codec import UnknownMessage
from chargebus_twc.link import BusLink
from chargebus_twc.scheduler import Idle, Transmit
from chargebus_twc.slaves import SlaveLinked

A = 0x4A1B
MASTER = 0x7777


class PtyLine(serial.Serial):  # type: ignore[misc]  # pyserial ships no types
    """A pty has no modem lines: report them idle instead of failing the ioctl."""

    cts = dsr = ri = cd = property(lambda _self: False)

    def _update_rts_state(self) -> None:
        pass

    def _update_dtr_state(self) -> None:
        pass


class Rfc2217Line:
    """A minimal RFC 2217 server (pyserial's PortManager) in front of the simulator's pty, in threads."""

    def __init__(self, pty_path: str) -> None:
        self.pty_path = pty_path
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self._alive = threading.Event()
        self._alive.set()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            connection, _ = self.server.accept()
            line = PtyLine(self.pty_path, 9600, timeout=0.05)

            class Sender:
                def write(self, data: bytes) -> None:
                    connection.sendall(data)

            manager = serial.rfc2217.PortManager(line, Sender())

            def to_socket() -> None:
                with contextlib.suppress(OSError, serial.SerialException, TypeError):  # TypeError: closed under us
                    while self._alive.is_set():
                        data = line.read(4096)
                        if data:
                            connection.sendall(b"".join(manager.escape(data)))

            threading.Thread(target=to_socket, daemon=True).start()
            with contextlib.suppress(OSError):
                while data := connection.recv(1024):
                    line.write(b"".join(manager.filter(data)))
            self._alive.clear()
            line.close()

    def stop(self) -> None:
        self._alive.clear()
        self.server.close()


async def next_event(bus: SerialBus, kind: type[BusEvent], timeout: float = 10.0) -> BusEvent:
    async def find() -> BusEvent:
        while True:
            event = await bus.events.get()
            if isinstance(event, kind):
                return event

    return await asyncio.wait_for(find(), timeout)


def connected(bus: SerialBus) -> bool:
    return bus.connected


@contextlib.asynccontextmanager
async def running(bus: SerialBus) -> AsyncIterator[SerialBus]:
    task = asyncio.create_task(bus.run())
    try:
        yield bus
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_offer(sim: TwcSlaveSim, amps: float, since: int = 0) -> None:
    for _ in range(200):
        sent = sim.offered_amps(A)[since:]
        if sent and sent[-1] == amps:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"never offered {amps} A: {sim.offered_amps(A)}")


async def test_a_socket_line_that_goes_away_is_reopened_when_it_returns() -> None:
    clock = SystemClock()
    async with TwcSlaveSim([SlaveSpec(A, plugged_in=True, lag_s=0.1)]) as sim:
        line = TwcTcpServer(sim)
        await line.start()
        link = BusLink(clock, mode="master", master_id=MASTER, sign=0x77)
        bus = SerialBus(line.url, link, clock, lambda: {A: 10})
        async with running(bus):
            await next_event(bus, PortUp)
            linked = await next_event(bus, SlaveLinked)
            assert linked == SlaveLinked(A, 2, 32.0)
            await wait_offer(sim, 10.0)
            await line.stop()
            down = await next_event(bus, PortDown)
            assert isinstance(down, PortDown)
            assert down.first
            assert not connected(bus)
            since = len(sim.received)
            await line.start()  # same TCP port
            await next_event(bus, PortUp)
            for _ in range(100):  # heartbeats again ("no change": the slave still applies 10 A)
                if [f for f in sim.received[since:] if isinstance(f.message, MasterHeartbeat)]:
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("no heartbeat after the line came back")
            assert connected(bus)  # a call: mypy would keep the narrowing of the attribute from above
        await line.stop()
    assert sim.dangerous_frames() == []


async def test_a_refused_message_never_reaches_the_line() -> None:
    clock = SystemClock()
    async with TwcSlaveSim([SlaveSpec(A, lag_s=0.1)]) as sim:
        link = BusLink(clock, mode="master", master_id=MASTER, sign=0x77)
        assert link.scheduler is not None
        original = link.scheduler.next_action
        dangerous = [UnknownMessage(bytes.fromhex("FC19 7777 4A1B") + bytes(9))]

        def sneaky(*args: object, **kwargs: object) -> Transmit | Idle:
            if dangerous:
                return Transmit(dangerous.pop(), None)
            return original(*args, **kwargs)  # type: ignore[arg-type]

        link.scheduler.next_action = sneaky  # type: ignore[method-assign]
        bus = SerialBus(sim.port, link, clock, lambda: {A: 6})
        async with running(bus):
            refused = await next_event(bus, WriteRefused)
            assert isinstance(refused, WriteRefused)
            assert "FC 19" in refused.reason
            await wait_offer(sim, 6.0)  # and the bus goes on working
    assert sim.dangerous_frames() == []
    assert sim.malformed == []  # every frame as the simulated slaves read the protocol
    assert bus.bytes_written == sim.received_bytes


@pytest.mark.filterwarnings("ignore:set(Daemon|Name)\\(\\) is deprecated:DeprecationWarning")  # pyserial's own code
async def test_an_rfc2217_port_is_read_by_a_thread_and_driven_like_any_other() -> None:
    clock = SystemClock()
    async with TwcSlaveSim([SlaveSpec(A, plugged_in=True, lag_s=0.1)]) as sim:
        line = Rfc2217Line(sim.port)
        link = BusLink(clock, mode="master", master_id=MASTER, sign=0x77)
        bus = SerialBus(f"rfc2217://127.0.0.1:{line.port}", link, clock, lambda: {A: 12})
        try:
            async with running(bus):
                await next_event(bus, PortUp)
                assert await next_event(bus, SlaveLinked) == SlaveLinked(A, 2, 32.0)
                await wait_offer(sim, 12.0)
        finally:
            line.stop()
    assert sim.dangerous_frames() == []
