"""Charging sessions from a reconstructed series.

A session is one plug-in: a maximal run of segments during which the charge point is plugged in (where a
source cannot tell, charging or drawing power counts as plugged in). It ends at an unplug, at an unknown gap
(the car may have left while nobody listened), at a hole in the data, or when another VIN appears. Runs without
any charging are plug-ins, not charging sessions, and are left out. A run still open at the horizon is
ongoing: its `end` is None.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from chargebus_history.reconstruct import SECONDS_PER_HOUR, Segment, peak_power


@dataclass(frozen=True, slots=True)
class Session:
    start: float
    end: float | None
    energy_wh: float
    vin: str | None
    evse_ids: tuple[str, ...]
    peak_power_w: float | None


def _plugged(segment: Segment) -> bool:
    if segment.plugged_in is not None:
        return segment.plugged_in
    return segment.charging is True or (segment.power_w or 0.0) > 0


def _last_vin(run: Sequence[Segment]) -> str | None:
    return next((s.vin for s in reversed(run) if s.vin is not None), None)


def _splits(run: Sequence[Segment], segment: Segment) -> bool:
    if run[-1].end != segment.start:
        return True
    vin = _last_vin(run)
    return vin is not None and segment.vin is not None and segment.vin != vin


def plugged_runs(segments: Sequence[Segment]) -> list[list[Segment]]:
    runs: list[list[Segment]] = []
    current: list[Segment] = []
    for segment in segments:
        if not _plugged(segment):
            if current:
                runs.append(current)
            current = []
            continue
        if current and _splits(current, segment):
            runs.append(current)
            current = []
        current.append(segment)
    if current:
        runs.append(current)
    return runs


class _Companion:
    """Another source's series, indexed by segment end so each session looks only at what overlaps it."""

    def __init__(self, segments: Sequence[Segment]) -> None:
        self.segments = segments
        self._ends = [s.end for s in segments]

    def saw(self, vin: str, start: float, end: float) -> set[str]:
        ids: set[str] = set()
        for index in range(bisect_right(self._ends, start), len(self.segments)):
            segment = self.segments[index]
            if segment.start >= end:
                break
            if segment.source and segment.vin == vin and _plugged(segment):
                ids.add(segment.source)
        return ids


def find_sessions(
    segments: Sequence[Segment],
    *,
    horizon: float | None = None,
    companions: Sequence[Sequence[Segment]] = (),
) -> list[Session]:
    """Sessions in a sorted series. `horizon`: the end of the data (a session reaching it is ongoing)."""
    indexed = [_Companion(companion) for companion in companions]
    sessions: list[Session] = []
    for run in plugged_runs(segments):
        energy_wh = sum(s.power_w * s.duration_s for s in run if s.power_w is not None) / SECONDS_PER_HOUR
        if energy_wh <= 0 and not any(s.charging for s in run):
            continue
        start, end = run[0].start, run[-1].end
        vin = _last_vin(run)
        # Other sources that saw the same car plugged in meanwhile (e.g. `car-<VIN>` beside its TWC) ran it too.
        evse_ids = {s.source for s in run if s.source}
        if vin is not None:
            for companion in indexed:
                evse_ids |= companion.saw(vin, start, end)
        sessions.append(
            Session(
                start=start,
                end=None if horizon is not None and end >= horizon else end,
                energy_wh=energy_wh,
                vin=vin,
                evse_ids=tuple(sorted(evse_ids)),
                peak_power_w=peak_power(run),
            )
        )
    return sessions
