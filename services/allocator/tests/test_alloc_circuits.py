"""The circuit tree, phase mapping, metered loads and slow followers' transient slots (docs/allocation.md §5)."""

from __future__ import annotations

import pytest
from chargebus_allocator.circuits import Network, above_baseline, build_tree, metered_amps, slot_loads
from chargebus_allocator.model import Circuit, MeteredLoad

from services.allocator.tests.alloc_builders import point

MAIN = Circuit("main", max_current_a=63, phases=3)
GARAGE_L2 = Circuit("garage", max_current_a=32, phases=1, phase="L2", parent="main")


def test_tree_errors_are_explicit() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        build_tree([MAIN, MAIN])
    with pytest.raises(ValueError, match="parent 'nowhere' is not a circuit"):
        build_tree([Circuit("a", 16, parent="nowhere")])
    with pytest.raises(ValueError, match="loop"):
        build_tree([Circuit("a", 16, parent="b"), Circuit("b", 16, parent="a")])
    with pytest.raises(ValueError, match="phases must be 1 or 3"):
        build_tree([Circuit("a", 16, phases=2)])
    with pytest.raises(ValueError, match="'shed' is not a circuit"):
        Network(build_tree([MAIN])).footprint(point("twc-0001", circuit="shed"))


def test_ancestry_and_order() -> None:
    tree = build_tree([GARAGE_L2, MAIN])
    assert tree.ancestry == {"main": ("main",), "garage": ("garage", "main")}
    assert tree.order == ("garage", "main")


def test_phases_a_charge_point_loads() -> None:
    network = Network(build_tree([MAIN, GARAGE_L2]))
    assert network.loaded_phases("main", "L1L2L3", 3) == (0, 1, 2)
    assert network.loaded_phases("main", "L1L2L3", 1) == (0,)  # a 1-phase car on a 3-phase TWC: the first
    assert network.loaded_phases("main", "L1L2L3", 2) == (0, 1)
    assert network.loaded_phases("main", "L3", 1) == (2,)
    assert network.loaded_phases("garage", "L1", 1) == (1,)  # the 1-phase circuit says where it really is
    assert network.loaded_phases(None, "L2", 1) == (1,)


def test_a_one_phase_circuit_loads_its_phase_of_the_three_phase_parent() -> None:
    network = Network(build_tree([MAIN, GARAGE_L2]))
    footprint = network.footprint(point("twc-0001", circuit="garage"))
    assert {network.labels[slot]: per_w for slot, per_w in footprint.steady} == {
        ("garage", "L2"): pytest.approx(1 / 240),
        ("main", "L2"): pytest.approx(1 / 240),
    }
    three = network.footprint(point("twc-0002", circuit="main", volts=230, phases=3))
    assert [network.labels[slot] for slot, _ in three.steady] == [("main", "L1"), ("main", "L2"), ("main", "L3")]
    assert all(per_w == pytest.approx(1 / 690) for _, per_w in three.steady)


def test_metered_amps() -> None:
    assert metered_amps(MeteredLoad(6900), 230, 3, "L1") == pytest.approx((10, 10, 10))
    assert metered_amps(MeteredLoad(-6900), 230, 3, "L1") == (0, 0, 0)  # export frees nothing
    per_phase = MeteredLoad(0, phase_power_w=(2300, -460, 460))
    assert metered_amps(per_phase, 230, 3, "L1") == pytest.approx((10, 0, 2))
    currents = MeteredLoad(0, phase_power_w=(2300, 0, 0), phase_current_a=(1, 2, 3))
    assert metered_amps(currents, 230, 3, "L1") == (1, 2, 3)  # currents win over powers
    assert metered_amps(MeteredLoad(2300), 230, 1, "L3") == pytest.approx((0, 0, 10))
    assert metered_amps(currents, 230, 1, "L2") == pytest.approx((0, 6, 0))


def test_a_meter_weighs_on_its_circuit_and_every_circuit_above() -> None:
    garage = Circuit("garage", 32, phases=1, phase="L2", parent="main", voltage_v=240, metered=MeteredLoad(2400))
    network = Network(build_tree([MAIN, garage]))
    fixed = dict(zip(network.labels, network.fixed, strict=True))
    assert fixed == {
        ("garage", "L2"): pytest.approx(10),
        ("main", "L1"): 0,
        ("main", "L2"): pytest.approx(10),
        ("main", "L3"): 0,
    }


def test_read_only_draws_are_fixed_loads() -> None:
    network = Network(build_tree([MAIN]))
    read_only = point("twc3-garage", circuit="main", wiring="L3", controllable=False)
    network.add_fixed(network.footprint(read_only), 2400)
    network.add_fixed(network.footprint(point("twc-0009")), 2400)  # on no circuit: nothing to count
    assert network.fixed == pytest.approx([0, 0, 10])


def test_a_slow_followers_draw_is_a_baseline_and_its_transient_footprint_starts_above_it() -> None:
    network = Network(build_tree([MAIN, GARAGE_L2]))
    car = point("car-5YJ3E1EA8KF000001", circuit="garage", follows_slowly=True, power_w=3840)
    twc = point("twc-0001", circuit="garage")
    car_print = network.footprint(car)
    network.add_baseline(car_print, car.power_w)
    assert network.baseline == pytest.approx([16, 0, 16, 0])  # garage L2, main L1 L2 L3
    assert network.transient_free() == pytest.approx([16, 63, 47, 63])
    late = above_baseline(car_print, car.power_w)
    assert (late.steady, late.late, late.above_w) == ((), car_print.steady, 3840)
    assert above_baseline(car_print, 0) is car_print
    loads = slot_loads(network, [late, network.footprint(twc)], [1440, 1440])
    # The car is told 6 A but still draws 16 A; the TWC adds 6 A.
    assert loads == pytest.approx([22, 0, 22, 0])
    loads = slot_loads(network, [late, network.footprint(twc)], [4800, 1440])
    assert loads == pytest.approx([26, 0, 26, 0])
