"""The grid figure from a grid meter, or from generation (+ consumption) and the chargers' draw."""

from __future__ import annotations

import math

from chargebus.config import AllocatorConfig
from chargebus_allocator.house_meters import GridFigure, HouseMeters, MeterValue, house_grid_w
from hypothesis import given
from hypothesis import strategies as st

GRID = HouseMeters(grid_meter="grid")
INCLUDES = HouseMeters(grid_meter=None, generation_meter="pv", consumption_meter="house")
EXCLUDES = HouseMeters(
    grid_meter=None, generation_meter="pv", consumption_meter="house", consumption_includes_chargers=False
)
PV_ONLY = HouseMeters(grid_meter=None, generation_meter="pv")
EXPORT = HouseMeters(
    grid_meter=None, generation_meter="returned", consumption_meter="delivered", generation_is_export=True
)
NET_EXPORT = HouseMeters(grid_meter=None, generation_meter="export", generation_is_export=True)

watts = st.floats(min_value=0, max_value=50_000, allow_nan=False)


def figure(meters: HouseMeters, chargers_w: float = 0.0, **readings: float) -> GridFigure:
    return meters.grid({name: MeterValue(value) for name, value in readings.items()}, MeterValue(chargers_w))


def close(a: float | None, b: float) -> bool:
    return a is not None and math.isclose(a, b, abs_tol=1e-6)


@given(generation=watts, house=watts, chargers=watts)
def test_the_same_house_gives_the_same_figure_in_every_form(generation: float, house: float, chargers: float) -> None:
    truth = house + chargers - generation
    grid = figure(GRID, chargers, grid=truth)
    includes = figure(INCLUDES, chargers, pv=generation, house=house + chargers)
    excludes = figure(EXCLUDES, chargers, pv=generation, house=house)
    export = figure(EXPORT, chargers, returned=max(0.0, -truth), delivered=max(0.0, truth))
    net = figure(NET_EXPORT, chargers, export=-truth)
    for result in (grid, includes, excludes, export, net):
        assert close(result.grid_w, truth)
        assert not result.stale
        assert result.notes == ()
    assert close(figure(PV_ONLY, chargers, pv=generation).grid_w, chargers - generation)  # a house drawing nothing


def test_worked_numbers() -> None:
    # TWCManager's regression numbers (its test suite): 2 838 W generation, 5 836 W consumption incl. a 19.83 A
    # charger at 240 V.
    chargers = 19.83 * 240
    result = figure(INCLUDES, chargers, pv=2838, house=5836)
    assert close(result.grid_w, 5836 - 2838)
    surplus_for_chargers = -(result.grid_w or 0.0) + chargers
    assert surplus_for_chargers > 0
    assert close(figure(EXCLUDES, 1000, pv=3000, house=500).grid_w, -1500)
    assert close(figure(PV_ONLY, 1000, pv=3000).grid_w, -2000)


def test_a_consumption_meter_lagging_the_chargers_never_invents_surplus() -> None:
    # The consumption meter still shows 800 W while the chargers already draw 3 000 W: the house counts as 0 W.
    result = figure(INCLUDES, 3000, pv=4000, house=800)
    assert close(result.grid_w, -1000)
    assert house_grid_w(generation_w=4000, consumption_w=800, chargers_w=3000, consumption_includes_chargers=True) == (
        -1000
    )
    # A split import/export pair is not clamped: exporting 2 000 W while the chargers draw 3 000 W.
    assert close(figure(EXPORT, 3000, returned=2000, delivered=0).grid_w, -2000)


def test_negative_generation_counts_as_zero_with_a_note() -> None:
    result = figure(PV_ONLY, 1500, pv=-40)
    assert close(result.grid_w, 1500)
    assert not result.stale
    assert result.notes == (
        "generation meter 'pv' reads below 0 W: counted as 0 (set generation_is_export if it measures grid export)",
    )
    assert figure(PV_ONLY, 1500, pv=-60).notes == result.notes  # a fixed sentence: report once, not per reading
    assert close(figure(INCLUDES, 1500, pv=-40, house=2000).grid_w, 2000)


