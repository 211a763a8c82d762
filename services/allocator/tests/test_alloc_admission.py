"""Admission: order, skipping to a smaller minimum, circuits, holding, and the kicked-out sentence."""

from __future__ import annotations

import math

from chargebus_allocator.admission import Candidate, admission_key, admit, kicked_out_reason
from chargebus_allocator.circuits import NO_LOAD, Footprint
from chargebus_allocator.model import Phase

LABELS: list[tuple[str, Phase]] = [("garage", "L1")]
ON_GARAGE = Footprint(((0, 1 / 240),))


def candidate(
    index: int,
    min_w: float = 1440,
    *,
    priority: int = 0,
    charging: bool = False,
    plugged_in_at: float | None = None,
    footprint: Footprint = NO_LOAD,
    baseline_w: float = 0.0,
    budget_exempt: bool = False,
    may_hold: bool = False,
) -> Candidate:
    return Candidate(
        index,
        f"twc-{index:04x}",
        priority,
        charging,
        plugged_in_at,
        min_w,
        footprint,
        baseline_w,
        budget_exempt,
        may_hold,
    )


def test_order_priority_then_charging_then_plug_in_time_then_id() -> None:
    candidates = [
        candidate(0, priority=0, plugged_in_at=5.0),
        candidate(1, priority=0, plugged_in_at=None),
        candidate(2, priority=0, plugged_in_at=9.0, charging=True),
        candidate(3, priority=1),
        candidate(4, priority=0, plugged_in_at=1.0),
        candidate(5, priority=0, plugged_in_at=None),
    ]
    assert [c.key for c in sorted(candidates, key=admission_key)] == [3, 2, 4, 0, 1, 5]
    assert admit(candidates, math.inf, ([], []), []).order == (3, 2, 4, 0, 1, 5)


def test_a_candidate_that_does_not_fit_is_skipped_and_a_smaller_minimum_further_down_may_fit() -> None:
    candidates = [candidate(0, 3000, priority=2), candidate(1, 3000, priority=1), candidate(2, 600)]
    result = admit(candidates, 4000, ([], []), [])
    assert result.verdicts == {0: "admitted", 1: "kicked_out", 2: "admitted"}
    assert result.admitted_min_w == 3600
    assert result.reasons[1] == "kicked out: 4 000 W available, minimums need 6 000 W; priority 1 < 2"


def test_circuits_bind_even_without_a_budget() -> None:
    candidates = [candidate(i, footprint=ON_GARAGE, budget_exempt=True) for i in range(3)]
    result = admit(candidates, 0, ([16.0], [16.0]), LABELS)
    assert result.verdicts == {0: "admitted", 1: "admitted", 2: "kicked_out"}
    assert result.reasons[2] == (
        "kicked out: circuit garage has 4 A free on L1, its minimum needs 6 A; equal priority 0: "
        "charging ones, then earlier plug-ins, go first"
    )


def test_held_minimums_extend_the_budget_but_never_a_circuit() -> None:
    first = candidate(0, priority=5)
    holding = candidate(1, charging=True, may_hold=True)
    result = admit([first, holding], 2000, ([], []), [])
    assert result.verdicts == {0: "admitted", 1: "held"}
    assert (result.admitted_min_w, result.held_min_w) == (1440, 1440)
    on_full = candidate(1, charging=True, may_hold=True, footprint=ON_GARAGE)
    result = admit([candidate(0, priority=5, footprint=ON_GARAGE), on_full], 2000, ([10.0], [10.0]), LABELS)
    assert result.verdicts[1] == "kicked_out"


def test_a_slow_follower_needs_only_what_its_minimum_adds_above_its_measured_draw() -> None:
    # 32 A circuit, a car drawing 16 A (its baseline), metered load 20 A: steady room 12 A, transient room -4 A.
    rooms = ([12.0], [-4.0])
    car = candidate(0, footprint=ON_GARAGE, baseline_w=3840, charging=True)
    twc = candidate(1, footprint=ON_GARAGE)
    result = admit([car, twc], math.inf, rooms, LABELS)
    assert result.verdicts == {0: "admitted", 1: "kicked_out"}
    assert result.reasons[1] == (
        "kicked out: circuit garage is 4 A over its limit on L1 until slower cars there have followed a decrease; "
        "equal priority 0: charging ones, then earlier plug-ins, go first"
    )
    assert admit([candidate(0, footprint=ON_GARAGE, baseline_w=3840)], math.inf, ([5.0], [0.0]), LABELS).verdicts == {
        0: "kicked_out"
    }


def test_reason_for_an_overfull_circuit() -> None:
    text = kicked_out_reason(None, (("main", "L2"), -3.5, 6.0, False), 0, None)
    assert text == "kicked out: circuit main is 3.5 A over its limit on L2"


def test_reason_with_budget_and_circuit() -> None:
    text = kicked_out_reason((0.0, 1440.0), (("garage", "L1"), 2.0, 6.0, False), 0, 3)
    assert text == (
        "kicked out: 0 W available, minimums need 1 440 W, and circuit garage has 2 A free on L1, "
        "its minimum needs 6 A; priority 0 < 3"
    )
