from __future__ import annotations

import stat
from pathlib import Path

import pytest
from chargebus.statefile import read_json, read_json_if_present, write_json


def test_written_private_and_whole(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "state.json"
    write_json(path, {"a": 1})
    write_json(path, {"a": 2}, indent=2)
    assert read_json(path) == {"a": 2}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temporary left behind


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_json(path, {"kept": True})
    with pytest.raises(TypeError):
        write_json(path, {"bad": object()})
    assert read_json(path) == {"kept": True}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_missing_file(tmp_path: Path) -> None:
    assert read_json_if_present(tmp_path / "none.json") is None
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "none.json")
