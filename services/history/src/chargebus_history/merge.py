"""One vehicle's power from several sources, counted once.

A car charging on a Gen2/Gen3 TWC is seen twice: by the TWC (`twc-4a1b` / `twc3-garage`, reporting the VIN) and
by the car itself (`car-<VIN>`, from the Tesla API or TeslaMate). At any moment the merged series takes the power
of exactly one source, the first in the caller's preference order that knows it; sources are never added. The
order used by the queries: measured wall connectors carrying the VIN, then the car's own EVSE state, then its
vehicle state. The TWC wins because it measures at one-second cadence, where the car API holds coarse values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from itertools import pairwise

from chargebus.schema import evse_kind_of

from chargebus_history.reconstruct import Segment, coalesce


def is_measuring_evse(evse_id: str) -> bool:
    """A wall connector (twc-/twc3-) measures its own current; a car EVSE relays the car's report."""
    return evse_kind_of(evse_id) != "vehicle"


def only_vin(segments: Iterable[Segment], vin: str) -> list[Segment]:
    """The part of a wall connector's series during which it served this car (it says nothing otherwise)."""
    return [s for s in segments if s.vin == vin]


def merge_preferred(candidates: Sequence[Sequence[Segment]]) -> list[Segment]:
    """Per elementary interval, the first candidate with a known power; unknown if none knows; a hole if none
    covers it. Each candidate must be sorted and non-overlapping."""
    cuts = sorted({t for candidate in candidates for s in candidate for t in (s.start, s.end)})
    cursors = [0] * len(candidates)
    merged: list[Segment] = []
    for start, end in pairwise(cuts):
        covering: list[Segment] = []
        for which, candidate in enumerate(candidates):
            while cursors[which] < len(candidate) and candidate[cursors[which]].end <= start:
                cursors[which] += 1
            if cursors[which] < len(candidate) and candidate[cursors[which]].start <= start:
                covering.append(candidate[cursors[which]])
        if not covering:
            continue
        # When nobody knows the power, the most preferred source still tells whether the car was plugged in.
        chosen = next((s for s in covering if s.power_w is not None), covering[0])
        merged.append(replace(chosen, start=start, end=end))
    return coalesce(merged)
