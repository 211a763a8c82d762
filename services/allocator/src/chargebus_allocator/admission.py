"""Who may charge at all: minimums admitted in a fixed order while they fit the budget and every circuit slot.

Order (docs/allocation.md §3): priority high to low, charging ones first (so a tie does not flap), earlier plug-in
first, then id. A candidate that does not fit is skipped, not the end of the line: a smaller minimum further down may
fit. A charging one in its stop delay that no longer fits the budget is "held" at its minimum when circuits allow: the
budget grows by that minimum for the delay, circuits never do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

from chargebus_allocator import wording
from chargebus_allocator.circuits import NO_LOAD, Footprint
from chargebus_allocator.model import Phase

Verdict = Literal["admitted", "held", "kicked_out"]

_EPS_W = 1e-6
_EPS_A = 1e-9


class Candidate(NamedTuple):
    """One per charge point and round, hence a NamedTuple: cheap to build."""

    key: int  # the caller's position for this charge point
    id: str
    priority: int
    charging: bool  # the allocator's own view: charging or in its stop delay
    plugged_in_at: float | None
    min_w: float
    footprint: Footprint = NO_LOAD
    baseline_w: float = 0.0  # a slow follower's present draw, already counted as transient load
    budget_exempt: bool = False  # minsolar, and the modes that are served at once: circuits only
    may_hold: bool = False  # charging and its stop delay has not run out
    #: Equal priorities take turns: among charging ones, the one charging longest goes last (stops first); among
    #: the others, the one that stopped longest ago goes first. Epoch seconds as a sort key; see `turn_key`.
    turn: float = 0.0


@dataclass(frozen=True, slots=True)
class Admission:
    order: tuple[int, ...]  # candidate indices, in admission order (also the order leftovers go round)
    verdicts: dict[int, Verdict]
    reasons: dict[int, str]  # why each kicked-out candidate is out, as a full sentence
    admitted_min_w: float  # the minimums admitted within the budget (or exempt from it)
    held_min_w: float


def admission_key(candidate: Candidate) -> tuple[int, bool, float, bool, float, str]:
    plugged = candidate.plugged_in_at
    return (-candidate.priority, not candidate.charging, candidate.turn, plugged is None, plugged or 0.0, candidate.id)


def turn_key(charging: bool, charged_since: float | None, stopped_at: float | None) -> float:
    """The rotation part of the order: charging longest sorts last, stopped longest ago (or never) sorts first."""
    if charging:
        return -charged_since if charged_since is not None else -math.inf
    return stopped_at if stopped_at is not None else -math.inf


def admit(
    candidates: Sequence[Candidate],
    budget_w: float,
    rooms: tuple[Sequence[float], Sequence[float]],
    labels: Sequence[tuple[str, Phase]],
    cap: tuple[float, str, bool] | None = None,
) -> Admission:
    """Admit in order. `rooms` is each slot's (steady, transient) room before these candidates (not modified).

    `cap` is a hard limit on every minimum admitted or held, exempt or not (the site's import limit: watts, its name
    for the reason, and whether that name already says why nothing is left).
    """
    ordered = sorted(candidates, key=admission_key)
    free, free_transient = list(rooms[0]), list(rooms[1])
    verdicts: dict[int, Verdict] = {}
    reasons: dict[int, str] = {}
    admitted_w = held_w = 0.0
    top_priority: int | None = None
    holding: list[int] = []
    budget_limit_w = budget_w + _EPS_W
    # Candidates kicked out for the same numbers read the same: a full circuit turns many away at once.
    said: dict[tuple[object, ...], str] = {}
    for candidate in ordered:
        min_w = candidate.min_w
        entries = candidate.footprint.steady
        # Transient: a slow follower adds only what its minimum asks beyond its present draw.
        extra_w = max(0.0, min_w - candidate.baseline_w)
        short = _short(entries, min_w, free) if entries else None
        waiting = short is None
        if waiting:
            short = _short(entries, extra_w, free_transient) if entries else None
            shown = free_transient
        else:
            shown = free
        over_budget = not candidate.budget_exempt and admitted_w + min_w > budget_limit_w
        if cap is not None and admitted_w + held_w + min_w > cap[0] + _EPS_W:
            verdicts[candidate.key] = "kicked_out"
            reasons[candidate.key] = site_reason(cap, admitted_w + held_w + min_w, candidate.priority, top_priority)
            continue
        if short is None and not over_budget:
            verdict: Verdict = "admitted"
            admitted_w += candidate.min_w
        elif short is None and candidate.may_hold:
            verdict = "held"
            held_w += candidate.min_w
            holding.append(candidate.key)
        else:
            verdicts[candidate.key] = "kicked_out"
            budget_part = (budget_w, admitted_w + min_w) if over_budget else None
            circuit_part = (labels[short[0]], shown[short[0]], short[1], waiting) if short is not None else None
            why = (budget_part, circuit_part, candidate.priority, top_priority)
            text = said.get(why)
            if text is None:
                text = said[why] = kicked_out_reason(*why)
            reasons[candidate.key] = text
            continue
        verdicts[candidate.key] = verdict
        for slot, per_w in entries:
            free[slot] -= per_w * min_w
            free_transient[slot] -= per_w * extra_w
        if top_priority is None:
            top_priority = candidate.priority
    # One stop at a time: only the last of the held runs its stop delay; the ones before it keep charging at their
    # minimum (still paid beyond the budget). A short dip then costs one stop instead of one per charge point, and
    # when the dip lasts, the next one's delay starts once the first has stopped.
    for key in holding[:-1]:
        verdicts[key] = "admitted"
    return Admission(tuple(c.key for c in ordered), verdicts, reasons, admitted_w, held_w)


def site_reason(cap: tuple[float, str, bool], needed_w: float, priority: int, top_priority: int | None) -> str:
    """`kicked out: site import cap 11 kW leaves 1 500 W for charge points, minimums need 4 140 W`."""
    cap_w, label, says_why = cap
    if says_why:
        return f"kicked out: {label}"
    text = (
        f"kicked out: {label} leaves {wording.watts(cap_w)} for charge points, minimums need {wording.watts(needed_w)}"
    )
    if top_priority is not None and top_priority > priority:
        text += f"; priority {priority} < {top_priority}"
    return text


def _short(entries: tuple[tuple[int, float], ...], power_w: float, free: list[float]) -> tuple[int, float] | None:
    """The first slot that cannot carry `power_w` more, with the amps it would need."""
    if power_w <= 0:
        return None  # adding nothing fits even a slot that is already over its limit
    for slot, per_w in entries:
        if per_w * power_w > free[slot] + _EPS_A:
            return slot, per_w * power_w
    return None


def kicked_out_reason(
    budget: tuple[float, float] | None,
    circuit: tuple[tuple[str, Phase], float, float, bool] | None,
    priority: int,
    top_priority: int | None,
) -> str:
    """`kicked out: 4 000 W available, minimums need 4 320 W; priority 0 < 10`."""
    parts = []
    if budget is not None:
        available, needed = budget
        shown = 0.0 if math.isinf(available) else available
        parts.append(f"{wording.watts(shown)} available, minimums need {wording.watts(needed)}")
    if circuit is not None:
        (circuit_id, phase), free, need, waiting = circuit
        if free < 0:
            text = f"circuit {circuit_id} is {wording.amps(-free)} over its limit on {phase}"
        else:
            text = (
                f"circuit {circuit_id} has {wording.amps(free)} free on {phase}, its minimum needs {wording.amps(need)}"
            )
        # Only over while a slow car still draws more than it has been told: it will fit once the car follows.
        parts.append(text + (" until slower cars there have followed a decrease" if waiting else ""))
    text = "kicked out: " + ", and ".join(parts)
    if top_priority is not None and top_priority > priority:
        text += f"; priority {priority} < {top_priority}"
    elif top_priority is not None:
        text += f"; equal priority {priority}: charging ones, then earlier plug-ins, go first"
    return text
