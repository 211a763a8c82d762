"""The real twc-bridge and allocator in closed loop: a step in the sun settles after the delays and stays settled.

Two simulated Gen2 slaves (32 A and 80 A on a 40 A bus, cars that ramp in 2 s and draw 0.6 A under their offer) on
a pseudo-terminal, and a site meter that sees the cars' real draw with ±50 W noise every 2 s as a plain number:
the loop a user's house closes. Everything is in simulated seconds (the services run 5 times faster); the test
asserts what happens on the wire — offers stop changing and fit the surplus — not how long anything took.
"""

from __future__ import annotations

from pathlib import Path

from chargebus_sim.closed_loop_rig import VOLTS, ClosedLoopRig, LoopSample
from chargebus_sim.loop_figures import step_figures

from tests.support.broker_fixture import BrokerUnderTest

DELAYS = {"enable_delay_s": 5, "disable_delay_s": 10, "min_on_s": 5, "min_off_s": 5}
HOLD_S = 60.0
#: After this long into a step every delay has run and a few readings have come: the loop must be still.
SETTLED_AFTER_S = 30.0


class Sun:
    def __init__(self) -> None:
        self.steps: list[tuple[float, float]] = []  # (from simulated epoch s, W)

    def __call__(self, at: float) -> float:
        current = 0.0
        for start, watts in self.steps:
            if at >= start:
                current = watts
        return current


def _still(samples: list[LoopSample], start: float, end: float) -> list[LoopSample]:
    return [s for s in samples if start <= s.at < end]


async def test_a_step_settles_and_stays_settled(mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path) -> None:
    sun = Sun()
    rig = ClosedLoopRig(
        mqtt_broker.url, prefix, tmp_path, pv_w=sun, cadence_s=2.0, noise_w=50.0, time_scale=5.0, allocator=DELAYS
    )
    async with rig:
        await rig.wait_ready()
        await rig.wait_idle(quiet_s=5.0)
        up = rig.clock.time() + 1.0
        sun.steps.append((up, 7000.0))
        down = up + HOLD_S
        sun.steps.append((down, 3000.0))
        await rig.run_for(2 * HOLD_S + 2.0)
        samples = list(rig.samples)
    logs = rig.services.log("allocator") + rig.services.log("twc-bridge")
    assert "Traceback" not in logs, logs[-3000:]

    for start, surplus_w in ((up, 7000.0), (down, 3000.0)):
        step = step_figures(samples, start, start + HOLD_S)
        assert step.changes > 0, "the step moved nothing"
        settled = _still(samples, start + SETTLED_AFTER_S, start + HOLD_S)
        assert len({s.offers_a for s in settled}) == 1, f"still changing after {SETTLED_AFTER_S:g} s: {step}"
        offered_w = settled[0].offered_w
        # settled within the surplus, and using it: less than one step per car left over, plus the dead band
        assert offered_w <= surplus_w, settled[0]
        assert offered_w >= surplus_w - 2 * VOLTS - 100, settled[0]
        assert sum(settled[0].offers_a) <= rig.bus_max_amps
    # both cars charge at 7 kW (29 A between them), only the sun's share at 3 kW (12 A: one car, or both at 6 A)
    assert all(a > 0 for a in _still(samples, up + SETTLED_AFTER_S, down)[0].offers_a)
