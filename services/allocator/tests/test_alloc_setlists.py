"""The list and switch commands (`schedules/set`, `schedules_enabled/set`, `vins/set`) and their overrides."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chargebus.topics import Topics
from chargebus_allocator import commands, schedules
from chargebus_allocator.commands import VinLists
from chargebus_allocator.discovery import SCHEDULES_ENABLED_TEMPLATE, static_entities
from chargebus_allocator.overrides import SCHEDULES, SCHEDULES_ENABLED, VINS, Overrides, load

from services.allocator.tests.alloc_builders import T0, VIN_A, VIN_B

BAD_CHECK_DIGIT = "5YJ3E1EA0KF000001"
OFF = False
WINDOW = {"days": ["mon", "fri"], "start": "23:00", "end": "06:00", "power_w": 7400}


@pytest.mark.parametrize("value", [True, False, "default"])
def test_schedules_enabled_values(value: bool | str) -> None:
    assert commands.schedules_enabled(value) is (None if value == "default" else value)


def test_bad_schedules_enabled_values() -> None:
    for bad in ("true", "on", 1, 0, None, [True], {"enabled": True}):
        with pytest.raises(ValueError, match="schedules_enabled takes true, false or default"):
            commands.schedules_enabled(bad)


def test_vin_lists_replace_both_and_warn_about_check_digits() -> None:
    lists, warnings = commands.vin_lists({"allow": [VIN_A, VIN_A], "deny": [VIN_B]})
    assert lists == VinLists((VIN_A,), (VIN_B,))  # duplicates dropped
    assert [VIN_B in warning for warning in warnings] == [True]  # VIN_B's check digit is wrong: accepted
    assert commands.vin_lists({"deny": [VIN_A]}) == (VinLists((), (VIN_A,)), [])  # a missing list is empty
    assert commands.vin_lists({}) == (VinLists(), [])
    assert commands.vin_lists("default") == (None, [])
    lists, (warning,) = commands.vin_lists({"allow": [BAD_CHECK_DIGIT]})
    assert lists == VinLists((BAD_CHECK_DIGIT,), ())
    assert "check digit" in warning


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([VIN_A], "vins takes"),
        ("allow", "vins takes"),
        (None, "vins takes"),
        ({"allow": VIN_A}, r"vins.allow must be a list"),
        ({"allow": [VIN_A.lower()]}, r"vins.allow\[0\]: invalid VIN"),
        ({"deny": [VIN_A, "SHORT"]}, r"vins.deny\[1\]: invalid VIN"),
        ({"deny": [17]}, "invalid VIN"),
        ({"allow": [VIN_A], "deny": [VIN_A]}, "in both allow and deny"),
        ({"allowed": [VIN_A]}, "unknown key 'allowed'"),
        ({"allow": [VIN_A] * (commands.MAX_VINS + 1)}, "at most 1000"),
    ],
)
def test_bad_vin_lists(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        commands.vin_lists(value)


def test_schedule_lists_are_checked_by_the_pure_module() -> None:
    windows = schedules.parse_schedules([WINDOW])
    assert windows is not None
    assert windows[0].power_w == 7400
    assert schedules.parse_schedules("default") is None
    assert schedules.parse_schedules([]) == ()  # no windows at all: a valid replacement
    bad: list[tuple[Any, str]] = [
        ({"days": ["mon"]}, "expected a JSON list"),
        ([{**WINDOW, "start": "24:00"}], "HH:MM"),
        ([{**WINDOW, "days": ["funday"]}], "days"),
        ([{**WINDOW, "current_a": 16}], "exactly one of power_w and current_a"),
        ([{**WINDOW, "colour": "red"}], "unknown field"),
    ]
    for value, message in bad:
        with pytest.raises(ValueError, match=message):
            schedules.parse_schedules(value)


def test_the_new_overrides_are_listed_as_json_and_survive_the_state_file() -> None:
    overrides = Overrides()
    windows = schedules.parse_schedules([WINDOW])
    assert overrides.put(SCHEDULES, windows, T0)
    assert not overrides.put(SCHEDULES, schedules.parse_schedules([WINDOW]), T0 + 1)  # the same windows
    assert overrides.put(SCHEDULES_ENABLED, OFF, T0)
    assert overrides.put(VINS, VinLists((VIN_A,), ()), T0)
    assert (overrides.schedules(), overrides.schedules_enabled(), overrides.vins_lists()) == (
        windows,
        False,
        VinLists((VIN_A,), ()),
    )
    listing = {item.key: item.value for item in overrides.listing()}
    assert listing[SCHEDULES] == [
        {"days": ["mon", "fri"], "start": "23:00", "end": "06:00", "power_w": 7400, "current_a": None}
        | {"evse_id": None, "vin": None}
    ]
    assert listing[SCHEDULES_ENABLED] is False
    assert listing[VINS] == {"allow": [VIN_A], "deny": []}
    again, problems = load(json.loads(json.dumps(overrides.dump())))
    assert problems == []
    assert again.listing() == overrides.listing()
    assert again.entries == overrides.entries


def test_without_those_overrides_the_config_holds() -> None:
    overrides = Overrides()
    assert (overrides.schedules(), overrides.schedules_enabled(), overrides.vins_lists()) == (None, True, None)
    overrides.put(SCHEDULES_ENABLED, not OFF, T0)
    assert overrides.schedules_enabled()


def test_bad_new_entries_in_the_state_file_are_skipped() -> None:
    since = "2027-01-15T08:00:00.000Z"
    data = {
        "v": 1,
        "overrides": [
            {"key": SCHEDULES, "value": [{**WINDOW, "end": "6am"}], "since": since},
            {"key": SCHEDULES, "value": "default", "since": since},
            {"key": SCHEDULES_ENABLED, "value": "no", "since": since},
            {"key": VINS, "value": {"allow": ["nope"]}, "since": since},
            {"key": VINS, "value": {"allow": [VIN_A], "deny": []}, "since": since},
        ],
    }
    overrides, problems = load(data)
    assert len(problems) == 4
    assert overrides.vins_lists() == VinLists((VIN_A,), ())


def test_the_home_assistant_switch_for_schedules() -> None:
    topics = Topics("p")
    (switch,) = [item for item in static_entities(topics) if item.component == "switch"]
    assert switch.config["command_topic"] == "p/allocator/schedules_enabled/set"
    assert switch.config["state_topic"] == "p/allocator/state"
    assert (switch.config["payload_on"], switch.config["payload_off"]) == ("true", "false")
    assert (switch.config["state_on"], switch.config["state_off"]) == ("true", "false")
    assert switch.config["value_template"] == SCHEDULES_ENABLED_TEMPLATE
    assert "schedules_enabled" in SCHEDULES_ENABLED_TEMPLATE
