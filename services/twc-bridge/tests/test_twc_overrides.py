"""max_current values and the state file that keeps them across restarts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from chargebus_twc.overrides import OverrideStore, parse_max_current


@pytest.mark.parametrize(
    ("value", "expected"),
    [(16, 16), (16.0, 16), (0, 0), (6, 6), (32, 32), ("default", None), (" Default ", None)],
)
def test_accepted_values(value: Any, expected: int | None) -> None:
    assert parse_max_current(value, wiring_max_amps=32, min_amps=6) == expected


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (33, "above twc.wiring_max_amps"),
        (-1, "negative"),
        (3, "below the minimum"),
        (7.5, "whole amps"),
        (True, "got bool"),
        (None, "got NoneType"),
        ([16], "got list"),
        ("16", "text"),
        (float("inf"), "finite"),
    ],
)
def test_refused_values(value: Any, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_max_current(value, wiring_max_amps=32, min_amps=6)


def test_store_round_trip_and_atomic_replace(tmp_path: Path) -> None:
    store = OverrideStore(tmp_path / "state")
    assert store.load() == ({}, None)
    store.save({"twc-4a1b": 16, "twc-0001": 0})
    assert OverrideStore(tmp_path / "state").load() == ({"twc-0001": 0, "twc-4a1b": 16}, None)
    store.save({})
    assert json.loads(store.path.read_text()) == {"v": 1, "max_current_a": {}}
    assert [p.name for p in store.path.parent.iterdir()] == ["twc-bridge.json"]  # no temporary left behind


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "no 'max_current_a'"),
        ('{"max_current_a": 5}', "no 'max_current_a'"),
    ],
)
def test_an_unusable_file_is_reported_and_ignored(tmp_path: Path, content: str, problem: str) -> None:
    store = OverrideStore(tmp_path)
    store.path.write_text(content, encoding="utf-8")
    overrides, found = store.load()
    assert overrides == {}
    assert found is not None
    assert problem in found


def test_invalid_entries_are_skipped_and_named(tmp_path: Path) -> None:
    store = OverrideStore(tmp_path)
    store.path.write_text(
        json.dumps({"max_current_a": {"twc-4a1b": 10, "twc-XYZ": 10, "twc-0002": 500, "twc-0003": "7"}}),
        encoding="utf-8",
    )
    overrides, problem = store.load()
    assert overrides == {"twc-4a1b": 10}
    assert problem is not None
    assert "twc-0002, twc-0003, twc-XYZ" in problem
