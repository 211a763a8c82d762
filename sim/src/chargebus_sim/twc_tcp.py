"""Gen2 TWC slaves behind a TCP port, as an RS-485-to-Ethernet converter (ser2net raw, USR-TCP232, ESP bridges)
puts a real bus on the network.

The slaves are the pseudo-terminal simulator (`TwcSlaveSim`); this module only carries bytes between its line and
TCP clients. What a client writes goes onto the simulated bus; what travels on the bus goes to every connected
client, because a multi-drop line has no addressing below the protocol. A bridge connects with
`[twc] port = "socket://host:port"`, which is how the docker compose `sim` profile drives the twc-bridge.

    chargebus sim twc-tcp --bind 0.0.0.0 --port 8899 --ids 4a1b,5c2d --vin 4a1b=5YJ3E1EA8KF000001

prints `socket://<bind>:<port>` and runs until SIGINT/SIGTERM. Time follows `CHARGEBUS_TIME_SCALE` (or
`--time-scale`), like the services.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import tty
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

from chargebus.clock import SystemClock

from chargebus_sim.cli import add_time_scale, resolve_time_scale
from chargebus_sim.twc_slave import SlaveSpec, TwcSlaveSim, specs_from_args
from chargebus_sim.twc_wire import id_text as format_twc_id

log = logging.getLogger("chargebus_sim.twc_tcp")

#: USR-TCP232 converters listen on 8899 by default; ser2net setups pick their own.
DEFAULT_PORT = 8899
READ_SIZE = 4096
#: A client that lets this much of the bus pile up unread is too slow for a 9600 baud line: it is dropped.
MAX_CLIENT_BACKLOG = 64 * 1024


class TwcTcpServer:
    """Serve a started `TwcSlaveSim`'s bus to TCP clients. Use `async with TwcTcpServer(sim) as server:`."""

    def __init__(self, sim: TwcSlaveSim, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        self.host = host
        self._wanted_port = port
        self._fd: int | None = None
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        #: Bytes clients wrote that the line could not take at once (a full pty buffer): line noise, as on RS-485.
        self.dropped_bytes = 0

    # ----- lifecycle -----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        # A second handle on the simulator's line, opened as a bridge opens /dev/ttyUSB0.
        fd = os.open(self.sim.port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(fd)
        self._fd = fd
        asyncio.get_running_loop().add_reader(fd, self._on_line_readable)
        self._server = await asyncio.start_server(self._serve_client, self.host, self._wanted_port)

    async def stop(self) -> None:
        """Cut the line: connections reset, nothing listens. `start()` again listens on the same port."""
        if self._server is not None:
            self._wanted_port = self.port
            self._server.close()
            for writer in list(self._clients):
                writer.transport.abort()
            self._clients.clear()
            await self._server.wait_closed()
            self._server = None
        if self._fd is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The TCP port listened on (the one the OS chose when asked for 0); available after `start()`."""
        if self._server is None:
            if self._wanted_port:
                return self._wanted_port  # cut by stop(): start() listens here again
            raise RuntimeError("the server is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """The pyserial URL a bridge opens, e.g. `socket://127.0.0.1:8899`."""
        return f"socket://{self.host}:{self.port}"

    @property
    def clients(self) -> int:
        return len(self._clients)

    # ----- the bytes -----------------------------------------------------------------------------------------------

    def _on_line_readable(self) -> None:
        assert self._fd is not None
        try:
            data = os.read(self._fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # the simulator closed its side: nothing to carry any more
        for writer in list(self._clients):
            if writer.transport.get_write_buffer_size() > MAX_CLIENT_BACKLOG:
                log.warning("event=client_dropped reason=backlog")
                writer.close()
                self._clients.discard(writer)
                continue
            writer.write(data)

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # Frames are small and a heartbeat's answer window is 100 ms: never wait for Nagle.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._clients.add(writer)
        log.info(f"event=client_connected peer={peer} clients={len(self._clients)}")
        try:
            while data := await reader.read(READ_SIZE):
                self._to_line(data)
        except (ConnectionError, OSError):
            pass
        finally:
            self._clients.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            log.info(f"event=client_disconnected peer={peer} clients={len(self._clients)}")

    def _to_line(self, data: bytes) -> None:
        if self._fd is None:
            return
        try:
            written = os.write(self._fd, data)
        except (BlockingIOError, InterruptedError):
            written = 0
        self.dropped_bytes += len(data) - written


# ----- command line --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    bind: str
    port: int
    time_scale: float
    specs: list[SlaveSpec]
    linkready_period_s: float


def parse_args(argv: Sequence[str] | None = None) -> Options:
    """The command line: `--bind`, `--port`, `--time-scale`, then every option of `chargebus sim twc`."""
    parser = argparse.ArgumentParser(
        prog="chargebus sim twc-tcp",
        description="Gen2 TWC slaves behind a TCP port (an RS-485-to-Ethernet converter); "
        "slave options as for `chargebus sim twc` (--ids, --vin, --plugged, --max-amps, …)",
    )
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})")
    add_time_scale(parser)
    own, rest = parser.parse_known_args(argv)
    time_scale = resolve_time_scale(parser, own.time_scale)
    specs, linkready_period_s = specs_from_args(rest)
    return Options(own.bind, own.port, time_scale, specs, linkready_period_s)


async def serve(options: Options, ready: asyncio.Event | None = None) -> None:
    """Run until SIGINT/SIGTERM (or cancellation)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    clock = SystemClock(options.time_scale)
    try:
        async with (
            TwcSlaveSim(options.specs, clock=clock, linkready_period_s=options.linkready_period_s) as sim,
            TwcTcpServer(sim, options.bind, options.port) as server,
        ):
            ids = ",".join(format_twc_id(spec.slave_id) for spec in options.specs)
            sys.stdout.write(f"{server.url}\n")
            sys.stdout.flush()
            log.info(f"event=serving url={server.url} ids={ids} pty={sim.port} time_scale={options.time_scale:g}")
            if ready is not None:
                ready.set()
            await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s", stream=sys.stderr)
    asyncio.run(serve(options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
