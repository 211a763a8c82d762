"""The grid figure the budget needs (+ import, − export), from either meter form of `[allocator]` (docs/contract.md §2).

- `grid_meter`: its reading is the grid figure.
- `generation_meter` G (+ optional `consumption_meter` C), with D the chargers' measured draw (Σ `power_w` of every
  charge point after the VIN merge, controllable and read-only, each counted once):

  ===============================================  =====================  ==========================
  form                                             house load H           grid
  ===============================================  =====================  ==========================
  consumption meter, `consumption_includes_...`    max(0, C − D)          H + D − G  (= C − G)
  consumption meter, chargers not included         max(0, C)              H + D − G
  no consumption meter                             0 (only D known)       D − G
  `generation_is_export` (G is grid export)        —                      C − G  (C = 0 without one)
  ===============================================  =====================  ==========================

The mapping to TWCManager (see docs/migrating-from-twcmanager.md): `consumption_includes_chargers = true` is its
`subtractChargerLoad = true` and, like it, the house load it implies is clamped at 0 (a consumption meter that lags a
charger ramping up must not invent surplus; the clamp makes the figure larger, never smaller). `generation_is_export`
is its `treatGenerationAsGridDelivery`: the "generation" meter measures what leaves the house at the grid connection
(a DSMR "returned" channel, or a net meter where import reads negative), so it already contains the chargers and the
consumption meter, if any, is the import channel; nothing is clamped and D is not used. A PV meter that reads below
0 (wrong sign, or an inverter's night draw) counts as 0 with a note: TWCManager negated it (#442), which turns a
wrong sign into phantom surplus. For a net export meter, `grid_meter` with `[[meters]] invert = true` is the
simpler setting.

The figure is stale when any reading it uses is stale or missing; `grid_w` is None only when one is missing. Notes
are fixed sentences (no numbers), so a caller can report each once on `…/error` and clear it when it goes away.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from chargebus.config import AllocatorConfig


@dataclass(frozen=True, slots=True)
class MeterValue:
    """One input: a meter's latest value in W (sign as received after scale/invert), or the chargers' draw."""

    power_w: float
    stale: bool = False
    at: float | None = None  # epoch seconds it was received, when known


@dataclass(frozen=True, slots=True)
class GridFigure:
    grid_w: float | None  # + import, − export; None while a reading it needs has never arrived
    stale: bool  # any reading used is stale or missing: treat the surplus as unknown
    notes: tuple[str, ...] = ()  # warnings, fixed sentences
    at: float | None = None  # the oldest `at` among the readings used


@dataclass(frozen=True, slots=True)
class HouseMeters:
    """Which meters give the grid figure, and how to combine them."""

    grid_meter: str | None = "grid"
    generation_meter: str | None = None
    consumption_meter: str | None = None
    consumption_includes_chargers: bool = True
    generation_is_export: bool = False

    @classmethod
    def from_config(cls, config: AllocatorConfig, *, generation_is_export: bool = False) -> HouseMeters:
        return cls(
            grid_meter=config.grid_meter,
            generation_meter=config.generation_meter,
            consumption_meter=config.consumption_meter,
            consumption_includes_chargers=config.consumption_includes_chargers,
            generation_is_export=generation_is_export,
        )

    @property
    def meter_names(self) -> tuple[str, ...]:
        """The meters to subscribe to for the grid figure."""
        if self.generation_meter is None:
            return () if self.grid_meter is None else (self.grid_meter,)
        return (self.generation_meter,) + (() if self.consumption_meter is None else (self.consumption_meter,))

    def grid(self, readings: Mapping[str, MeterValue], chargers: MeterValue) -> GridFigure:
        """The grid figure from the latest reading of each meter (absent: none yet) and the chargers' draw."""
        if self.generation_meter is not None:
            return self._from_generation(readings, chargers)
        if self.grid_meter is None:
            return GridFigure(None, stale=True, notes=("no grid_meter or generation_meter is configured",))
        reading = readings.get(self.grid_meter)
        if reading is None:
            return GridFigure(None, stale=True, notes=(f"no reading from meter {self.grid_meter!r} yet",))
        return GridFigure(reading.power_w, stale=reading.stale, at=reading.at)

    def _from_generation(self, readings: Mapping[str, MeterValue], chargers: MeterValue) -> GridFigure:
        assert self.generation_meter is not None
        names = self.meter_names
        missing = tuple(f"no reading from meter {name!r} yet" for name in names if name not in readings)
        if missing:
            return GridFigure(None, stale=True, notes=missing)
        generation = readings[self.generation_meter]
        consumption = readings[self.consumption_meter] if self.consumption_meter is not None else None
        used = [reading for reading in (generation, consumption) if reading is not None]
        notes: list[str] = []
        if self.generation_is_export:
            grid_w = (consumption.power_w if consumption is not None else 0.0) - generation.power_w
            if not self.consumption_includes_chargers:
                notes.append("consumption_includes_chargers = false ignored: an export meter already sees the chargers")
        else:
            used.append(chargers)
            grid_w = house_grid_w(
                generation_w=max(0.0, generation.power_w),
                consumption_w=consumption.power_w if consumption is not None else None,
                chargers_w=chargers.power_w,
                consumption_includes_chargers=self.consumption_includes_chargers,
            )
            if generation.power_w < 0:
                notes.append(
                    f"generation meter {self.generation_meter!r} reads below 0 W: counted as 0 "
                    "(set generation_is_export if it measures grid export)"
                )
            if consumption is not None and consumption.power_w < 0:
                notes.append(f"consumption meter {self.consumption_meter!r} reads below 0 W: counted as 0")
        times = [reading.at for reading in used if reading.at is not None]
        return GridFigure(
            grid_w, stale=any(reading.stale for reading in used), notes=tuple(notes), at=min(times, default=None)
        )


def house_grid_w(
    *,
    generation_w: float,
    consumption_w: float | None,
    chargers_w: float,
    consumption_includes_chargers: bool,
) -> float:
    """`house load + chargers − generation`, the house load being what the consumption meter says besides chargers."""
    if consumption_w is None:
        house_w = 0.0
    elif consumption_includes_chargers:
        house_w = max(0.0, consumption_w - chargers_w)
    else:
        house_w = max(0.0, consumption_w)
    return house_w + chargers_w - generation_w
