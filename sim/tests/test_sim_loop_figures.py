"""The closed-loop figures, on hand-made samples: what counts as a change, a settle, time over the surplus."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from chargebus_sim.loop_figures import resample, step_figures

VOLTS = 240.0


@dataclass(frozen=True)
class Fake:
    at: float
    offers_a: tuple[float, ...]
    surplus_w: float = 4800.0
    grid_w: float = 0.0

    @property
    def offered_w(self) -> float:
        return sum(self.offers_a) * VOLTS


def test_changes_first_change_and_settle_are_counted_per_slave() -> None:
    samples = [
        Fake(0.0, (10, 10)),  # before the step
        Fake(10.0, (10, 10)),
        Fake(11.0, (12, 10)),
        Fake(12.0, (12, 8)),
        Fake(20.0, (0, 8)),  # a stop
        Fake(30.0, (6, 8)),  # a start
        Fake(40.0, (6, 8)),
    ]
    figures = step_figures(samples, 10.0, 60.0)
    assert figures.first_change_s == pytest.approx(1.0)
    assert figures.settle_s == pytest.approx(20.0)
    assert figures.changes == 4
    assert (figures.starts, figures.stops) == (1, 1)
    assert figures.max_offered_a == 22


def test_a_step_with_no_change_has_no_first_change_and_settles_at_once() -> None:
    figures = step_figures([Fake(0.0, (6, 6)), Fake(5.0, (6, 6)), Fake(9.0, (6, 6))], 5.0, 10.0)
    assert figures.first_change_s is None
    assert figures.settle_s == 0.0
    assert figures.changes == 0


def test_time_over_the_surplus_and_import_weigh_each_sample_until_the_next() -> None:
    samples = [
        Fake(0.0, (10, 10), surplus_w=4000.0, grid_w=800.0),  # 4 800 W offered > 4 000 W: over, importing
        Fake(3.0, (10, 6), surplus_w=4000.0, grid_w=0.0),  # 3 840 W: fits
        Fake(4.0, (10, 6), surplus_w=4000.0, grid_w=0.0),
    ]
    figures = step_figures(samples, 0.0, 10.0)
    assert figures.over_s == pytest.approx(3.0)
    assert figures.over_after_settle_s == 0.0  # all of it before the last change (at 3 s)
    assert figures.import_wh == pytest.approx(800.0 * 3.0 / 3600)


def test_over_the_surplus_after_settling_is_what_a_settled_loop_must_not_show() -> None:
    samples = [Fake(0.0, (6, 6)), Fake(1.0, (10, 10), surplus_w=4000.0), Fake(9.0, (10, 10), surplus_w=4000.0)]
    figures = step_figures(samples, 0.0, 10.0)
    assert figures.settle_s == pytest.approx(1.0)
    assert figures.over_after_settle_s == pytest.approx(9.0)  # from the last change to the end of the step


def test_resample_takes_the_sample_in_force_at_each_tick() -> None:
    samples = [Fake(0.0, (1,)), Fake(0.5, (2,)), Fake(2.2, (3,))]
    picked = resample(samples, 0.0, 4.0, 1.0)
    assert [s.offers_a for s in picked] == [(1,), (2,), (2,), (3,)]
