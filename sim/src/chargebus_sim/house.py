"""A house with PV for the demo and tests: a sunny morning that turns cloudy after midday.

Pure: power is a function of the simulated time of day, so a run is reproducible and benchmarks can compare
against the same profile offline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SUNRISE_H = 6.0
SUNSET_H = 20.0


@dataclass(frozen=True)
class House:
    pv_peak_w: float = 9_000.0
    base_load_w: float = 450.0
    cloudy_from_h: float = 13.0
    cloud_period_s: float = 600.0
    #: Cloud banks: (from hour, to hour, fraction of the sun that gets through), e.g. ((13.0, 14.5, 0.3),), applied on
    #: top of the passing clouds, so a test can have a dip it can plan for.
    shade: tuple[tuple[float, float, float], ...] = ()

    def pv_w(self, hour_of_day: float) -> float:
        """PV output: a half-sine from sunrise to sunset, dimmed by passing clouds after `cloudy_from_h`."""
        if not SUNRISE_H < hour_of_day < SUNSET_H:
            return 0.0
        sun = math.sin(math.pi * (hour_of_day - SUNRISE_H) / (SUNSET_H - SUNRISE_H))
        if hour_of_day >= self.cloudy_from_h:
            phase = (hour_of_day * 3600.0) / self.cloud_period_s
            # Two incommensurate waves: clouds that come and go without a visible pattern, between 25 % and 100 %.
            cover = 0.5 + 0.25 * math.sin(2 * math.pi * phase) + 0.25 * math.sin(2 * math.pi * phase * 0.37 + 1.0)
            sun *= 1.0 - 0.75 * max(0.0, min(1.0, cover))
        for start_h, end_h, fraction in self.shade:
            if start_h <= hour_of_day < end_h:
                sun *= max(0.0, min(1.0, fraction))
        return round(self.pv_peak_w * sun, 1)

    def house_w(self, hour_of_day: float) -> float:
        """Household consumption without the chargers: a base load with morning and evening peaks."""
        morning = 800.0 * math.exp(-(((hour_of_day - 7.5) / 0.8) ** 2))
        evening = 1_500.0 * math.exp(-(((hour_of_day - 19.0) / 1.2) ** 2))
        return round(self.base_load_w + morning + evening, 1)

    def grid_w(self, hour_of_day: float, chargers_w: float) -> float:
        """Grid import (+) / export (−) with the chargers' measured draw."""
        return round(self.house_w(hour_of_day) + chargers_w - self.pv_w(hour_of_day), 1)


@dataclass
class HomeBattery:
    """A home battery run for self-consumption, as most inverters do: it charges from what would be exported and
    discharges to cover what would be imported, within its power and capacity. While `hold` is set (the user's
    automation applying `allocator/battery_hold`) it does not discharge.

    Its power reads like the allocator expects it: + discharging into the house, − charging. It keeps the energy
    it moved, so a benchmark can count cycles.
    """

    capacity_wh: float = 10_000.0
    max_charge_w: float = 5_000.0
    max_discharge_w: float = 5_000.0
    soc_pct: float = 50.0
    min_soc_pct: float = 5.0  # the inverter's own reserve: it never discharges below
    power_w: float = 0.0
    charged_wh: float = 0.0
    discharged_wh: float = 0.0

    def power_for(self, net_w: float, dt_s: float, *, hold: bool = False) -> float:
        """What it would do over the next `dt_s` given `net_w`, the import the house would have without it
        (house + chargers − PV): + discharging, − charging. Does not change it."""
        hours = dt_s / 3600.0
        stored_wh = self.capacity_wh * self.soc_pct / 100.0
        if net_w < 0:  # an export to absorb
            room_wh = self.capacity_wh - stored_wh
            return -min(-net_w, self.max_charge_w, room_wh / hours if hours > 0 else 0.0)
        if hold:
            return 0.0
        available_wh = max(0.0, stored_wh - self.capacity_wh * self.min_soc_pct / 100.0)
        return min(net_w, self.max_discharge_w, available_wh / hours if hours > 0 else 0.0)

    def step(self, net_w: float, dt_s: float, *, hold: bool = False) -> float:
        """Run for `dt_s` given `net_w` (see `power_for`); returns its power and updates its SoC."""
        power = self.power_for(net_w, dt_s, hold=hold)
        moved_wh = power * dt_s / 3600.0
        if power < 0:
            self.charged_wh -= moved_wh
        else:
            self.discharged_wh += moved_wh
        stored_wh = self.capacity_wh * self.soc_pct / 100.0
        self.soc_pct = min(100.0, max(0.0, (stored_wh - moved_wh) / self.capacity_wh * 100.0))
        self.power_w = round(power, 1)
        return self.power_w

    @property
    def cycles(self) -> float:
        """Full equivalent cycles so far: energy discharged over the capacity."""
        return self.discharged_wh / self.capacity_wh