def test_negative_generation_is_used_as_is_when_it_is_grid_export() -> None:
    result = figure(NET_EXPORT, 1500, export=-700)  # importing 700 W, chargers included
    assert close(result.grid_w, 700)
    assert result.notes == ()


def test_negative_consumption_counts_as_zero_with_a_note() -> None:
    result = figure(EXCLUDES, 1000, pv=3000, house=-20)
    assert close(result.grid_w, -2000)
    assert result.notes == ("consumption meter 'house' reads below 0 W: counted as 0",)


def test_missing_consumption_meter_counts_only_the_chargers() -> None:
    assert PV_ONLY.meter_names == ("pv",)
    result = figure(PV_ONLY, 2300, pv=5000)
    assert close(result.grid_w, -2700)
    assert not result.stale


def test_a_reading_not_yet_received_is_missing_and_stale() -> None:
    result = figure(INCLUDES, 1000, pv=3000)  # no reading from "house" yet
    assert result == GridFigure(None, stale=True, notes=("no reading from meter 'house' yet",))
    assert figure(GRID, 1000) == GridFigure(None, stale=True, notes=("no reading from meter 'grid' yet",))
    nothing = HouseMeters(grid_meter=None)
    assert nothing.meter_names == ()
    assert figure(nothing).grid_w is None
    assert figure(nothing).stale


def test_stale_when_any_reading_used_is_stale() -> None:
    fresh, old = MeterValue(1000, at=100.0), MeterValue(1000, stale=True, at=40.0)
    chargers = MeterValue(500)
    assert not INCLUDES.grid({"pv": fresh, "house": fresh}, chargers).stale
    assert INCLUDES.grid({"pv": old, "house": fresh}, chargers).stale
    assert INCLUDES.grid({"pv": fresh, "house": old}, chargers).stale
    assert INCLUDES.grid({"pv": fresh, "house": fresh}, MeterValue(500, stale=True)).stale
    assert PV_ONLY.grid({"pv": fresh}, MeterValue(500, stale=True)).stale
    assert GRID.grid({"grid": old}, chargers) == GridFigure(1000, stale=True, at=40.0)
    # An export meter already sees the chargers: their draw is not used, so their staleness does not matter.
    assert not EXPORT.grid({"returned": fresh, "delivered": fresh}, MeterValue(500, stale=True)).stale
    assert EXPORT.grid({"returned": fresh, "delivered": old}, chargers).stale
    stale_but_known = INCLUDES.grid({"pv": old, "house": fresh}, chargers)
    assert stale_but_known.grid_w == 0  # the last values still give a figure, flagged stale
    assert stale_but_known.at == 40.0  # the oldest reading used


def test_meters_from_the_config() -> None:
    default = HouseMeters.from_config(AllocatorConfig())
    assert default.meter_names == ("grid",)
    split = HouseMeters.from_config(
        AllocatorConfig.model_validate(
            {"generation_meter": "pv", "consumption_meter": "house", "consumption_includes_chargers": False}
        )
    )
    assert split.meter_names == ("pv", "house")
    assert split.grid_meter is None
    assert not split.consumption_includes_chargers
    export = HouseMeters.from_config(
        AllocatorConfig.model_validate({"generation_meter": "x"}), generation_is_export=True
    )
    assert export.generation_is_export


def test_an_export_meter_with_chargers_excluded_is_noted() -> None:
    odd = HouseMeters(
        grid_meter=None, generation_meter="export", consumption_includes_chargers=False, generation_is_export=True
    )
    result = figure(odd, 1000, export=500)
    assert close(result.grid_w, -500)
    assert result.notes == ("consumption_includes_chargers = false ignored: an export meter already sees the chargers",)
