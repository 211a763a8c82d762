"""The twc-bridge as users start it: its own process, a config file, a real broker and the simulator's pty."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from chargebus.schema import EvseState
from chargebus_sim.twc_slave import SlaveSpec, TwcSlaveSim

from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Recorder, ServiceProcess

A = 0x4A1B
STATE = "evse/twc-4a1b/state"


def write_config(path: Path, broker: BrokerUnderTest, prefix: str, state_dir: Path, twc: str) -> Path:
    path.write_text(
        f'state_dir = "{state_dir}"\n[mqtt]\nurl = "{broker.url}"\nprefix = "{prefix}"\nha_discovery = false\n'
        f"[twc]\n{twc}",
        encoding="utf-8",
    )
    return path


def bridge_process(config: Path) -> ServiceProcess:
    return ServiceProcess([sys.executable, "-m", "chargebus_twc", "--config", str(config)], {"CHARGEBUS_CONFIG": ""})


def max_power(bus: Recorder, prefix: str) -> float | None:
    last = bus.last(f"{prefix}/{STATE}")
    if last is None or not last.payload:
        return None
    state = EvseState.model_validate_json(last.payload)
    return state.max_power_w if state.online else None


async def wait_offers(sim: TwcSlaveSim, since: int, amps: float, timeout: float = 15.0) -> list[float]:
    """The limits sent after the first `since` ones, once the latest is `amps`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        sent = sim.offered_amps(A)[since:]
        if sent and sent[-1] == amps:
            return sent
        assert loop.time() < deadline, f"never offered {amps} A: {sent}"
        await asyncio.sleep(0.05)


async def test_max_current_override_survives_a_restart(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    spec = SlaveSpec(A, plugged_in=True, voltages=(240, 0, 0), lag_s=0.2)
    setpoint = {"v": 1, "evse_id": "twc-4a1b", "power_w": 100_000, "expires_at": "2100-01-01T00:00:00Z"}
    async with TwcSlaveSim([spec]) as sim, Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus:
        await bus.publish(f"{prefix}/evse/twc-4a1b/setpoint", json.dumps(setpoint), retain=True)
        config = write_config(
            tmp_path / "chargebus.toml",
            mqtt_broker,
            prefix,
            tmp_path / "state",
            f'port = "{sim.port}"\nvoltage_v = 240\nwiring_max_amps = 32\nbus_max_amps = 32\n',
        )
        first = bridge_process(config).start(tmp_path / "first.log")
        try:
            await wait_offers(sim, 0, 32.0)
            await bus.wait_for(lambda: max_power(bus, prefix) == 32 * 240, what="twc-4a1b online at 32 A")
            await bus.publish(f"{prefix}/evse/twc-4a1b/max_current/set", "10")
            await bus.wait_for(lambda: max_power(bus, prefix) == 10 * 240, what="the override in the state")
            await wait_offers(sim, 0, 10.0)
        finally:
            first.stop()
        assert first.wait() == 0
        assert json.loads((tmp_path / "state" / "twc-bridge.json").read_text()) == {
            "v": 1,
            "max_current_a": {"twc-4a1b": 10},
        }
        since = len(sim.offered_amps(A))
        second = bridge_process(config).start(tmp_path / "second.log")
        try:
            after_restart = await wait_offers(sim, since, 10.0)
            await bus.wait_message(f"{prefix}/twc-bridge/status", lambda m: m.text == "online")
        finally:
            second.stop()
        assert max(after_restart) == 10.0  # the 100 kW setpoint never got more than the override
        assert sim.dangerous_frames() == []
        assert sim.malformed == []  # every frame as the simulated slaves read the protocol
    for process in (first, second):
        assert "Traceback" not in process.log()
    assert "event=max_current evse_id=twc-4a1b amps=10" in first.log()
    assert "max_current_overrides=twc-4a1b=10" in second.log()


def test_a_wiring_limit_above_any_gen2_rating_refuses_to_start(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "chargebus.toml", mqtt_broker, prefix, tmp_path, 'port = "/dev/null"\nwiring_max_amps = 100\n'
    )
    process = bridge_process(config).start(tmp_path / "bad.log")
    assert process.wait() == 2
    lines = process.log().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("config: twc.wiring_max_amps = 100:")
    assert "80 A" in lines[0]
