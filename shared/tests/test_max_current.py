"""The shared max_current rules: one parse and one state file for every bridge that takes whole amps."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from chargebus.max_current import MaxCurrentStore, parse_max_current


def test_the_limit_is_named_by_the_bridge() -> None:
    with pytest.raises(ValueError, match=r"above the charge point's max_current_a \(16 A\)"):
        parse_max_current(17, max_amps=16, min_amps=6, limit_name="the charge point's max_current_a")
    assert parse_max_current(0, max_amps=16, min_amps=6, limit_name="x") == 0  # 0 stops charging, everywhere
    assert parse_max_current(16.0, max_amps=16, min_amps=6, limit_name="x") == 16


def test_the_store_keeps_only_its_own_ids_within_its_range(tmp_path: Path) -> None:
    store = MaxCurrentStore(tmp_path / "b.json", evse_id=re.compile(r"^ocpp-[a-z]+$"), max_stored_amps=32)
    store.save({"ocpp-garage": 10})
    assert store.load() == ({"ocpp-garage": 10}, None)
    store.path.write_text('{"max_current_a": {"ocpp-garage": 10, "twc-4a1b": 5, "ocpp-x": 33}}', encoding="utf-8")
    found, problem = store.load()
    assert found == {"ocpp-garage": 10}
    assert problem is not None
    assert "ocpp-x, twc-4a1b" in problem
