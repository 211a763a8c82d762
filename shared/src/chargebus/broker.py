"""A broker for the demo and the tests: the local `mosquitto` binary if installed, else the embedded one.

The embedded broker is amqtt (pure Python), checked with aiomqtt for retained messages, a retained LWT on a
killed client and QoS 1. It speaks MQTT 3.1.1 only; the services fall back to 3.1.1 on their own. Both run as
child processes so a test or the demo can stop them cleanly and nothing shares an event loop with a service.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s:g} s") from None
            time.sleep(0.05)


@dataclass
class BrokerProcess:
    """A broker child process on 127.0.0.1:`port` (plus extra listeners in `extra_ports`)."""

    kind: str  # "mosquitto" | "embedded"
    port: int
    workdir: Path
    argv: list[str]
    extra_ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> BrokerProcess:
        log_file = (self.workdir / f"{self.kind}.log").open("ab")
        self.process = subprocess.Popen(self.argv, stdout=log_file, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            wait_for_port("127.0.0.1", self.port)
            for port in self.extra_ports.values():
                wait_for_port("127.0.0.1", port)
        except TimeoutError:
            self.stop()
            log = (self.workdir / f"{self.kind}.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.kind} broker did not start on port {self.port}:\n{log}") from None
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )


def mosquitto_broker(
    workdir: Path, port: int | None = None, extra_config: str = "", extra_ports: dict[str, int] | None = None
) -> BrokerProcess:
    """A fresh mosquitto with its own config: anonymous on `port`, plus whatever `extra_config` adds."""
    binary = mosquitto_binary()
    if binary is None:
        raise FileNotFoundError("mosquitto is not installed")
    port = port or free_port()
    config = workdir / "mosquitto.conf"
    # Started as root, mosquitto drops to the `mosquitto` user, which cannot read our private temp files.
    run_as = "user root\n" if os.geteuid() == 0 else ""
    config.write_text(
        run_as + "per_listener_settings true\n"
        "persistence false\n"
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "max_packet_size 1048576\n" + extra_config,
        encoding="utf-8",
    )
    return BrokerProcess("mosquitto", port, workdir, [binary, "-c", str(config)], extra_ports or {})


def embedded_broker(workdir: Path, port: int | None = None) -> BrokerProcess:
    port = port or free_port()
    return BrokerProcess("embedded", port, workdir, [sys.executable, "-m", "chargebus.broker", "--port", str(port)])


def local_broker(workdir: Path | None = None, port: int | None = None) -> BrokerProcess:
    """The demo's broker: mosquitto when installed, else the embedded one. Not started yet."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="chargebus-broker-"))
    if mosquitto_binary() is not None:
        return mosquitto_broker(workdir, port)
    return embedded_broker(workdir, port)


async def serve_embedded(host: str, port: int) -> None:
    """Run the amqtt broker until SIGTERM/SIGINT."""
    from amqtt.broker import Broker  # noqa: PLC0415 - optional dependency, only for this entry point

    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await broker.start()
    try:
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await broker.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chargebus.broker", description="embedded MQTT broker")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(serve_embedded(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
