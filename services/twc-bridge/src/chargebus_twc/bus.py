"""The serial port: the one task that reads and writes the RS-485 line. I/O only.

`SerialBus` opens the port (9600 baud 8N1, any pyserial URL: a device path, `socket://host:port`,
`rfc2217://host:port`), feeds what it reads to the `BusLink` and writes what the link returns — nothing else ever
reaches the port, so every byte has passed the link's `WriteGate`. Device paths and `socket://` go through
pyserial-asyncio-fast; an `rfc2217://` port has no file descriptor the event loop could watch, so a thread reads
it. The decisions (what to send, when, at how many amps) stay in the pure modules; the offers come from the
`offers` callable at each transmission.

In listen mode no writer runs at all: the port is only read.

A port that cannot be opened, or that fails (a USB adapter unplugged, a socket closed), is retried forever with a
capped backoff, so a container restart order or a replug never needs a human. Everything worth reporting — slave
events, the port going down or coming back, a refused write — is put on `events` for the service; this module
never touches MQTT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import serial
import serial_asyncio_fast
from chargebus.clock import Clock, sleep_until_poked
from chargebus.mqtt import Backoff

from chargebus_twc.guard import RefusedWriteError
from chargebus_twc.link import BusLink
from chargebus_twc.slaves import SlaveEvent

log = logging.getLogger("chargebus_twc.bus")

BAUD_RATE = 9600
#: A partial frame older than this is noise (docs/twc-gen2-protocol.md §2.5).
PARTIAL_FRAME_TIMEOUT_S = 2.0
EXPIRE_PERIOD_S = 1.0
READ_SIZE = 4096


@dataclass(frozen=True, slots=True)
class PortUp:
    port: str


@dataclass(frozen=True, slots=True)
class PortDown:
    """The port failed or could not be opened; `first` is set once per outage (report that one)."""

    port: str
    error: str
    first: bool
    retry_in_s: float


@dataclass(frozen=True, slots=True)
class WriteRefused:
    reason: str


BusEvent = SlaveEvent | PortUp | PortDown | WriteRefused
OffersProvider = Callable[[], Mapping[int, int]]


class PortLostError(Exception):
    """The port stopped working while open."""


class LineWriter(Protocol):
    """The write side of an open port (an asyncio StreamWriter, or `ThreadedLine`)."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


#: URL schemes whose pyserial port has no file descriptor for the event loop to watch: read by a thread instead.
THREADED_SCHEMES = ("rfc2217://",)
THREAD_READ_TIMEOUT_S = 0.1


