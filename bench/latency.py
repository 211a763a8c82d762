"""Power message → setpoint on MQTT: the allocator as a real process on a local broker (goal: p99 < 50 ms).

Two 240 V TWCs share a solar surplus (mode solar, no delays). Each grid message changes the surplus by two steps,
so both setpoints change; the latency of a message is the time from publishing it to the arrival of the later of
the two new setpoints at a second client, the bridge. `latency_p*`: closed loop, the next message waits for both
setpoints, so rounds run at their minimum spacing; `latency_spaced_p*`: one message every 20 ms, as real meters
publish. Then `--flood` messages are published as fast as the client can, and `allocator_msgs_per_s` is how many
per second the allocator took in until the setpoints of the last one arrived. The baseline is the broker's own hop
(meter client → bridge client, nothing in between).

    uv run python bench/latency.py [--messages 1000] [--flood 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
from chargebus.broker import local_broker
from chargebus.schema import EvseState, to_json

PREFIX = "bench"
EVSES = ("twc-0001", "twc-0002")
VOLTS = 240.0
STEP_W = 2 * VOLTS  # two amps' worth: both EVSEs move by one step each
BASE_W = 4000.0
CYCLE = 10


def grid_value(i: int) -> float:
    return -(BASE_W + STEP_W * (i % CYCLE))


def expected(i: int) -> dict[str, float]:
    """Fair share, whole amps at 240 V, both the same (the leftover is below one step for two)."""
    each = (BASE_W + STEP_W * (i % CYCLE)) / 2
    watts = (each // VOLTS) * VOLTS
    return dict.fromkeys(EVSES, watts)


def evse(evse_id: str) -> bytes:
    return to_json(
        EvseState(
            evse_id=evse_id,
            kind="twc2",
            name=evse_id,
            controllable=True,
            controls=["current"],
            online=True,
            plugged_in=True,
            charging=False,
            phases=1,
            voltage_v=VOLTS,
            power_w=0.0,
            min_power_w=6 * VOLTS,
            max_power_w=32 * VOLTS,
            step_w=VOLTS,
            source="rs485",
            updated_at=datetime.now(tz=UTC),
            stale=False,
        )
    )


def write_config(workdir: Path, url: str) -> Path:
    config = workdir / "chargebus.toml"
    config.write_text(
        f'state_dir = "{workdir / "state"}"\n'
        f'[mqtt]\nurl = "{url}"\nprefix = "{PREFIX}"\nha_discovery = true\n'
        '[allocator]\nmode = "solar"\nreserve_w = 0\nenable_delay_s = 0\ndisable_delay_s = 0\n'
        "min_on_s = 0\nmin_off_s = 0\n",
        encoding="utf-8",
    )
    return config


class Watcher:
    """The last setpoint power per EVSE, and an event on every change."""

    def __init__(self) -> None:
        self.power: dict[str, float | None] = {}
        self.changed = asyncio.Event()
        self.echo: asyncio.Queue[float] = asyncio.Queue()

    async def pump(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = message.topic.value
            if topic.endswith("/setpoint") and isinstance(message.payload, bytes) and message.payload:
                data = json.loads(message.payload)
                self.power[data["evse_id"]] = data["power_w"]
                self.changed.set()
            elif topic == f"{PREFIX}/bench/echo":
                await self.echo.put(time.perf_counter())

    async def until(self, want: dict[str, float], within_s: float = 5.0) -> float:
        deadline = time.perf_counter() + within_s
        while any(self.power.get(evse_id) != watts for evse_id, watts in want.items()):
            self.changed.clear()
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError(f"setpoints {self.power} never reached {want}")
            await asyncio.wait_for(self.changed.wait(), left)
        return time.perf_counter()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def measure(url: str, messages: int, flood: int) -> dict[str, float]:
    """Two connections, as in a house: a meter that publishes, a bridge that subscribes to the setpoints."""
    host, port = url.removeprefix("mqtt://").split(":")
    async with aiomqtt.Client(host, int(port)) as meter, aiomqtt.Client(host, int(port)) as bridge:
        watcher = Watcher()
        await bridge.subscribe(f"{PREFIX}/evse/+/setpoint", qos=1)
        await bridge.subscribe(f"{PREFIX}/bench/echo", qos=1)
        pump = asyncio.create_task(watcher.pump(bridge))
        for evse_id in EVSES:
            await meter.publish(f"{PREFIX}/evse/{evse_id}/state", evse(evse_id), qos=1, retain=True)
        grid = f"{PREFIX}/power/grid"
        await meter.publish(grid, str(grid_value(CYCLE - 1)), qos=1, retain=True)
        await watcher.until(expected(CYCLE - 1), within_s=30)
        for i in range(2 * CYCLE):  # warm-up, not measured
            await meter.publish(grid, str(grid_value(i)), qos=1)
            await watcher.until(expected(i))

        latencies = []
        for i in range(messages):
            started = time.perf_counter()
            await meter.publish(grid, str(grid_value(i)), qos=1)
            arrived = await watcher.until(expected(i))
            latencies.append((arrived - started) * 1000)

        spaced = []  # as meters really publish: a reading now and then, so each is the first after a quiet spell
        for i in range(200):
            await asyncio.sleep(0.02)
            started = time.perf_counter()
            await meter.publish(grid, str(grid_value(i)), qos=1)
            spaced.append((await watcher.until(expected(i)) - started) * 1000)

        roundtrips = []  # the baseline: meter → broker → bridge, nothing in between
        for i in range(200):
            started = time.perf_counter()
            await meter.publish(f"{PREFIX}/bench/echo", str(i), qos=1)
            roundtrips.append((await watcher.echo.get() - started) * 1000)

        # Flood: publish as fast as the client can (QoS 0), then wait for the last one's setpoints.
        last = flood - 1 + CYCLE // 2  # a value different from the one before the flood
        started = time.perf_counter()
        for i in range(CYCLE // 2, last + 1):
            await meter.publish(grid, str(grid_value(i)), qos=0)
        published = time.perf_counter()
        done = await watcher.until(expected(last), within_s=60)
        pump.cancel()
    return {
        "latency_p50": statistics.median(latencies),
        "latency_p99": percentile(latencies, 0.99),
        "latency_max": max(latencies),
        "latency_spaced_p50": statistics.median(spaced),
        "latency_spaced_p99": percentile(spaced, 0.99),
        "broker_hop_p50": statistics.median(roundtrips),
        "broker_hop_p99": percentile(roundtrips, 0.99),
        "allocator_msgs_per_s": flood / (done - started),
        "client_publish_msgs_per_s": flood / (published - started),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--flood", type=int, default=5000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="chargebus-latency-"))
    broker = local_broker(workdir).start()
    env = {**os.environ, "CHARGEBUS_CONFIG": "", "CHARGEBUS_MQTT_URL": broker.url}
    config = write_config(workdir, broker.url)
    log = (workdir / "allocator.log").open("ab")
    service = subprocess.Popen(
        [sys.executable, "-m", "chargebus_allocator", "--config", str(config), "--log-level", "warning"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        results = asyncio.run(measure(broker.url, args.messages, args.flood))
    finally:
        service.terminate()
        service.wait(10)
        broker.stop()
    print(f"broker {broker.kind}, {args.messages} messages closed loop, {args.flood} flooded")
    for name, value in results.items():
        unit = "msgs/s" if name.endswith("_per_s") else "ms"
        print(f"{name} {value:.1f} {unit}" if unit == "msgs/s" else f"{name} {value:.2f} {unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
