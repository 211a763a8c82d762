"""The home battery and the site's import limits, as budget figures (docs/site-limits.md).

Battery. Its meter reads + while discharging into the house and − while charging. The cars' solar surplus never
counts the battery's discharge (it is not sun); its charging power counts only once the SoC is at or above
`battery_priority_soc` (below it the battery charges first). Above `battery_buffer_soc` the battery may hold a
solar car that is already charging at its minimum, above `battery_buffer_start_soc` it may start one at its
minimum: those solar charge points are then served like minsolar, the battery covering what the sun lacks. Each
threshold has a band of `SOC_BAND_PCT`: once reached it holds until the SoC falls that far below it, so a battery
hovering at a threshold does not flap the cars. The surplus formula has no jump where the battery turns from
charging to discharging, so a battery swinging around 0 W moves the budget smoothly.

Site limits. `max_import_w` (or a runtime `grid_limit`, the lower of both) caps the grid import at every moment;
`import_average` caps each clock-aligned window's average import. What was imported in the window so far counts:
the rest of the window may import at most `limit + savings / time left` on average, where savings is what the
window could still import above `limit × time left` (spread over at least `MIN_HORIZON_S`). Whenever the house
alone stays at or below `limit`, a window planned this way ends at or below it. The controllable charge points
together may draw the lowest of both rates less the house's own import, measured (the grid reading less the
chargers' draw at its moment); when the house alone is at or above it, they get 0.

Pure: no I/O; times are epoch seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from chargebus_allocator import wording

#: A battery threshold, once reached, holds until the SoC is this many percent below it.
SOC_BAND_PCT = 2.0
#: The savings of a window are spread over at least this long: the last seconds of a window never burst.
MIN_HORIZON_S = 60.0
#: A reading gap longer than this is not integrated as if the last value held (a meter that stopped).
MAX_GAP_S = 120.0


# -- battery -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatteryThresholds:
    priority_soc: float = 50.0
    buffer_soc: float = 90.0
    buffer_start_soc: float = 95.0
    band_pct: float = SOC_BAND_PCT


@dataclass(frozen=True, slots=True)
class BatteryLevel:
    """Which thresholds the SoC is at or above, with hysteresis. Unknown SoC: none (the battery charges first)."""

    priority: bool = False
    buffer: bool = False
    buffer_start: bool = False


def _reached(soc: float, threshold: float, band: float, *, was: bool) -> bool:
    return soc >= (threshold - band if was else threshold)


def battery_level(soc_pct: float | None, thresholds: BatteryThresholds, previous: BatteryLevel | None) -> BatteryLevel:
    if soc_pct is None:
        return BatteryLevel()
    was = previous or BatteryLevel()
    band = thresholds.band_pct
    return BatteryLevel(
        priority=_reached(soc_pct, thresholds.priority_soc, band, was=was.priority),
        buffer=_reached(soc_pct, thresholds.buffer_soc, band, was=was.buffer),
        buffer_start=_reached(soc_pct, thresholds.buffer_start_soc, band, was=was.buffer_start),
    )


def battery_adjustment_w(battery_w: float, level: BatteryLevel) -> float:
    """What to take off the plain solar surplus (`−grid + chargers − reserve`) for the battery's sake.

    Its discharge always comes off (it is not surplus); below the priority SoC its charging stays its own (nothing
    added), at or above it the charging power is the cars' to take (added back).
    """
    if battery_w >= 0:
        return battery_w
    return battery_w if level.priority else 0.0


@dataclass(frozen=True, slots=True)
class Battery:
    """The battery as one round sees it."""

    power_w: float | None  # + discharging, − charging; None while its meter is stale (the surplus is unknown)
    soc_pct: float | None
    level: BatteryLevel

    @property
    def adjustment_w(self) -> float | None:
        return battery_adjustment_w(self.power_w, self.level) if self.power_w is not None else None

    def covers(self, *, charging: bool) -> bool:
        """The battery may hold this solar charge point at its minimum (a running one, or any)."""
        return self.level.buffer_start or (charging and self.level.buffer)


# -- site limits ---------------------------------------------------------------------------------------------------


def import_cap_w(max_import_w: float, grid_limit_w: float | None) -> float | None:
    """The instantaneous cap in force: the configured one (0 = none) and a runtime grid limit, the lower."""
    caps = [cap for cap in (max_import_w if max_import_w > 0 else None, grid_limit_w) if cap is not None]
    return min(caps) if caps else None


def window_bounds(now: float, window_s: float) -> tuple[float, float]:
    """The clock-aligned window holding `now` (UTC epoch multiples of `window_s`, like a meter's quarter hours)."""
    start = math.floor(now / window_s) * window_s
    return start, start + window_s


@dataclass(slots=True)
class ImportWindow:
    """The grid import integrated over the running window; constant-size state.

    Each reading holds until the next (a step function), for at most `MAX_GAP_S`; export counts as 0 import (a
    meter's import register does not run backwards). Time not covered by a reading (before the first one, after a
    restart, while the meter is stale) counts as importing at `assumed_w` (the limit): the window then has no
    savings to spend, but nothing unknown is assumed to have been free either.
    """

    window_s: float
    assumed_w: float
    start: float = math.nan
    imported_j: float = 0.0
    last_at: float = math.nan  # integrated up to here
    held_w: float = 0.0
    held_until: float = -math.inf
    #: The last window that ended: its start and its import (J), for reports and benchmarks.
    closed_start: float | None = None
    closed_j: float = 0.0

    def record(self, at: float, grid_w: float | None) -> None:
        """A grid reading arriving at `at` (None: the meter is stale, nothing is held from now on)."""
        self.advance(at)
        if grid_w is None:
            self.held_until = min(self.held_until, at)
        else:
            self.held_w, self.held_until = max(0.0, grid_w), at + MAX_GAP_S

    def advance(self, now: float) -> None:
        """Integrate up to `now`, starting a new window at each boundary."""
        start, _ = window_bounds(now, self.window_s)
        if math.isnan(self.start):
            self.start = self.last_at = start
        if start - self.start > 3 * self.window_s + MAX_GAP_S:  # long asleep: only the last windows matter
            self.start = start - 3 * self.window_s
            self.last_at = max(self.last_at, self.start)
            self.imported_j = 0.0
        while self.start < start:
            self._integrate(self.start + self.window_s)
            self.closed_start, self.closed_j = self.start, self.imported_j
            self.start += self.window_s
            self.imported_j = 0.0
        self._integrate(now)

    def _integrate(self, until: float) -> None:
        since = self.last_at
        if until <= since:
            return
        held_to = min(until, max(since, self.held_until))
        self.imported_j += self.held_w * (held_to - since) + self.assumed_w * (until - held_to)
        self.last_at = until

    def average_w(self, now: float) -> float:
        """The window's average import so far (0 at its very start)."""
        elapsed = now - self.start
        return self.imported_j / elapsed if elapsed > 0 else 0.0

    @property
    def end(self) -> float:
        return self.start + self.window_s


def average_rate_w(limit_w: float, window_s: float, imported_j: float, now: float, end: float) -> float:
    """The highest import the rest of the window may run at, so that its average stays ≤ `limit_w`.

    `limit + savings / time left`, the savings spread over at least `MIN_HORIZON_S` (an overdraft is not: it is
    paid back in the time there is). Negative when the window is already beyond saving at `limit`.
    """
    left_s = max(0.0, end - now)
    savings_j = limit_w * window_s - imported_j - limit_w * left_s
    if savings_j >= 0:
        return limit_w + savings_j / max(left_s, MIN_HORIZON_S)
    return limit_w + savings_j / max(left_s, 1.0)


@dataclass(frozen=True, slots=True)
class SiteLimit:
    """What every controllable charge point together may draw this round, and which limit decides it."""

    headroom_w: float  # ≥ 0
    label: str  # the binding limit, e.g. "site import cap 11 kW"
    house_w: float | None  # the site's import without the controllable charge points; None when unknown
    #: The grid meter is stale: the house is unknown, so every charge point is held at most at its minimum.
    minimums_only: bool = False

    @property
    def house_alone_over(self) -> bool:
        """The house alone uses all the limit allows: nothing is left for charge points."""
        return self.house_w is not None and self.headroom_w <= 0 and not self.minimums_only

    def describe(self) -> str:
        if self.minimums_only:
            return f"{self.label} (the grid meter is stale, so charge points get at most their minimum)"
        if self.house_alone_over and self.house_w is not None:
            return f"{self.label}: the house alone imports {wording.watts(self.house_w)}, so charge points get 0 W"
        return self.label


def window_name(window_s: float) -> str:
    if window_s == 900:
        return "quarter-hour average"
    if window_s == 3600:
        return "hourly average"
    return f"{wording.seconds(window_s)} average"


def kilowatts(value: float) -> str:
    return f"{value / 1000:.3g} kW"


def site_limit(
    cap_w: float | None,
    average: tuple[float, float, float, float, float] | None,
    house_w: float | None,
) -> SiteLimit | None:
    """The headroom for the chargers under the cap and the window (`(limit_w, window_s, imported_j, now, end)`),
    whichever is lower; None when neither is configured. `house_w` None: the grid meter is stale."""
    candidates: list[tuple[float, str]] = []
    if cap_w is not None:
        candidates.append((cap_w, f"site import cap {kilowatts(cap_w)}"))
    if average is not None:
        limit_w, window_s, imported_j, now, end = average
        rate = average_rate_w(limit_w, window_s, imported_j, now, end)
        budget_wh, used_wh = limit_w * window_s / 3600, imported_j / 3600
        label = (
            f"{window_name(window_s)} {kilowatts(limit_w)}: {max(0.0, budget_wh - used_wh) / 1000:.3g} kWh of "
            f"{budget_wh / 1000:.3g} kWh left, {wording.seconds(end - now)} to go"
        )
        candidates.append((rate, label))
    if not candidates:
        return None
    rate_w, label = min(candidates, key=lambda item: item[0])
    if house_w is None:
        # Unknown house: minimums only, and only as far as the limit itself would allow with no house load.
        return SiteLimit(max(0.0, rate_w), label, None, minimums_only=True)
    return SiteLimit(max(0.0, rate_w - house_w), label, house_w)


def battery_hold(battery: Battery | None, grid_charging: bool) -> bool | None:
    """`battery_hold`: the grid feeds a charge point on purpose (now, a schedule, charge-now) and the battery is below
    its buffer SoC (or its SoC is unknown), so it should not discharge into the car. None without a battery."""
    if battery is None:
        return None
    return grid_charging and not battery.level.buffer
