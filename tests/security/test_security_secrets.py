"""No secret on the bus or in a log (issue 9.4): all four services and the simulators in a time-scaled demo-like run.

The broker needs a password over TLS; each service gets it another way (password_file, a `password` key, the
environment, credentials in the URL). The fake Fleet API issues tokens carrying a distinctive tag, and expires the
access token mid-run so the bridge refreshes it (the refresh token then travels in a form body). Everything the run
produces is captured — every MQTT message under `#` (retained ones included), the stdout/stderr of every process at
debug level, the files the services keep in their state directories — and searched for each secret as itself,
URL-encoded, JSON-escaped, hex and base64 (all alignments).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import stat
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import aiomqtt
import pytest
from chargebus.clock import SystemClock
from chargebus_sim.fleet_api import FakeFleetApi
from chargebus_sim.twc_slave import SlaveSpec, TwcSlaveSim

from tests.security.secret_scan import PasswordBroker, available, find_leaks, password_broker
from tests.support.bus import Recorder, ServiceProcess

SCALE = 20.0
VIN_A = "5YJ3E1EA8KF000001"  # on the TWC 4a1b
VIN_B = "5YJ3E1EA7KF000002"  # on its mobile connector
CORE = secrets.token_hex(6)
MQTT_USER = "chargebus"
MQTT_PASSWORD = f"Mq!tt/{CORE}@pw:S3cret+="
TOKEN_CORE = secrets.token_hex(6)
TOKEN_TAG = f"-tok+S3cr/{TOKEN_CORE}="
SERVICES = ("twc-bridge", "tesla-bridge", "allocator", "history")

pytestmark = pytest.mark.skipif(not available(), reason="needs mosquitto and mosquitto_passwd")


@dataclass
class Stack:
    broker: PasswordBroker
    prefix: str
    root: Path
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    def mqtt(self, how: str) -> str:
        """The [mqtt] table, the password given `how`; the TLS listener refuses anonymous clients."""
        common = f'ca_file = "{self.broker.ca_file}"\nprefix = "{self.prefix}"\nha_prefix = "{self.prefix}/ha"\n'
        if how == "url":
            url = f"mqtts://{MQTT_USER}:{quote(MQTT_PASSWORD, safe='')}@127.0.0.1:{self.broker.tls_port}"
            return f'[mqtt]\nurl = "{url}"\n{common}'
        head = f'[mqtt]\nurl = "{self.broker.tls_url}"\nusername = "{MQTT_USER}"\n{common}'
        if how == "key":
            return f'{head}password = "{MQTT_PASSWORD}"\n'
        if how == "file":
            secret = self.root / "mqtt-password"
            secret.write_text(MQTT_PASSWORD + "\n", encoding="utf-8")
            secret.chmod(0o600)
            return f'{head}password_file = "{secret}"\n'
        return head  # "env": CHARGEBUS_MQTT__PASSWORD

    def start(self, name: str, module: str, body: str, *, mode: int = 0o600, env: dict[str, str] | None = None) -> None:
        state_dir = self.root / name
        state_dir.mkdir(exist_ok=True)
        config = self.root / f"{name}.toml"
        config.write_text(f'state_dir = "{state_dir}"\n{body}', encoding="utf-8")
        config.chmod(mode)
        argv = [sys.executable, "-m", module, "--config", str(config), "--log-level", "debug"]
        environment = {"CHARGEBUS_TIME_SCALE": str(SCALE), "CHARGEBUS_CONFIG": "", "CHARGEBUS_MQTT_URL": ""}
        process = ServiceProcess(argv, {**environment, **(env or {})})
        self.processes[name] = process.start(self.root / f"{name}.log")


async def house(url: str, prefix: str, stop: asyncio.Event) -> None:
    """A sunny house: 8 kW export, so the allocator has power to share."""
    host, port = url.removeprefix("mqtt://").split(":")
    async with aiomqtt.Client(host, int(port)) as client:
        while not stop.is_set():
            await client.publish(f"{prefix}/power/grid", b"-8000", qos=1, retain=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)


@pytest.fixture
async def stack(tmp_path: Path, prefix: str) -> AsyncIterator[Stack]:
    (tmp_path / "broker").mkdir()
    broker = password_broker(tmp_path / "broker", MQTT_USER, MQTT_PASSWORD)
    running = Stack(broker, prefix, tmp_path)
    try:
        yield running
    finally:
        for process in running.processes.values():
            process.stop()
        broker.stop()


def state_files(root: Path) -> dict[str, bytes]:
    """What the services wrote in their state directories, their token file aside (it holds the tokens by design)."""
    found = {}
    for name in SERVICES:
        for path in sorted((root / name).rglob("*")):
            if path.is_file() and not path.name.startswith("tesla-token"):
                found[str(path.relative_to(root))] = path.read_bytes()
    return found


async def test_no_token_or_password_on_the_bus_or_in_any_log(stack: Stack, prefix: str) -> None:
    clock = SystemClock(SCALE)
    fast = "enable_delay_s = 0\ndisable_delay_s = 0\nmin_on_s = 0\nmin_off_s = 0\nreserve_w = 0\n"
    slaves = [SlaveSpec(0x4A1B, plugged_in=True, vin=VIN_A, lag_s=0.5), SlaveSpec(0x5C2D)]
    stop = asyncio.Event()
    async with (
        TwcSlaveSim(slaves) as twc,
        FakeFleetApi(clock=clock.time, token_tag=TOKEN_TAG) as api,
        Recorder(stack.broker.url, ["#"]) as bus,
    ):
        for vin in (VIN_A, VIN_B):
            api.add_car(vin, state="online", charging_state="Stopped", charge_amps=16)
        token_file = stack.root / "tesla-bridge" / "tesla-token.json"
        token_file.parent.mkdir()
        token_file.write_text(json.dumps(api.token_file_content()), encoding="utf-8")
        token_file.chmod(0o600)
        house_task = asyncio.create_task(house(stack.broker.url, prefix, stop))
        stack.start("allocator", "chargebus_allocator", stack.mqtt("file") + f'[allocator]\nmode = "solar"\n{fast}')
        # A `password` key in a file every user can read: the service warns (without the password) and runs.
        stack.start(
            "twc-bridge",
            "chargebus_twc",
            stack.mqtt("key") + f'[twc]\nport = "{twc.port}"\nvoltage_v = 230\n',
            mode=0o644,
        )
        tesla = (
            f'[tesla]\napi_base = "{api.url}"\ncommand_base = "{api.proxy_url}"\ntoken_url = "{api.token_url}"\n'
            f'client_id = "{api.client_id}"\ntoken_file = "{token_file}"\nteslamate_prefix = ""\n'
            f'command_min_interval_s = 1\n[[tesla.vehicles]]\nvin = "{VIN_A}"\n[[tesla.vehicles]]\nvin = "{VIN_B}"\n'
        )
        stack.start(
            "tesla-bridge",
            "chargebus_tesla",
            stack.mqtt("env") + tesla,
            env={"CHARGEBUS_MQTT__PASSWORD": MQTT_PASSWORD},
        )
        database = stack.root / "history" / "history.sqlite"
        stack.start(
            "history", "chargebus_history", stack.mqtt("url") + f'[history]\ndatabase = "sqlite:///{database}"\n'
        )
        try:
            for name in SERVICES:
                await bus.wait_message(f"{prefix}/{name}/status", lambda m: m.text == "online", timeout=30)
            await bus.wait_for(lambda: api.count("data") >= 2, timeout=30, what="the bridge polling Tesla")
            api.expire_access_token()  # the next call gets 401: the bridge refreshes with its refresh token
            await bus.wait_for(lambda: api.count("token") >= 1, timeout=30, what="a token refresh")
            await bus.wait_for(lambda: api.count("command") >= 1, timeout=30, what="a command to a car")
            await bus.wait_message(f"{prefix}/evse/twc-4a1b/setpoint", timeout=30)
            api.fail_next(500, category="data")  # an error answer, logged by the bridge
            await asyncio.sleep(3.0)  # a few more simulated minutes of everything
        finally:
            stop.set()
            await house_task
            for process in stack.processes.values():
                process.stop()
    # The run did what it should, so that the scan below looks at something.
    assert all(process.wait() == 0 for process in stack.processes.values())
    assert any(call.bearer and TOKEN_TAG in call.bearer for call in api.calls)
    refreshed = json.loads(token_file.read_text(encoding="utf-8"))
    assert refreshed["access_token"] == api.access_token != f"access-0{TOKEN_TAG}"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600, "the refreshed token file is readable by others"
    twc_log = stack.processes["twc-bridge"].log()
    assert f"chmod 600 {stack.root / 'twc-bridge.toml'}" in twc_log, "no warning about the readable config"

    captured = {f"{name}.log": stack.processes[name].log().encode() for name in SERVICES}
    captured["mqtt"] = b"\n".join(m.topic.encode() + b" " + m.payload for m in bus.messages)
    captured |= state_files(stack.root)
    assert len(bus.messages) > 100, "too little traffic to say anything"
    leaks = find_leaks(
        {
            "mqtt password": MQTT_PASSWORD,
            "mqtt password core": CORE,
            "tesla token tag": TOKEN_TAG,
            "tesla token core": TOKEN_CORE,
            "access token": f"access-0{TOKEN_TAG}",
            "refresh token": api.refresh_token,
        },
        captured,
    )
    assert not leaks, "\n".join(leaks[:20])
    print(  # noqa: T201 - the scan's scope, shown with -s
        f"secret scan: {len(bus.messages)} MQTT messages, "
        + ", ".join(f"{place} {len(data)} B" for place, data in captured.items())
        + f"; {len(api.calls)} Fleet API calls, {api.count('token')} token refresh(es)"
    )
