"""A grid reading is set against the charge points' draw of its own moment, not a draw reported after it."""

from __future__ import annotations

from services.allocator.tests.alloc_builders import T0, feed_evse, make_engine

TWC = "twc-0001"


def test_a_draw_reported_between_meter_readings_does_not_move_the_surplus() -> None:
    engine = make_engine(mode="solar")
    feed_evse(engine, TWC, power_w=3000, charging=True)
    engine.compute(T0)  # the round before the reading: the TWC draws 3 000 W
    engine.meter_message("p/power/grid", b"-2000", T0 + 1)
    assert engine.compute(T0 + 1).allocation.surplus_w == 5000  # 2 000 W export + its own 3 000 W
    # The car ramps to 4 000 W before the meter speaks again: 1 000 W of that export is now going into the car,
    # so the surplus is still 5 000 W (it used to read 6 000 W until the next reading, and allocations swung).
    feed_evse(engine, TWC, power_w=4000, charging=True)
    assert engine.compute(T0 + 2).allocation.surplus_w == 5000
    # The next reading says the same thing the estimate did.
    engine.meter_message("p/power/grid", b"-1000", T0 + 3)
    assert engine.compute(T0 + 3).allocation.surplus_w == 5000


def test_without_a_draw_change_the_reading_is_used_as_it_is() -> None:
    engine = make_engine(mode="solar")
    feed_evse(engine, TWC, power_w=0)
    engine.meter_message("p/power/grid", b"-2500", T0)
    assert engine.compute(T0).allocation.grid_w == -2500
