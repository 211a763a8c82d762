"""Command values and the overrides they set: checked first, kept in the state file, shown in allocator/state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from chargebus.statefile import read_json_if_present, write_json
from chargebus_allocator import commands, statefile
from chargebus_allocator.overrides import CHARGE_NOW, MODE, Overrides, evse_key, load, vehicle_key

from services.allocator.tests.alloc_builders import T0, VIN_A


def test_mode_values() -> None:
    assert commands.mode("minsolar") == "minsolar"
    assert commands.mode("default") is None
    for bad in ("Solar", "fast", 1, None, True, ["now"], {"mode": "now"}):
        with pytest.raises(ValueError, match="unknown mode"):
            commands.mode(bad)


def test_priority_values() -> None:
    assert commands.priority(-1000) == -1000
    assert commands.priority(1000) == 1000
    assert commands.priority("default") is None
    for bad in (1001, -1001, 3.5, "10", True, None, [1]):
        with pytest.raises(ValueError, match="priority"):
            commands.priority(bad)


def test_charge_now_values() -> None:
    assert commands.charge_now(3600) == (3600, None)
    assert commands.charge_now(0) == (0, None)
    assert commands.charge_now({"seconds": 60, "evse_id": "twc-4a1b"}) == (60, "twc-4a1b")
    assert commands.charge_now("default") == (0, None)
    bad: list[Any] = [
        -1,
        commands.CHARGE_NOW_MAX_S + 1,
        "an hour",
        True,
        None,
        {"seconds": 60, "evse_id": "TWC-1"},
        {"seconds": 60, "evse": "twc-4a1b"},
        {"evse_id": "twc-4a1b"},
        {"seconds": "60"},
    ]
    for value in bad:
        with pytest.raises(ValueError, match=r"charge_now|evse id"):
            commands.charge_now(value)


def test_ids() -> None:
    assert commands.evse("twc3-garage") == "twc3-garage"
    assert commands.evse(f"car-{VIN_A}") == f"car-{VIN_A}"
    for bad in ("twc-XYZ1", "car-123", "garage", "", 7):
        with pytest.raises(ValueError, match="unknown evse id"):
            commands.evse(bad)
    assert commands.vin(VIN_A) == (VIN_A, None)
    _, warning = commands.vin("5YJ3E1EA0KF000001")  # wrong check digit: accepted, with a warning
    assert warning is not None
    for bad in ("5yj3e1ea8kf000001", "5YJ3E1EA8KF00000I", "SHORT"):
        with pytest.raises(ValueError, match="invalid VIN"):
            commands.vin(bad)


def test_overrides_set_clear_expire_and_list() -> None:
    overrides = Overrides()
    assert overrides.put(MODE, "now", T0)
    assert not overrides.put(MODE, "now", T0 + 1)  # unchanged: keeps its `since`
    assert overrides.put(evse_key("twc-0001", "priority"), 5, T0)
    assert overrides.put(vehicle_key(VIN_A, "priority"), -3, T0)
    assert overrides.put(CHARGE_NOW, T0 + 60, T0)
    assert overrides.put(evse_key("twc-0001", "charge_now"), T0 + 30, T0)
    assert (overrides.mode(), overrides.evse_priority("twc-0001"), overrides.vehicle_priority(VIN_A)) == ("now", 5, -3)
    assert overrides.evse_ids() == {"twc-0001"}
    assert overrides.vins() == {VIN_A}
    listing = {item.key: item.value for item in overrides.listing()}
    assert listing[CHARGE_NOW] == "2027-01-15T08:01:00.000Z"
    assert overrides.expire(T0 + 30) == [evse_key("twc-0001", "charge_now")]
    assert overrides.charge_now_until() == T0 + 60
    assert overrides.put(MODE, None, T0)
    assert not overrides.put(MODE, None, T0)
    assert overrides.mode() is None


def test_state_file_round_trip(tmp_path: Path) -> None:
    overrides = Overrides()
    overrides.put(MODE, "off", T0)
    overrides.put(evse_key("twc-0001", "mode"), "minsolar", T0 + 1)
    overrides.put(CHARGE_NOW, T0 + 3600.5, T0)
    path = statefile.path_in(tmp_path / "state")
    write_json(path, overrides.dump())
    again, problems = load(read_json_if_present(path))
    assert problems == []
    assert again.listing() == overrides.listing()
    assert again.charge_now_until() == pytest.approx(T0 + 3600.5, abs=0.001)
    assert [p.name for p in path.parent.iterdir()] == ["allocator.json"]  # no temporary left behind


def test_a_bad_entry_in_the_file_is_skipped_with_a_reason() -> None:
    since = "2027-01-15T08:00:00.000Z"
    data = {
        "v": 1,
        "overrides": [
            {"key": "mode", "value": "solar", "since": since},
            {"key": "mode", "value": "turbo", "since": since},
            {"key": "evse/garage/priority", "value": 1, "since": since},
            {"key": "vehicle/5YJ3E1EA8KF000001/mode", "value": "now", "since": since},
            {"key": "evse/twc-0001/priority", "value": 5000, "since": since},
            {"key": "charge_now", "value": "soon", "since": since},
            {"key": "priority", "value": 1, "since": since},
            {"key": "mode", "value": "now"},
            "junk",
        ],
    }
    overrides, problems = load(json.loads(json.dumps(data)))
    assert overrides.mode() == "solar"
    assert len(problems) == 8
    not_files: list[Any] = [[], None, {"v": 2, "overrides": []}, {"v": 1}]
    for not_a_file in not_files:
        empty, (problem,) = load(not_a_file)
        assert empty == Overrides()
        assert "not an allocator state file" in problem


def test_reading_a_missing_file_gives_none(tmp_path: Path) -> None:
    assert read_json_if_present(tmp_path / "nothing.json") is None
