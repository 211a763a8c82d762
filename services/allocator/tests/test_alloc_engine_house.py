"""The generation/consumption meter form through the engine: the same house gives the same allocation either way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from chargebus_allocator.engine import Round

from services.allocator.tests.alloc_builders import T0, feed_evse, make_engine

TWC = "twc-0001"  # controllable, 240 V 1 phase, 6-32 A
GEN3 = "twc3-garage"  # read-only: a Gen3 TWC charging some other car


@dataclass(frozen=True)
class House:
    generation_w: float  # G: what the panels make
    house_w: float  # H: the house's own load
    charger_w: float  # D: what the controllable TWC draws now
    read_only_w: float = 0.0  # R: what the read-only Gen3 draws
    mode: str = "solar"

    @property
    def grid_w(self) -> float:
        return self.house_w + self.charger_w + self.read_only_w - self.generation_w


HOUSES = [
    House(6000, 500, 0),  # sunny, not charging yet
    House(6000, 800, 3000),  # sunny, charging
    House(8000, 300, 2000, read_only_w=2500),  # a read-only charger on the same house
    House(500, 1000, 1440),  # cloudy: importing
    House(2000, 500, 1440, mode="minsolar"),
    House(9000, 4000, 7680, read_only_w=1000),  # everything at once: importing while it charges
    House(0, 700, 0),  # night
]


def meter_readings(form: str, house: House) -> dict[str, float]:
    """What each meter of a form reads in this house."""
    chargers = house.charger_w + house.read_only_w
    if form == "grid":
        return {"grid": house.grid_w}
    if form == "consumption_includes_chargers":
        return {"pv": house.generation_w, "house": house.house_w + chargers}
    if form == "consumption_without_chargers":
        return {"pv": house.generation_w, "house": house.house_w}
    if form == "generation_only":
        return {"pv": house.generation_w}
    assert form == "generation_is_export"  # a DSMR meter: returned (export) and delivered (import) channels
    return {"pv": max(0.0, -house.grid_w), "house": max(0.0, house.grid_w)}


FORMS: dict[str, dict[str, Any]] = {
    "grid": {},
    "consumption_includes_chargers": {"generation_meter": "pv", "consumption_meter": "house"},
    "consumption_without_chargers": {
        "generation_meter": "pv",
        "consumption_meter": "house",
        "consumption_includes_chargers": False,
    },
    "generation_only": {"generation_meter": "pv"},
    "generation_is_export": {"generation_meter": "pv", "consumption_meter": "house", "generation_is_export": True},
}


def run_house(form: str, house: House, rounds: int = 3) -> list[Round]:
    engine = make_engine(mode=house.mode, **FORMS[form])
    results = []
    for i in range(rounds):
        now = T0 + 5 * i
        feed_evse(engine, TWC, power_w=house.charger_w, charging=house.charger_w > 0)
        feed_evse(engine, GEN3, power_w=house.read_only_w, charging=house.read_only_w > 0)
        for name, watts in meter_readings(form, house).items():
            assert engine.meter_message(f"p/power/{name}", str(watts).encode(), now) == []
        results.append(engine.compute(now))
    return results


def outcome(result: Round) -> Any:
    allocation = result.allocation
    groups = [(p.charge_point.id, p.state, p.allocated_w, p.reason) for p in allocation.points]
    setpoints = sorted((sp.evse_id, sp.power_w, sp.charge) for sp in allocation.setpoints)
    return allocation.grid_w, allocation.surplus_w, allocation.available_w, groups, setpoints, result.notices


@pytest.mark.parametrize("house", HOUSES, ids=str)
@pytest.mark.parametrize("form", [form for form in FORMS if form not in ("grid", "generation_only")])
def test_the_same_house_gives_the_same_allocation_with_either_meter_form(form: str, house: House) -> None:
    expected = [outcome(result) for result in run_house("grid", house)]
    assert [outcome(result) for result in run_house(form, house)] == expected


@pytest.mark.parametrize("house", [House(h.generation_w, 0, h.charger_w, h.read_only_w, h.mode) for h in HOUSES])
def test_a_generation_meter_alone_is_a_house_without_other_load(house: House) -> None:
    expected = [outcome(result) for result in run_house("grid", house)]
    assert [outcome(result) for result in run_house("generation_only", house)] == expected


def test_with_only_the_generation_form_the_allocator_reads_those_meters_and_charges() -> None:
    engine = make_engine(generation_meter="pv", consumption_meter="house")
    assert engine.meters.topics() == ["p/power/pv", "p/power/house"]
    feed_evse(engine, TWC)
    engine.meter_message("p/power/pv", b"5000", T0)
    engine.meter_message("p/power/house", b"200", T0)
    result = engine.compute(T0)
    assert result.state is not None
    assert (result.state.grid_w, result.state.surplus_w) == (-4800, 4800)
    assert result.setpoints[0].power_w == 4800


def test_a_missing_or_stale_generation_meter_means_no_surplus() -> None:
    engine = make_engine(generation_meter="pv", consumption_meter="house")
    feed_evse(engine, TWC)
    engine.meter_message("p/power/house", b"200", T0)
    result = engine.compute(T0)  # no PV reading yet
    assert result.state is not None
    assert (result.state.grid_w, result.state.surplus_w, result.setpoints[0].power_w) == (None, None, 0)
    engine.meter_message("p/power/pv", b"5000", T0 + 1)
    engine.meter_message("p/power/house", b"200", T0 + 20)
    assert engine.compute(T0 + 20).setpoints[0].power_w == 4800
    stale = engine.compute(T0 + 31.01)  # the PV reading is 30.01 s old
    assert [(n.topic, n.payload) for n in stale.notices] == [("p/power/pv", None)]
    assert "solar surplus unknown" in stale.notices[0].error
    assert stale.setpoints[0].power_w == 0


def test_a_negative_generation_counts_as_zero_with_one_notice_per_episode() -> None:
    engine = make_engine(mode="minsolar", generation_meter="pv", consumption_meter="house")
    feed_evse(engine, TWC)

    def step(now: float, pv: bytes) -> Round:
        engine.meter_message("p/power/pv", pv, now)
        engine.meter_message("p/power/house", b"300", now)
        return engine.compute(now)

    first = step(T0, b"-50")
    (notice,) = first.notices
    assert (notice.topic, notice.payload) == ("p/power/pv", None)
    assert "reads below 0 W: counted as 0" in notice.error
    assert first.state is not None
    assert first.state.grid_w == 300  # not 350: the night draw is not counted, and never as surplus
    assert step(T0 + 5, b"-80").notices == []  # the same episode
    back = step(T0 + 10, b"1000")
    assert back.notices == []
    assert [event for event in back.events if "house_meter_note_cleared" in event]
    (again,) = step(T0 + 15, b"-10").notices
    assert again.error == notice.error


def test_a_negative_export_reading_is_import_when_generation_is_export() -> None:
    engine = make_engine(generation_meter="pv", consumption_meter="house", generation_is_export=True)
    feed_evse(engine, TWC)
    engine.meter_message("p/power/pv", b"-50", T0)
    engine.meter_message("p/power/house", b"0", T0)
    result = engine.compute(T0)
    assert result.notices == []
    assert result.state is not None
    assert result.state.grid_w == 50
