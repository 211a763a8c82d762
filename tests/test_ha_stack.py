"""Home Assistant's view of the whole stack: the four services as real processes on a real mosquitto, two simulated
Gen2 TWCs on a pty and the fake Fleet API, watched on the discovery prefix as Home Assistant watches it.

- every service's entities are announced (retained), each bound to its service's status topic, with `unique_id`,
  `device` and `origin`, and no two share a `unique_id`;
- a TWC that stays silent past its 26 s timeout (time runs 10 times faster here) has its entities removed with an
  empty retained config, and the other TWC's stay;
- Home Assistant's birth message (`online` on `<ha_prefix>/status`) makes every service publish its configs again —
  but not the removed ones;
- a stopped service leaves `offline` on its status topic (SIGTERM: its own last words; SIGKILL: its will), which
  makes its entities unavailable.

The discovery prefix is unique to the test (it stands for `homeassistant`), so configs retained by other tests on
the session's broker never mix in.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from chargebus.clock import SystemClock
from chargebus_sim.fleet_api import FakeFleetApi
from chargebus_sim.twc_slave import SlaveSpec, TwcSlaveSim

from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Received, Recorder, ServiceProcess

pytestmark = pytest.mark.slow

SCALE = 10.0
#: The allocator first, as `chargebus demo` starts them: each accelerated clock starts with its process.
SERVICES = ("allocator", "history", "twc-bridge", "tesla-bridge")
MODULES = {
    "twc-bridge": "chargebus_twc",
    "tesla-bridge": "chargebus_tesla",
    "allocator": "chargebus_allocator",
    "history": "chargebus_history",
}
#: The service whose entity a config is, by the first part of its object id (`twc_4a1b_power` → twc-bridge).
OWNER = {"twc": "twc-bridge", "tesla": "tesla-bridge", "allocator": "allocator", "history": "history"}
A, B = 0x4A1B, 0x5C2D
TWC_VIN = "5YJ3E1EA8KF000001"
CAR_VIN = "5YJYGDEE0MF000002"
TWC_ENTITIES = [f"sensor/{k}" for k in ("power", "current", "offered", "lifetime_energy", "status")] + [
    "number/max_current"
]


def twc_topics(ha: str, twc_id: str) -> list[str]:
    return [f"{ha}/{kind.split('/')[0]}/chargebus/twc_{twc_id}_{kind.split('/')[1]}/config" for kind in TWC_ENTITIES]


@dataclass
class Stack:
    prefix: str
    ha: str
    bus: Recorder
    twc: TwcSlaveSim
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    def status(self, service: str) -> str:
        return f"{self.prefix}/{service}/status"

    def configs(self, after: int = 0) -> dict[str, Received]:
        """The latest message on every config topic (from message index `after`)."""
        latest: dict[str, Received] = {}
        for message in self.bus.messages[after:]:
            if message.topic.startswith(f"{self.ha}/") and message.topic.endswith("/config"):
                latest[message.topic] = message
        return latest

    def live(self, after: int = 0) -> dict[str, dict[str, Any]]:
        """Every config topic whose latest message is a config (not a removal), parsed."""
        return {topic: m.json() for topic, m in self.configs(after).items() if m.payload}

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{p.log()[-3000:]}" for name, p in self.processes.items())


def write_config(
    path: Path, broker: BrokerUnderTest, *, prefix: str, ha: str, twc: TwcSlaveSim, api: FakeFleetApi
) -> Path:
    state_dir = path.parent / "state"
    state_dir.mkdir()
    token_file = state_dir / "tesla-token.json"
    token_file.write_text(json.dumps(api.token_file_content()), encoding="utf-8")
    token_file.chmod(0o600)
    path.write_text(
        f'state_dir = "{state_dir}"\n'
        f'[mqtt]\nurl = "{broker.url}"\nprefix = "{prefix}"\nha_discovery = true\nha_prefix = "{ha}"\n'
        f'[twc]\nport = "{twc.port}"\nvoltage_v = 230\nwiring_max_amps = 32\nbus_max_amps = 32\n'
        "[tesla]\n"
        f'api_base = "{api.url}"\ncommand_base = "{api.proxy_url}"\ntoken_url = "{api.token_url}"\n'
        f'client_id = "{api.client_id}"\ntoken_file = "{token_file}"\nteslamate_prefix = "{prefix}/teslamate"\n'
        "[[tesla.vehicles]]\n"
        f'vin = "{CAR_VIN}"\nname = "Model Y"\nteslamate_car_id = 1\n'
        "home = { lat = 52.52, lon = 13.40, radius_m = 150 }\n"
        '[allocator]\nmode = "solar"\ngrid_meter = "grid"\n'
        f'[history]\ndatabase = "sqlite:///{path.parent / "history.sqlite"}"\n',
        encoding="utf-8",
    )
    return path


@pytest.fixture
async def stack(mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path) -> AsyncIterator[Stack]:
    ha = f"{prefix}-ha"
    clock = SystemClock(SCALE)
    slaves = [
        SlaveSpec(A, plugged_in=True, vin=TWC_VIN, lag_s=0.2, voltages=(230, 0, 0)),
        SlaveSpec(B, lag_s=0.2, voltages=(230, 0, 0)),
    ]
    async with (
        TwcSlaveSim(slaves, clock=clock) as twc,
        FakeFleetApi(clock=clock.time) as api,
        Recorder(mqtt_broker.url, [f"{ha}/#", f"{prefix}/+/status"]) as bus,
    ):
        api.add_car(CAR_VIN, state="asleep", charging_state="Stopped")
        config = write_config(tmp_path / "chargebus.toml", mqtt_broker, prefix=prefix, ha=ha, twc=twc, api=api)
        env = {"CHARGEBUS_TIME_SCALE": str(SCALE), "CHARGEBUS_CONFIG": "", "CHARGEBUS_MQTT_URL": ""}
        running = Stack(prefix, ha, bus, twc)
        for name in SERVICES:
            argv = [sys.executable, "-m", MODULES[name], "--config", str(config)]
            running.processes[name] = ServiceProcess(argv, env).start(tmp_path / f"{name}.log")
        try:
            yield running
        finally:
            for process in running.processes.values():
                process.stop()
    for name, process in running.processes.items():
        assert "Traceback" not in process.log(), f"{name}:\n{process.log()[-3000:]}"


def check_config(stack: Stack, topic: str, config: dict[str, Any]) -> str:
    """What Home Assistant needs in every config; returns the owning service."""
    object_id = topic.split("/")[-2]
    owner = OWNER[object_id.split("_", 1)[0]]
    assert config["unique_id"] == f"chargebus_{object_id}", topic
    assert config["name"], topic
    device = config["device"]
    assert device["identifiers"], topic
    assert all(i.startswith("chargebus_") for i in device["identifiers"]), topic
    # A bare reference (history's energy sensors) joins a device that the owning bridge describes by name.
    assert device.get("name") or set(device) == {"identifiers"}, topic
    assert config["origin"]["name"] == "chargebus", topic
    assert config["origin"]["sw"], topic
    availability = config["availability"]
    assert availability[0] == {
        "topic": stack.status(owner),
        "payload_available": "online",
        "payload_not_available": "offline",
    }, topic
    assert config["availability_mode"] == "all", topic
    for key in ("state_topic", "command_topic", "json_attributes_topic"):
        if key in config:
            assert config[key].startswith(f"{stack.prefix}/"), (topic, key)
    return owner


async def test_home_assistant_discovery_across_the_stack(stack: Stack) -> None:
    bus, ha = stack.bus, stack.ha
    try:
        for name in SERVICES:
            await bus.wait_message(stack.status(name), lambda m: m.text == "online", timeout=30)

        # --- every service announces its entities --------------------------------------------------------------
        expected = [
            *twc_topics(ha, "4a1b"),
            *twc_topics(ha, "5c2d"),
            *(
                f"{ha}/{kind}/chargebus/tesla_{CAR_VIN.lower()}_{key}/config"
                for kind, key in (
                    ("sensor", "soc"),
                    ("sensor", "charger_power"),
                    ("number", "charge_limit"),
                    ("button", "refresh"),
                    ("sensor", "api_calls_today"),
                    ("sensor", "api_cost_today"),
                )
            ),
            f"{ha}/select/chargebus/allocator_mode/config",
            *(f"{ha}/sensor/chargebus/allocator_{k}/config" for k in ("available_w", "grid_w", "surplus_w")),
            f"{ha}/number/chargebus/allocator_twc_4a1b_priority/config",
            f"{ha}/sensor/chargebus/history_energy_twc_4a1b/config",  # after its first energy round (60 s sim)
        ]
        await bus.wait_for(
            lambda: set(expected) <= set(stack.live()), timeout=30, what="every service's discovery configs"
        )
        live = stack.live()
        owners = {check_config(stack, topic, config) for topic, config in live.items()}
        named = {i for c in live.values() if c["device"].get("name") for i in c["device"]["identifiers"]}
        for topic, config in live.items():
            assert set(config["device"]["identifiers"]) <= named, f"{topic}: a device nobody describes"
        assert owners == set(SERVICES)
        unique_ids = [config["unique_id"] for config in live.values()]
        assert len(unique_ids) == len(set(unique_ids))
        twc_power = live[f"{ha}/sensor/chargebus/twc_4a1b_power/config"]
        assert twc_power["availability"][1]["topic"] == f"{stack.prefix}/evse/twc-4a1b/state"  # and the TWC answers
        assert twc_power["device"]["identifiers"] == ["chargebus_twc_4a1b"]

        # --- a TWC that goes silent past its timeout: its entities are removed ---------------------------------
        mark = len(bus.messages)
        stack.twc.set_silent(B)
        gone = twc_topics(ha, "5c2d")
        await bus.wait_for(
            lambda: all(t in stack.configs(mark) and not stack.configs(mark)[t].payload for t in gone),
            timeout=20,
            what="twc-5c2d's configs removed",
        )
        assert set(twc_topics(ha, "4a1b")) <= set(stack.live())  # the other TWC's stay
        assert not set(gone) & set(stack.live())
        # Home Assistant starting now gets exactly the live configs, retained: the removed ones are gone for good.
        async with Recorder(bus.url, [f"{ha}/+/chargebus/+/config"]) as late:
            wanted = set(stack.live())
            await late.wait_for(lambda: wanted <= {m.topic for m in late.messages}, timeout=10, what="retained")
            await asyncio.sleep(0.3)
        assert all(m.retain and m.payload for m in late.messages)
        assert {m.topic for m in late.messages} == wanted

        # --- Home Assistant restarts: its birth message brings every config back -------------------------------
        await asyncio.sleep(0.5)  # let late duplicates of the start settle before counting re-publications
        before = stack.live()
        mark = len(bus.messages)
        await bus.publish(f"{ha}/status", "online")

        def still_live() -> set[str]:
            """The configs of before that no service has removed since (a charge point may come or go)."""
            return set(before) & set(stack.live())

        await bus.wait_for(
            lambda: still_live() <= set(stack.live(mark)), timeout=15, what="every config re-published after birth"
        )
        again = stack.live(mark)
        assert {check_config(stack, t, c) for t, c in again.items()} == set(SERVICES)
        assert set(expected) - set(gone) <= still_live()
        for topic in still_live():
            assert again[topic] == before[topic], topic
        await asyncio.sleep(0.5)
        assert not set(gone) & set(stack.configs(mark))  # removed entities stay removed

        # --- a stopped service is offline, so its entities become unavailable ----------------------------------
        running_configs = set(stack.live())
        mark = len(bus.messages)
        for name in ("twc-bridge", "tesla-bridge", "history"):
            stack.processes[name].kill(signal.SIGTERM)
        stack.processes["allocator"].kill(signal.SIGKILL)  # no goodbye: the broker sends its will
        for name in SERVICES:
            await bus.wait_message(stack.status(name), lambda m: m.text == "offline", after=mark, timeout=15)
        for name in ("twc-bridge", "tesla-bridge", "history"):
            assert stack.processes[name].wait() == 0, name
        # Stopping removes nothing: Home Assistant keeps the entities and shows them unavailable.
        assert set(stack.live()) == running_configs
    except AssertionError as error:
        raise AssertionError(f"{error}\n{stack.logs()}") from None
