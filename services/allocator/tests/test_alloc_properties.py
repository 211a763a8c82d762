"""Invariants of docs/allocation.md §5 over random circuit trees, phases, charge points, modes and budgets.

The circuit loads are recomputed here from first principles (not with the allocator's own Network), so a mistake
in the phase mapping would show up as a broken limit.
"""

from __future__ import annotations

import random
from dataclasses import astuple, replace

from chargebus_allocator.allocate import allocate
from chargebus_allocator.budget import point_mode, served_first
from chargebus_allocator.model import (
    Allocation,
    ChargePoint,
    Circuit,
    Delays,
    GridReading,
    Inputs,
    MeteredLoad,
    Settings,
    Timer,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from services.allocator.tests.alloc_builders import NO_DELAYS, T0

PHASES = ("L1", "L2", "L3")
EPS_A = 1e-6
EPS_W = 1e-6


@st.composite
def circuit_trees(draw: st.DrawFn) -> tuple[Circuit, ...]:
    count = draw(st.sampled_from((0, 1, 2, 3, 4, 5, 6)))
    circuits: list[Circuit] = []
    for n in range(count):
        metered = None
        if draw(st.booleans()):
            per_phase = draw(st.none() | st.tuples(*[st.floats(-3000, 6000)] * 3))
            per_current = draw(st.none() | st.tuples(*[st.floats(-10, 25)] * 3))
            metered = MeteredLoad(draw(st.floats(-5000, 15_000)), per_phase, per_current)
        circuits.append(
            Circuit(
                id=f"c{n}",
                max_current_a=draw(st.sampled_from((6, 10, 16, 20, 25, 32, 40, 63))),
                phases=draw(st.sampled_from((1, 3))),
                voltage_v=draw(st.sampled_from((230.0, 240.0))),
                parent=draw(st.none() | st.sampled_from([c.id for c in circuits])) if circuits else None,
                phase=draw(st.sampled_from(PHASES)),
                metered=metered,
            )
        )
    return tuple(circuits)


@st.composite
def charge_points(draw: st.DrawFn, circuit_ids: list[str]) -> ChargePoint:
    volts = draw(st.sampled_from((120.0, 230.0, 240.0)))
    phases = draw(st.sampled_from((1, 1, 2, 3)))
    step = volts * phases
    min_a = draw(st.integers(1, 10))
    max_a = draw(st.integers(min_a, 48))
    return ChargePoint(
        id=f"twc-{draw(st.integers(0, 0xFFFF)):04x}",
        min_power_w=min_a * step,
        max_power_w=max_a * step,
        step_w=step,
        phases=phases,
        voltage_v=volts,
        power_w=draw(st.sampled_from((0.0, min_a * step, max_a * step, draw(st.floats(0, 20_000))))),
        controllable=draw(st.sampled_from((True, True, True, False))),
        follows_slowly=draw(st.booleans()),
        priority=draw(st.integers(-2, 2)),
        circuit=draw(st.none() | st.sampled_from(circuit_ids)) if circuit_ids else None,
        wiring=draw(st.sampled_from(("L1", "L2", "L3", "L1L2L3"))),
        plugged_in=draw(st.sampled_from((True, True, True, False))),
        online=draw(st.sampled_from((True, True, True, False))),
        charging=draw(st.booleans()),
        plugged_in_at=draw(st.none() | st.floats(T0 - 10_000, T0)),
        mode=draw(st.none() | st.sampled_from(("off", "now", "solar", "minsolar"))),
        schedule_cap_w=draw(st.sampled_from((None, None, None, 3000.0, 10_000.0))),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> Inputs:
    circuits = draw(circuit_trees())
    ids = [c.id for c in circuits]
    points = draw(st.lists(charge_points(ids), max_size=12, unique_by=lambda p: p.id))
    grid = draw(st.none() | st.builds(GridReading, st.floats(-25_000, 5_000), st.sampled_from((T0, T0 - 120))))
    settings = Settings(
        mode=draw(st.sampled_from(("off", "now", "solar", "minsolar"))),
        reserve_w=draw(st.floats(0, 500)),
        share=draw(st.sampled_from(("fair", "priority"))),
        delays=draw(st.sampled_from((NO_DELAYS, Delays()))),
    )
    charge_now = draw(st.sampled_from((None, None, T0 + 600, T0 - 1)))
    return Inputs(tuple(points), circuits, grid, charge_now, settings)


def _loaded(point: ChargePoint, by_id: dict[str, Circuit]) -> list[int]:
    node = point.circuit
    while node is not None:
        if by_id[node].phases == 1:
            return [PHASES.index(by_id[node].phase)]
        node = by_id[node].parent
    if point.wiring == "L1L2L3":
        return list(range(min(point.phases, 3)))
    return [PHASES.index(point.wiring)]


def _metered(circuit: Circuit) -> list[float]:
    metered = circuit.metered
    if metered is None:
        return [0.0, 0.0, 0.0]
    if metered.phase_current_a is not None:
        amps = [max(0.0, a) for a in metered.phase_current_a]
    elif metered.phase_power_w is not None:
        amps = [max(0.0, w) / circuit.voltage_v for w in metered.phase_power_w]
    else:
        amps = [max(0.0, metered.power_w) / circuit.voltage_v / 3] * 3
    if circuit.phases == 1:
        vector = [0.0, 0.0, 0.0]
        vector[PHASES.index(circuit.phase)] = (
            sum(amps)
            if metered.phase_current_a or metered.phase_power_w
            else (max(0.0, metered.power_w) / circuit.voltage_v)
        )
        return vector
    return amps


def _loads(inputs: Inputs, allocated: dict[str, float], *, transient: bool) -> dict[str, tuple[list[float], float]]:
    """Per circuit: its load per phase of its own, and the fixed part alone summed (for the overfull case)."""
    by_id = {c.id: c for c in inputs.circuits}
    own: dict[str, list[float]] = {c.id: _metered(c) for c in inputs.circuits}
    fixed_own: dict[str, list[float]] = {c.id: _metered(c) for c in inputs.circuits}
    for point in inputs.charge_points:
        if point.circuit is None:
            continue
        steered = point.controllable and point.online
        fixed = 0.0 if steered else point.power_w
        if steered and point.follows_slowly and transient:
            fixed = point.power_w
        power = max(allocated[point.id], fixed)
        loaded = _loaded(point, by_id)
        for phase in loaded:
            own[point.circuit][phase] += power / (point.voltage_v * len(loaded))
            fixed_own[point.circuit][phase] += fixed / (point.voltage_v * len(loaded))
    totals: dict[str, tuple[list[float], float]] = {}
    for circuit in inputs.circuits:
        vector, fixed_vector = [0.0] * 3, [0.0] * 3
        for other in inputs.circuits:
            node: str | None = other.id
            while node is not None and node != circuit.id:
                node = by_id[node].parent
            if node == circuit.id:
                vector = [a + b for a, b in zip(vector, own[other.id], strict=True)]
                fixed_vector = [a + b for a, b in zip(fixed_vector, fixed_own[other.id], strict=True)]
        if circuit.phases == 1:
            totals[circuit.id] = ([sum(vector)], sum(fixed_vector))
        else:
            totals[circuit.id] = (vector, max(fixed_vector))
    return totals


def _budget_ok(inputs: Inputs, allocation: Allocation, allocated: dict[str, float]) -> None:
    now_group = solar_group = new_solar_only_min = solar_group_min = 0.0
    for point in inputs.charge_points:
        mode = point_mode(point, inputs.settings.mode, inputs.charge_now_until, T0)
        power = allocated[point.id]
        if served_first(mode):
            now_group += power
        elif power > 0:
            solar_group += power
            solar_group_min += point.min_power_w
            if mode == "solar" and not point.charging:
                new_solar_only_min += point.min_power_w
    surplus = allocation.surplus_w
    budget = 0.0 if surplus is None else max(0.0, surplus - now_group)
    # Only a charge point that was already charging may keep its minimum beyond the budget (its stop delay), and
    # only one of those at a time is stopping: the others keep charging at their minimum until it has stopped.
    assert new_solar_only_min <= budget + EPS_W
    assert sum(1 for r in allocation.points if r.state == "stopping") <= 1
    assert solar_group <= max(budget, solar_group_min) + EPS_W
    if allocation.available_w is not None:
        assert solar_group <= allocation.available_w + EPS_W


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_limits_budget_and_bounds_hold(inputs: Inputs) -> None:
    allocation, _ = allocate(inputs, None, T0)
    allocated = {r.charge_point.id: r.allocated_w for r in allocation.points}
    for result in allocation.points:
        point, power = result.charge_point, result.allocated_w
        assert result.reason
        mode = point_mode(point, inputs.settings.mode, inputs.charge_now_until, T0)
        cap = (
            point.max_power_w
            if mode != "schedule" or point.schedule_cap_w is None
            else min(point.max_power_w, point.schedule_cap_w)
        )
        assert power == 0 or point.min_power_w - EPS_W <= power <= cap + EPS_W
        if power > 0:
            assert point.controllable
            assert point.online
            assert point.plugged_in
            assert result.state in ("charging", "stopping")
            steps = power / point.step_w
            assert abs(steps - round(steps)) < 1e-6 or power == point.min_power_w
    for transient in (False, True):
        for circuit_id, (load, fixed) in _loads(inputs, allocated, transient=transient).items():
            limit = next(c.max_current_a for c in inputs.circuits if c.id == circuit_id)
            for phase_load in load:
                # Allocations never add load past a limit; a meter or read-only draw alone may already be over it.
                assert phase_load <= max(limit, fixed) + EPS_A or phase_load <= fixed + EPS_A
    _budget_ok(inputs, allocation, allocated)
    controllable = {evse for r in allocation.points if r.charge_point.controllable for evse in (r.charge_point.id,)}
    assert controllable <= {intent.evse_id for intent in allocation.setpoints}


@settings(max_examples=150, deadline=None)
@given(scenarios(), st.randoms(use_true_random=False))
def test_same_inputs_same_result_whatever_their_order(inputs: Inputs, rng: random.Random) -> None:
    first, timers = allocate(inputs, None, T0)
    shuffled_points = list(inputs.charge_points)
    rng.shuffle(shuffled_points)
    shuffled_circuits = list(inputs.circuits)
    rng.shuffle(shuffled_circuits)
    shuffled = replace(inputs, charge_points=tuple(shuffled_points), circuits=tuple(shuffled_circuits))
    second, timers_again = allocate(shuffled, None, T0)
    assert first == second
    assert timers == timers_again


@settings(max_examples=150, deadline=None)
@given(scenarios(), st.integers(1, 400))
def test_later_rounds_keep_the_invariants(inputs: Inputs, later_s: int) -> None:
    _, timers = allocate(inputs, None, T0)
    allocation, _ = allocate(inputs, timers, T0 + later_s)
    for result in allocation.points:
        assert result.reason
        assert result.allocated_w == 0 or result.allocated_w >= result.charge_point.min_power_w - EPS_W
    stale_timers: dict[str, Timer] = {key: replace(timer, since=T0 - 10_000) for key, timer in timers.items()}
    allocate(inputs, stale_timers, T0 + later_s)


def _rebuilt(timer: Timer) -> Timer:
    """The same values in new objects (new floats too), so that nothing can be passed on by identity."""
    fields = [float(repr(value)) if isinstance(value, float) else value for value in astuple(timer)[1:]]
    return Timer(timer.phase, *fields)


@settings(max_examples=150, deadline=None)
@given(scenarios(), st.integers(1, 400))
def test_timers_passed_on_as_they_are_hold_what_rebuilt_ones_would(inputs: Inputs, later_s: int) -> None:
    """A round hands a timer on as it is when it would come out the same (allocate._timers_out): every field,
    offered watts and slow-follower clocks included, must be what a round fed equal but new objects gives."""
    _, timers = allocate(inputs, None, T0)
    for now in (T0 + later_s, T0 + 2 * later_s):
        allocation, passed_on = allocate(inputs, timers, now)
        again, rebuilt = allocate(inputs, {key: _rebuilt(timer) for key, timer in timers.items()}, now)
        assert repr(allocation) == repr(again)
        assert {key: repr(timer) for key, timer in passed_on.items()} == {k: repr(t) for k, t in rebuilt.items()}
        for result in allocation.points:  # what the dead band holds next round: exactly this round's offer
            assert repr(passed_on[result.charge_point.key].offered_w) == repr(result.allocated_w)
        timers = passed_on
