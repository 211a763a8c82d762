"""Heartbeat timing of the twc-bridge's serial task against the TWC slave simulator on a real pty.

Runs `SerialBus` (the bridge's port owner, without MQTT) with 1–3 simulated slaves for `--seconds`, and measures,
as the slaves see it, the interval between consecutive master heartbeats to the same slave. The target is 1 000 ms
per slave (docs/twc-gen2-protocol.md §5); jitter is |interval − 1 000 ms|. Also prints how long slaves wait for the
first heartbeat
and the energy/VIN queries that shared the line. Prints `name value unit` lines.

    uv run python bench/twc_heartbeat_jitter.py [--seconds 60] [--slaves 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import statistics

from chargebus.clock import SystemClock
from chargebus_sim.twc_slave import SlaveSpec, TwcSlaveSim
from chargebus_sim.twc_wire import EnergyRequest, MasterHeartbeat, VinRequest
from chargebus_twc.bus import SerialBus
from chargebus_twc.link import BusLink

IDS = (0x4A1B, 0x5C2D, 0x6E3F)
VIN = "5YJ3E1EA8KF000001"
PERIOD_MS = 1000.0


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


async def run(seconds: float, slaves: int) -> None:
    clock = SystemClock()
    specs = [
        SlaveSpec(slave_id, plugged_in=True, vin=VIN if index == 0 else None, protocol=2 if index % 2 == 0 else 1)
        for index, slave_id in enumerate(IDS[:slaves])
    ]
    async with TwcSlaveSim(specs, clock=clock) as sim:
        link = BusLink(clock, mode="master", master_id=0x7777, sign=0x77)
        bus = SerialBus(sim.port, link, clock, lambda: dict.fromkeys(IDS[:slaves], 10))
        started = clock.monotonic()
        task = asyncio.create_task(bus.run())
        await asyncio.sleep(seconds)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    intervals: list[float] = []
    first: list[float] = []
    for slave_id in IDS[:slaves]:
        times = [
            frame.at
            for frame in sim.received
            if isinstance(frame.message, MasterHeartbeat) and frame.message.slave_id == slave_id
        ]
        first.append((times[0] - started) * 1000)
        intervals += [(later - earlier) * 1000 for earlier, later in itertools.pairwise(times)]
    jitter = [abs(interval - PERIOD_MS) for interval in intervals]
    queries = [frame for frame in sim.received if isinstance(frame.message, EnergyRequest | VinRequest)]
    print(f"heartbeat_slaves {slaves} slaves")
    print(f"heartbeat_count {len(intervals) + slaves} heartbeats")
    print(f"heartbeat_interval_p50 {statistics.median(intervals):.1f} ms")
    print(f"heartbeat_jitter_p50 {percentile(jitter, 50):.2f} ms")
    print(f"heartbeat_jitter_p99 {percentile(jitter, 99):.2f} ms")
    print(f"heartbeat_jitter_max {max(jitter):.2f} ms")
    print(f"first_heartbeat_after_start_max {max(first):.0f} ms")
    print(f"idle_gap_queries {len(queries)} frames")
    print(f"dangerous_frames {len(sim.dangerous_frames())} frames")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--slaves", type=int, choices=(1, 2, 3), default=3)
    args = parser.parse_args()
    asyncio.run(run(args.seconds, args.slaves))


if __name__ == "__main__":
    main()
