"""Meter payloads: plain numbers, PowerReadings, a device's JSON at json_path, scale and invert."""

from __future__ import annotations

import pytest
from chargebus.config import MeterConfig
from chargebus.schema import PayloadError
from chargebus_history.meters import MeterSource, read_meter

T0 = 1_800_000_000.0


def test_native_numbers_and_power_readings() -> None:
    native = MeterSource("grid", "chargebus/power/grid")
    assert read_meter(native, b"-1500.5", T0).power_w == -1500.5
    reading = read_meter(native, b'{"v": 1, "power_w": 230, "energy_wh": 42.0}', T0)
    assert (reading.power_w, reading.energy_wh, reading.meter, reading.ts) == (230.0, 42.0, "grid", T0)
    assert reading.raw == {"v": 1, "power_w": 230, "energy_wh": 42.0}


def test_json_path_scale_and_invert_from_the_config() -> None:
    entry = MeterConfig(name="pv", topic="shellies/em3", json_path="emeters.1.power", scale=1000.0, invert=True)
    source = MeterSource.from_config(entry)
    record = read_meter(source, b'{"emeters": [{"power": 1}, {"power": "2.5"}]}', T0)
    assert record.power_w == -2500.0
    assert record.energy_wh is None
    assert read_meter(source, b'{"emeters": [{}, {"power": 0}]}', T0).power_w == 0.0  # not -0.0


@pytest.mark.parametrize(
    "payload",
    [b"abc", b"true", b"[1]", b'{"power_w": "x"}', b"NaN", b'{"total": 1}', b'{"total_power": true}', b"1e999"],
)
def test_unusable_payloads_are_refused(payload: bytes) -> None:
    sources = (MeterSource("grid", "t"), MeterSource("grid", "t", json_path="total_power"))
    for source in sources:
        with pytest.raises(PayloadError):
            read_meter(source, payload, T0)
