"""Sparse, irregular samples -> a piecewise-constant power series and its energy.

Pure: no I/O, no asyncio. Time is epoch seconds as a float (UTC), the scale of `chargebus.clock.Clock.time()`,
so sums and differences need no timezone handling; local calendars appear only in `energy.py`.

Rules (the README explains them at length):

* Step-hold: a sample's power holds until the next sample. It is the one rule that gives the same series whether
  or not unchanged samples were stored, and on dense TWC heartbeats it is plain direct integration.
* Zero where nothing can flow: unplugged, asleep, away from home or not charging.
* Gaps: when the next sample is more than `gap_limit_s` away, the whole interval is unknown (None), never
  invented; the recorder writes a keepalive row well within that limit while it listens.
* Counter reconciliation (`reconcile`): between two changes of an energy counter the series is scaled so that
  its integral equals the counter's delta.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise

DEFAULT_GAP_LIMIT_S = 1800.0
SECONDS_PER_HOUR = 3600.0
TIME_RESOLUTION_S = 1e-3


@dataclass(frozen=True, slots=True)
class Sample:
    """One observation of one source. `None` means "not reported", never zero."""

    ts: float
    source: str  # the evse_id the observation belongs to (`car-<VIN>` for a vehicle's own state)
    power_w: float | None = None
    charging: bool | None = None
    plugged_in: bool | None = None
    online: bool | None = None  # False: the source cannot see the device (offline, stale)
    asleep: bool | None = None
    away: bool | None = None  # a car not at home does not charge at our charge points
    vin: str | None = None
    counter_wh: float | None = None  # a cumulative energy counter; a decrease is a reset


@dataclass(frozen=True, slots=True)
class Segment:
    """The state that held over [start, end). `power_w` None = unknown."""

    start: float
    end: float
    power_w: float | None
    source: str | None = None
    vin: str | None = None
    plugged_in: bool | None = None
    charging: bool | None = None

    @property
    def duration_s(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class Integral:
    energy_wh: float
    known_s: float
    unknown_s: float  # unknown segments plus time no segment covers


def effective_power(sample: Sample) -> float | None:
    """The power a sample stands for, or None when it cannot be known.

    Facts that stop the flow win over reachability: an asleep car is often reported offline too, and it draws
    nothing. An unreachable source that last said "charging" is unknown, not zero.
    """
    if sample.plugged_in is False or sample.charging is False or sample.asleep or sample.away:
        return 0.0
    if sample.online is False or sample.power_w is None or math.isnan(sample.power_w):
        return None
    return max(0.0, sample.power_w)


def step_hold(samples: Iterable[Sample], horizon: float | None, gap_limit_s: float) -> list[Segment]:
    """Each sample holds until the next one (the last until `horizon`, the time up to which we listened)."""
    ordered = sorted(samples, key=lambda s: s.ts)
    segments: list[Segment] = []
    for index, sample in enumerate(ordered):
        end = ordered[index + 1].ts if index + 1 < len(ordered) else horizon
        if end is None or end <= sample.ts:
            continue  # a later sample at the same instant supersedes this one
        if end - sample.ts > gap_limit_s:
            segments.append(Segment(sample.ts, end, None, source=sample.source))
        else:
            segments.append(
                Segment(
                    sample.ts,
                    end,
                    effective_power(sample),
                    source=sample.source,
                    vin=sample.vin,
                    plugged_in=sample.plugged_in,
                    charging=sample.charging,
                )
            )
    return coalesce(segments)


def coalesce(segments: Iterable[Segment]) -> list[Segment]:
    """Join touching segments that hold the same state, so long quiet spells are one segment."""
    merged: list[Segment] = []
    for segment in segments:
        if merged and merged[-1].end == segment.start and _same_state(merged[-1], segment):
            merged[-1] = replace(merged[-1], end=segment.end)
        else:
            merged.append(segment)
    return merged


def _same_state(a: Segment, b: Segment) -> bool:
    return replace(a, start=b.start, end=b.end) == b


class SeriesIndex:
    """Sorted, non-overlapping segments with their starts indexed, for many integrals over one series."""

    def __init__(self, segments: Sequence[Segment]) -> None:
        self.segments = segments
        self._starts = [s.start for s in segments]

    def integrate(self, start: float, end: float) -> Integral:
        """Energy over [start, end] and how much of it is unknown (unknown segments plus uncovered time)."""
        if end <= start:
            return Integral(0.0, 0.0, 0.0)
        energy_ws = 0.0
        known_s = 0.0
        first = max(0, bisect_right(self._starts, start) - 1)
        for index in range(first, len(self.segments)):  # by index: a slice would copy the tail every call
            segment = self.segments[index]
            if segment.start >= end:
                break
            overlap = min(end, segment.end) - max(start, segment.start)
            if overlap > 0 and segment.power_w is not None:
                known_s += overlap
                energy_ws += segment.power_w * overlap
        unknown_s = (end - start) - known_s
        # Epoch floats carry ~1e-7 s of rounding; below the contract's 1 ms resolution nothing is unknown.
        return Integral(energy_ws / SECONDS_PER_HOUR, known_s, unknown_s if unknown_s > TIME_RESOLUTION_S else 0.0)


def integrate(segments: Sequence[Segment], start: float, end: float) -> Integral:
    return SeriesIndex(segments).integrate(start, end)


#: Below this a measured integral is no shape to scale: a denormal power would scale a counter's kWh to infinity.
MIN_SHAPE_WH = 1e-6


def counter_anchors(samples: Iterable[Sample]) -> list[tuple[float, float]]:
    """(ts, value) where a counter is first seen at a new value.

    The first reading is not an anchor: a coarse counter (a TWC counts whole kWh) may have ticked long before, so
    only the span between two observed changes has a known energy.
    """
    anchors: list[tuple[float, float]] = []
    previous: float | None = None
    for sample in sorted(samples, key=lambda s: s.ts):
        if sample.counter_wh is None:
            continue
        if previous is not None and sample.counter_wh != previous:
            anchors.append((sample.ts, sample.counter_wh))
        previous = sample.counter_wh
    return anchors


def reconcile(segments: Sequence[Segment], samples: Iterable[Sample]) -> list[Segment]:
    """Scale the power between consecutive counter changes so the integral equals the counter's delta.

    An interval is left as measured when the counter went down (a reset: a new session on a car), when part of
    it is unknown (the counter's energy cannot be placed in time), or when the measured integral is zero (there
    is no shape to scale, and spreading energy over "not charging" would invent power).
    """
    index = SeriesIndex(segments)
    scales: list[tuple[float, float, float]] = []
    for (t0, c0), (t1, c1) in pairwise(counter_anchors(samples)):
        if c1 <= c0:
            continue
        measured = index.integrate(t0, t1)
        if measured.unknown_s > 0 or measured.energy_wh <= MIN_SHAPE_WH:
            continue
        scale = (c1 - c0) / measured.energy_wh
        if math.isfinite(scale):
            scales.append((t0, t1, scale))
    if not scales:
        return list(segments)
    return _apply_scales(segments, scales)


def _apply_scales(segments: Sequence[Segment], scales: Sequence[tuple[float, float, float]]) -> list[Segment]:
    cuts = sorted({t for t0, t1, _ in scales for t in (t0, t1)})
    starts = [t0 for t0, _, _ in scales]
    scaled: list[Segment] = []
    for segment in segments:
        inner = cuts[bisect_right(cuts, segment.start) : bisect_left(cuts, segment.end)]
        for piece_start, piece_end in pairwise([segment.start, *inner, segment.end]):
            piece = replace(segment, start=piece_start, end=piece_end)
            index = bisect_right(starts, piece_start) - 1
            if index >= 0 and piece.power_w is not None and piece_end <= scales[index][1]:
                piece = replace(piece, power_w=piece.power_w * scales[index][2])
            scaled.append(piece)
    return scaled


def reconstruct(
    samples: Sequence[Sample],
    horizon: float | None,
    gap_limit_s: float = DEFAULT_GAP_LIMIT_S,
    *,
    use_counter: bool = True,
) -> list[Segment]:
    """Step-hold, then (optionally) counter reconciliation: the series of one source."""
    held = step_hold(samples, horizon, gap_limit_s)
    return reconcile(held, samples) if use_counter else held


def resample(segments: Sequence[Segment], start: float, end: float, step_s: float) -> list[tuple[float, float | None]]:
    """Mean power per bucket [t, t + step_s), None when any part of the bucket is unknown."""
    if step_s <= 0:
        raise ValueError(f"step_s must be positive, got {step_s}")
    index = SeriesIndex(segments)
    points: list[tuple[float, float | None]] = []
    count = math.ceil((end - start) / step_s) if end > start else 0
    for k in range(count):
        bucket = start + k * step_s  # multiplied, not accumulated, so long series do not drift
        bucket_end = min(bucket + step_s, end)
        part = index.integrate(bucket, bucket_end)
        mean = None if part.unknown_s > 0 else part.energy_wh * SECONDS_PER_HOUR / (bucket_end - bucket)
        points.append((bucket, mean))
    return points


def peak_power(segments: Iterable[Segment]) -> float | None:
    known = [s.power_w for s in segments if s.power_w is not None]
    return max(known) if known else None