class ThreadedLine:
    """A pyserial port read by a thread (rfc2217://), fed into an asyncio StreamReader."""

    def __init__(self, port: serial.SerialBase, loop: asyncio.AbstractEventLoop) -> None:
        self._port = port
        self._loop = loop
        self._closed = threading.Event()
        self.reader = asyncio.StreamReader()
        self._thread = threading.Thread(target=self._pump, name="twc-serial-read", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            while not self._closed.is_set():
                data = self._port.read(READ_SIZE)
                if data:
                    self._loop.call_soon_threadsafe(self.reader.feed_data, data)
        except Exception as exc:  # noqa: BLE001 - any failure of the port ends the session
            if not self._closed.is_set():
                self._loop.call_soon_threadsafe(self.reader.set_exception, PortLostError(str(exc)))

    def write(self, data: bytes) -> None:
        self._port.write(data)

    async def drain(self) -> None:
        await asyncio.sleep(0)

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(Exception):
            self._port.close()

    async def wait_closed(self) -> None:
        await asyncio.to_thread(self._thread.join, 1.0)


class SerialBus:
    def __init__(
        self,
        port: str,
        link: BusLink,
        clock: Clock,
        offers: OffersProvider,
        *,
        backoff: Backoff | None = None,
    ) -> None:
        self.port = port
        self.link = link
        self._clock = clock
        self._offers = offers
        self._backoff = backoff or Backoff(initial_s=0.5, cap_s=10.0)
        self._wake = asyncio.Event()
        self._outage_reported = False
        self.events: asyncio.Queue[BusEvent] = asyncio.Queue()
        self.connected = False
        self.bytes_written = 0
        self.bytes_read = 0

    async def run(self) -> None:
        """Own the port until cancelled."""
        expiry = asyncio.create_task(self._expire_forever(), name="twc-expire")
        try:
            while True:
                await self._connect_once()
        finally:
            expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await expiry

    async def _open(self) -> tuple[asyncio.StreamReader, LineWriter]:
        settings = {
            "baudrate": BAUD_RATE,
            "bytesize": serial.EIGHTBITS,
            "parity": serial.PARITY_NONE,
            "stopbits": serial.STOPBITS_ONE,
        }
        if self.port.startswith(THREADED_SCHEMES):
            port = await asyncio.to_thread(serial.serial_for_url, self.port, timeout=THREAD_READ_TIMEOUT_S, **settings)
            line = ThreadedLine(port, asyncio.get_running_loop())
            return line.reader, line
        return await serial_asyncio_fast.open_serial_connection(url=self.port, **settings)

    async def _connect_once(self) -> None:
        try:
            reader, writer = await self._open()
        except (serial.SerialException, OSError, ValueError) as exc:
            await self._down(f"cannot open: {exc}")
            return
        self._backoff.reset()
        self._outage_reported = False
        try:
            await self._session(reader, writer)
        except (PortLostError, serial.SerialException, OSError) as exc:
            error = f"lost: {exc}"
        else:
            return
        finally:
            self.connected = False
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        await self._down(error)

    async def _down(self, error: str) -> None:
        delay = self._backoff.next_delay()
        first = not self._outage_reported
        self._outage_reported = True
        self.events.put_nowait(PortDown(self.port, error, first=first, retry_in_s=delay))
        log.debug(f"event=port_retry port={self.port} error={error!r} retry_in_s={delay:.1f}")
        await self._clock.sleep(delay)

    async def _session(self, reader: asyncio.StreamReader, writer: LineWriter) -> None:
        self.link.decoder.reset()
        if self.link.scheduler is not None:
            self.link.scheduler.restart_linkready()
        self.connected = True
        self.events.put_nowait(PortUp(self.port))
        tasks = [asyncio.create_task(self._read(reader), name="twc-read")]
        if self.link.scheduler is not None:  # listen mode: no writer exists at all
            tasks.append(asyncio.create_task(self._write(writer), name="twc-write"))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # re-raise why the session ended
            raise PortLostError("the port closed")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation that arrives as
                # the read completes, and this loop would then outlive the session that cancelled it.
                async with asyncio.timeout(PARTIAL_FRAME_TIMEOUT_S):
                    data = await reader.read(READ_SIZE)
            except TimeoutError:
                self.link.decoder.reset()  # a silent line: whatever was half received is noise
                continue
            if not data:
                raise PortLostError("end of file")
            self.bytes_read += len(data)
            for event in self.link.receive(data):
                self.events.put_nowait(event)
            self._wake.set()

    async def _write(self, writer: LineWriter) -> None:
        while True:
            try:
                out = self.link.next_write(self._offers())
            except RefusedWriteError as exc:
                # The scheduler counts the message as sent, so this cannot spin; it must never happen at all.
                log.error(f"event=write_refused port={self.port} reason={exc}")  # noqa: TRY400 - not a crash
                self.events.put_nowait(WriteRefused(str(exc)))
                continue
            if isinstance(out, bytes):
                writer.write(out)
                self.bytes_written += len(out)
                await writer.drain()
                continue
            await self._idle(out.until)

    async def _idle(self, until: float) -> None:
        """Wait until `until` (monotonic clock seconds) or until a frame arrives, whichever is first."""
        delay = until - self._clock.monotonic()
        if delay <= 0:
            await asyncio.sleep(0)
            return
        self._wake.clear()
        await sleep_until_poked(self._clock, delay, self._wake)

    async def _expire_forever(self) -> None:
        while True:
            await self._clock.sleep(EXPIRE_PERIOD_S)
            for event in self.link.expire():
                self.events.put_nowait(event)
