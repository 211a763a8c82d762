"""Water level, priority filling and whole-step quantisation (docs/allocation.md §4)."""

from __future__ import annotations

import math

import pytest
from chargebus_allocator.circuits import Footprint
from chargebus_allocator.fairshare import Demand, _WaterLevel, quantise, share_fair, share_priority
from hypothesis import assume, given, settings
from hypothesis import strategies as st

PER_W_240 = 1 / 240


def seed_procedure(demands: list[Demand], budget_w: float) -> list[float]:
    """The predecessor's intended rule (its power distribution, without its skipping bug, no controllers):
    smallest maximum first, each offered an equal share of what is left; a share below the minimum becomes 0."""
    offers = [0.0] * len(demands)
    remaining = budget_w
    pending = sorted(range(len(demands)), key=lambda i: (demands[i].max_w, i))
    for position, i in enumerate(pending):
        offer = min(remaining / (len(pending) - position), demands[i].max_w)
        if 0 < offer < demands[i].min_w:
            offer = 0.0
        offers[i] = offer
        remaining -= offer
    return offers


demand_lists = st.lists(
    st.builds(
        lambda min_w, extra, step: Demand(min_w, min_w + extra, step),
        st.floats(0, 5_000),
        st.floats(0, 20_000),
        st.sampled_from((120.0, 230.0, 240.0, 690.0)),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=300)
@given(demand_lists, st.floats(0, 100_000))
def test_without_circuits_the_water_level_equals_the_seed_procedure_when_no_minimum_binds(
    demands: list[Demand], budget_w: float
) -> None:
    assume(sum(d.min_w for d in demands) <= budget_w)
    seed = seed_procedure(demands, budget_w)
    assume(all(offer >= demand.min_w for offer, demand in zip(seed, demands, strict=True)))
    fair = [share.power_w for share in share_fair(demands, budget_w, [])]
    assert fair == pytest.approx(seed, abs=1e-4)


@settings(max_examples=300)
@given(demand_lists, st.floats(0, 100_000))
def test_the_level_is_one_clamp_for_everyone_and_spends_the_budget_or_every_maximum(
    demands: list[Demand], budget_w: float
) -> None:
    assume(sum(d.min_w for d in demands) <= budget_w)
    shares = share_fair(demands, budget_w, [])
    powers = [share.power_w for share in shares]
    risen = [s.power_w for s, d in zip(shares, demands, strict=True) if d.min_w + 1e-4 < s.power_w < d.max_w - 1e-4]
    assert max(risen, default=0) - min(risen, default=0) < 1e-6  # one common level
    for power, demand in zip(powers, demands, strict=True):
        assert demand.min_w - 1e-6 <= power <= demand.max_w + 1e-6
    spent = sum(powers)
    assert spent <= budget_w + 1e-6
    assert math.isclose(spent, budget_w, abs_tol=1e-4) or all(
        math.isclose(power, demand.max_w, abs_tol=1e-4) for power, demand in zip(powers, demands, strict=True)
    )


def test_a_full_circuit_freezes_its_members_and_the_rest_keeps_rising() -> None:
    on_circuit = Footprint(((0, PER_W_240),))
    demands = [
        Demand(1440, 7680, 240, on_circuit),
        Demand(1440, 7680, 240, on_circuit),
        Demand(1440, 7680, 240),
    ]
    shares = share_fair(demands, 10_000, [16.0])
    assert [s.power_w for s in shares] == pytest.approx([1920, 1920, 6160])
    assert [s.bound for s in shares] == ["circuit", "circuit", "budget"]
    assert shares[0].slot == 0


def test_a_minimum_above_the_level_where_its_circuit_filled_stays_at_the_minimum() -> None:
    on_circuit = Footprint(((0, PER_W_240),))
    demands = [Demand(1440, 7680, 240, on_circuit), Demand(2880, 7680, 240, on_circuit)]
    # 20 A: the minimums take 18 A, the first rises to 8 A and fills it before the level reaches 12 A.
    shares = share_fair(demands, math.inf, [20.0])
    assert [s.power_w for s in shares] == pytest.approx([1920, 2880])
    assert shares[1].bound == "circuit"


def test_load_above_a_threshold_counts_only_past_it() -> None:
    # A slow car measured at 16 A: its transient slot (1) fills only once it is allocated more than that.
    car = Demand(1200, 7680, 240, Footprint(((0, PER_W_240),), ((1, PER_W_240),), above_w=3840))
    twc = Demand(1440, 7680, 240, Footprint(((0, PER_W_240), (1, PER_W_240))))
    shares = share_fair([car, twc], math.inf, [32.0, 32.0 - 16.0])
    # Transient: 16 A already taken by the car's draw; the TWC gets the other 16 A, the car stays at its draw.
    assert [s.power_w for s in shares] == pytest.approx([3840, 3840])


def test_priority_fills_in_order() -> None:
    demands = [Demand(1440, 7680, 240), Demand(1440, 7680, 240), Demand(1440, 7680, 240)]
    shares = share_priority(demands, [2, 0, 1], 10_000, [])
    assert [s.power_w for s in shares] == pytest.approx([1440, 1440, 7120])
    assert [s.bound for s in shares] == ["budget", "budget", "budget"]


def test_priority_respects_circuits() -> None:
    on_circuit = Footprint(((0, PER_W_240),))
    demands = [Demand(1440, 7680, 240, on_circuit), Demand(1440, 7680, 240, on_circuit)]
    shares = share_priority(demands, [0, 1], math.inf, [20.0])
    assert [s.power_w for s in shares] == pytest.approx([3360, 1440])
    assert shares[0].bound == "circuit"


def test_quantise_floors_then_hands_out_steps_round_robin_never_past_a_limit() -> None:
    demands = [Demand(1440, 19_200, 240), Demand(4140, 11_040, 690), Demand(1440, 1500, 240)]
    result = quantise(demands, [6000, 6000, 1500], [1, 0, 2], 13_500, [])
    # Floors: 6000, 5520, 1440 (13 000 W); 500 W left: B cannot take 690, A takes 240 twice, C is at its cap.
    assert result == [6480, 5520, 1440]


def test_quantise_respects_circuits() -> None:
    on_circuit = Footprint(((0, PER_W_240),))
    demands = [Demand(1440, 7680, 240, on_circuit), Demand(1440, 7680, 240, on_circuit)]
    assert quantise(demands, [2000, 2000], [0, 1], math.inf, [16.5]) == [1920, 1920]
    assert quantise(demands, [2000, 2000], [0, 1], math.inf, [17.0]) == [2160, 1920]


def test_quantise_keeps_a_minimum_that_is_not_a_whole_step() -> None:
    assert quantise([Demand(1000, 5000, 240)], [1000], [0], 1000, []) == [1000]


def _quantise_step_by_step(
    demands: list[Demand], powers: list[float], order: list[int], budget_w: float, free_a: list[float]
) -> list[float]:
    """The straightforward rule quantise() implements with its fit and load updates in one pass per step: floor to
    whole steps, then one step at a time round-robin, each step checked on every slot of its footprint first."""

    def load(footprint: Footprint, power_w: float) -> list[tuple[int, float]]:
        steady = [(slot, per_w * power_w) for slot, per_w in footprint.steady]
        above = max(0.0, power_w - footprint.above_w)
        return steady + [(slot, per_w * above) for slot, per_w in footprint.late]

    result = [
        min(max(math.floor(power / d.step_w + 1e-6) * d.step_w, d.min_w), d.max_w)
        for power, d in zip(powers, demands, strict=True)
    ]
    used = [0.0] * len(free_a)
    for demand, power_w in zip(demands, result, strict=True):
        for slot, amps in load(demand.footprint, power_w):
            used[slot] += amps
    total = sum(result)
    candidates = list(order)
    while candidates:
        still = []
        for index in candidates:
            demand, before = demands[index], result[index]
            after = before + demand.step_w
            if after > demand.max_w + 1e-6 or total + demand.step_w > budget_w + 1e-6:
                continue
            footprint, above = demand.footprint, demand.footprint.above_w
            rise = [(slot, per_w * (after - before)) for slot, per_w in footprint.steady]
            extra = max(0.0, after - above) - max(0.0, before - above)
            rise += [(slot, per_w * extra) for slot, per_w in footprint.late]
            if any(used[slot] + amps > free_a[slot] + 1e-9 for slot, amps in rise):
                continue
            for slot, amps in rise:
                used[slot] += amps
            total += demand.step_w
            result[index] = after
            still.append(index)
        candidates = still
    return result


SLOTS = 3
footprints = st.one_of(
    st.just(Footprint()),
    st.builds(
        lambda slots, per_w: Footprint(tuple((slot, per_w) for slot in sorted(slots))),
        st.sets(st.integers(0, SLOTS - 1), min_size=1),
        st.sampled_from((1 / 240, 1 / 230, 1 / 690)),
    ),
    st.builds(  # a slow follower above its present draw
        lambda slots, above: Footprint((), tuple((slot, 1 / 240) for slot in sorted(slots)), above),
        st.sets(st.integers(0, SLOTS - 1), min_size=1),
        st.sampled_from((0.0, 1440.0, 3840.0, 5000.0)),
    ),
)
on_circuits = st.lists(
    st.builds(
        lambda min_a, extra_a, footprint, step: Demand(min_a * step, (min_a + extra_a) * step, step, footprint),
        st.integers(0, 8),
        st.integers(0, 30),
        footprints,
        st.sampled_from((230.0, 240.0, 690.0)),
    ),
    min_size=1,
    max_size=10,
)


@settings(max_examples=400)
@given(on_circuits, st.lists(st.floats(0, 25_000), min_size=10, max_size=10), st.floats(0, 100_000), st.data())
def test_quantise_equals_the_step_by_step_rule_exactly(
    demands: list[Demand], powers: list[float], budget_w: float, data: st.DataObject
) -> None:
    free_a = data.draw(st.lists(st.floats(0, 80), min_size=SLOTS, max_size=SLOTS))
    order = data.draw(st.permutations(range(len(demands))))
    shares = powers[: len(demands)]
    assert quantise(demands, shares, order, budget_w, free_a) == _quantise_step_by_step(
        demands, shares, order, budget_w, free_a
    )


@settings(max_examples=300)
@given(on_circuits, st.data())
def test_identical_charge_points_share_as_one_class_what_each_would_get_alone(
    demands: list[Demand], data: st.DataObject
) -> None:
    """share_fair runs the level over classes of identical demands (same numbers, same footprint object); copies of
    every footprint make each demand a class of its own, and the shares must be the same either way."""
    repeats = data.draw(st.lists(st.integers(1, 4), min_size=len(demands), max_size=len(demands)))
    grouped = [demand for demand, times in zip(demands, repeats, strict=True) for _ in range(times)]
    alone = [demand._replace(footprint=Footprint(*demand.footprint)) for demand in grouped]
    free_a = data.draw(st.lists(st.floats(0, 200), min_size=SLOTS, max_size=SLOTS))
    used = [0.0] * SLOTS
    for demand in grouped:
        demand.footprint.add_to(used, demand.min_w)
    assume(all(load <= room for load, room in zip(used, free_a, strict=True)))
    budget_w = data.draw(st.floats(sum(d.min_w for d in grouped), 200_000))
    together = [share.power_w for share in share_fair(grouped, budget_w, free_a)]
    each = [share.power_w for share in share_fair(alone, budget_w, free_a)]
    assert together == pytest.approx(each, rel=1e-9, abs=1e-6)


def test_a_water_level_that_stops_making_progress_fails_instead_of_hanging() -> None:
    """A negative member count (a fault, never built by share_fair) makes the level aim below itself for ever; the
    pass bound turns that into an error the round's task restarts from, not a hung event loop."""
    demand = Demand(1380.0, 7360.0, 230.0)
    level = _WaterLevel([demand], [-1], 10_000.0, demand.min_w, [])
    with pytest.raises(RuntimeError, match="stopped making progress"):
        level.run()
