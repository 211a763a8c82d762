"""The ocpp-bridge under load: setpoint on MQTT → SetChargingProfile at the charger, and 100 charge points' CPU/RSS.

The bridge runs as its own process (as users run it) on a local broker; `--charge-points` simulated 1.6J wallboxes
(the simulator in sim/, each with a charging car) connect to it over WebSocket on 127.0.0.1 from this process.
Latency: one setpoint at a time (a new limit for the next charge point in turn), from publishing it to the arrival
of the SetChargingProfile at that wallbox (both clocks are this machine's monotonic clock). Steady state: every
wallbox sends meter values every 10 s and heartbeats, every charge point gets a changed setpoint every 15 s (an
allocator re-publishes at ttl/2), and the bridge's CPU time and RSS are read from /proc over `--steady-s` seconds.

    uv run python bench/ocpp_bridge.py [--charge-points 100] [--setpoints 300] [--steady-s 60]
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
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
from chargebus.broker import free_port, local_broker, wait_for_port
from chargebus_sim.ocpp_cp import Car, ChargerSpec, OcppChargerSim

PREFIX = "bench"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def write_config(workdir: Path, port: int, count: int) -> Path:
    lines = [
        f'state_dir = "{workdir / "state"}"',
        "[mqtt]",
        "ha_discovery = true",
        "[ocpp]",
        f'listen = "127.0.0.1:{port}"',
        "meter_interval_s = 10",
        "heartbeat_s = 60",
    ]
    for n in range(count):
        lines += ["[[ocpp.charge_points]]", f'ocpp_id = "WB-{n:03d}"', f'name = "cp-{n:03d}"', "max_current_a = 16"]
    path = workdir / "chargebus.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def setpoint(evse_id: str, power_w: float) -> str:
    return json.dumps(
        {
            "v": 1,
            "evse_id": evse_id,
            "power_w": power_w,
            "charge": None,
            "phases": 3,
            "voltage_v": 230,
            "seq": int(time.time() * 1000),
            "expires_at": (datetime.now(UTC) + timedelta(seconds=60)).isoformat(),
            "ttl_s": 60,
            "reason": "bench",
        }
    )


def arrived(sim: OcppChargerSim, seen: int) -> Callable[[], bool]:
    return lambda: len(sim.profiles_received) > seen


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def memory_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def wait(predicate: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def run(args: argparse.Namespace, broker_url: str, port: int, bridge_pid: int) -> None:
    sims = [OcppChargerSim(ChargerSpec(f"WB-{n:03d}"), f"ws://127.0.0.1:{port}") for n in range(args.charge_points)]
    for sim in sims:
        sim.start()
    await wait(lambda: all(sim.booted.is_set() for sim in sims), 60, "every wallbox booted")
    for sim in sims:
        await sim.plug(1, Car(max_a=16, ramp_a_per_s=10))
    await wait(lambda: all(sim.profiles_received for sim in sims), 60, "every wallbox configured")
    host, _, mqtt_port = broker_url.removeprefix("mqtt://").partition(":")
    async with aiomqtt.Client(host, int(mqtt_port)) as client:
        latencies: list[float] = []
        for i in range(args.setpoints):
            n = i % len(sims)
            sim = sims[n]
            amps = 7 + (i // len(sims)) % 9  # 7-15 A: never the 6 A failsafe, a new value each round
            seen = len(sim.profiles_received)
            started = time.monotonic()
            await client.publish(
                f"{PREFIX}/evse/ocpp-cp-{n:03d}/setpoint", setpoint(f"ocpp-cp-{n:03d}", amps * 690), qos=1
            )
            await wait(arrived(sim, seen), 10, "the profile")
            latencies.append((sim.profiles_received[seen][0] - started) * 1000)
        print(f"ocpp_setpoint_to_profile_p50 {statistics.median(latencies):.2f} ms")
        print(f"ocpp_setpoint_to_profile_p99 {percentile(latencies, 99):.2f} ms")
        print(f"ocpp_setpoint_to_profile_max {max(latencies):.2f} ms")
        await asyncio.sleep(2)
        cpu_before, wall_before = cpu_seconds(bridge_pid), time.monotonic()
        own_before = time.process_time()
        profiles_before = sum(len(sim.profiles_received) for sim in sims)
        rounds = 0
        while time.monotonic() - wall_before < args.steady_s:
            for n in range(len(sims)):
                amps = 7 + (rounds + n) % 9
                await client.publish(
                    f"{PREFIX}/evse/ocpp-cp-{n:03d}/setpoint",
                    setpoint(f"ocpp-cp-{n:03d}", amps * 690),
                    qos=1,
                    retain=True,
                )
            rounds += 1
            await asyncio.sleep(15)
        wall = time.monotonic() - wall_before
        cpu = cpu_seconds(bridge_pid) - cpu_before
        profiles = sum(len(sim.profiles_received) for sim in sims) - profiles_before
        print(f"ocpp_bridge_cpu_{len(sims)}cp {100 * cpu / wall:.1f} % of one core")
        print(f"ocpp_bridge_rss_{len(sims)}cp {memory_mb(bridge_pid, 'VmRSS'):.1f} MB")
        print(f"ocpp_bridge_rss_peak_{len(sims)}cp {memory_mb(bridge_pid, 'VmHWM'):.1f} MB")
        print(f"ocpp_profiles_per_s_{len(sims)}cp {profiles / wall:.1f} profiles/s")
        print(f"ocpp_simulators_cpu_{len(sims)}cp {100 * (time.process_time() - own_before) / wall:.1f} % of one core")
        print(f"ocpp_online_{len(sims)}cp {sum(sim.connected.is_set() for sim in sims)} charge points")
    for sim in sims:
        await sim.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--charge-points", type=int, default=100)
    parser.add_argument("--setpoints", type=int, default=300)
    parser.add_argument("--steady-s", type=float, default=60.0)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="chargebus-bench-ocpp-"))
    broker = local_broker(workdir).start()
    port = free_port()
    config = write_config(workdir, port, args.charge_points)
    env = {**os.environ, "CHARGEBUS_MQTT_URL": broker.url, "CHARGEBUS_TOPIC_PREFIX": PREFIX}
    log = (workdir / "ocpp-bridge.log").open("ab")
    bridge = subprocess.Popen(
        [sys.executable, "-m", "chargebus_ocpp", "--config", str(config)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for_port("127.0.0.1", port, 20)
        print(f"ocpp_bridge_rss_idle_{args.charge_points}cp_configured {memory_mb(bridge.pid, 'VmRSS'):.1f} MB")
        asyncio.run(run(args, broker.url, port, bridge.pid))
    finally:
        bridge.terminate()
        bridge.wait(10)
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
