"""Meters: any topic, json_path, scale, invert; bad payloads keep the last good value; stale after stale_after_s."""

from __future__ import annotations

import pytest
from chargebus.config import MeterConfig
from chargebus.schema import PayloadError
from chargebus.topics import Topics
from chargebus_allocator.meters import MeterBook, MeterSpec, RateLimit, meter_specs, read

from services.allocator.tests.alloc_builders import T0

TOPICS = Topics("p")


def test_a_name_without_an_entry_reads_the_native_power_topic() -> None:
    entries = [MeterConfig(name="grid", topic="shellies/em3/power", json_path="total_power", stale_after_s=10)]
    specs = meter_specs(["grid", "mains", "grid"], entries, TOPICS)
    assert specs["grid"] == MeterSpec("grid", "shellies/em3/power", ("total_power",), stale_after_s=10)
    assert specs["mains"] == MeterSpec("mains", "p/power/mains")


def test_plain_number_and_power_reading() -> None:
    native = MeterSpec("grid", "p/power/grid")
    assert read(native, b"-1500").power_w == -1500
    reading = read(native, b'{"v": 1, "power_w": 900, "phase_power_w": [300, 300, 300], "phase_current_a": [1, 2, 3]}')
    assert (reading.power_w, reading.phase_power_w, reading.phase_current_a) == (900, (300, 300, 300), (1, 2, 3))


def test_json_path_scale_and_invert() -> None:
    spec = MeterSpec("grid", "shelly", ("emeters", "1", "power"), scale=1000, invert=True)
    assert read(spec, b'{"emeters": [{"power": 0}, {"power": 1.5}]}').power_w == -1500
    kilowatts = MeterSpec("pv", "x", None, scale=1000)
    assert read(kilowatts, b'{"v":1,"power_w":2.5,"phase_power_w":[1,1,0.5]}').phase_power_w == (1000, 1000, 500)


@pytest.mark.parametrize(
    "payload",
    [b"", b"abc", b"true", b'"12"', b"[1]", b'{"total": 5}', b'{"total_power": "5"}', b'{"total_power": true}', b"NaN"],
)
def test_bad_payloads_are_rejected_with_a_reason(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        read(MeterSpec("grid", "shelly", ("total_power",)), payload)


def test_bad_native_payloads_are_rejected() -> None:
    for payload in (b"", b"{}", b'{"v": 1, "power_w": 1, "extra": 2}', b"null", b"1e999"):
        with pytest.raises(PayloadError):
            read(MeterSpec("grid", "p/power/grid"), payload)


def test_the_last_good_value_stays_until_stale() -> None:
    book = MeterBook({"grid": MeterSpec("grid", "g", stale_after_s=30)}, started_at=T0)
    assert book.receive("g", b"-2000", T0) == []
    errors = book.receive("g", b"garbage", T0 + 10)
    assert [name for name, _ in errors] == ["grid"]
    last = book.last("grid")
    assert last is not None
    assert (last.load.power_w, last.at) == (-2000, T0)
    assert not book.stale("grid", T0 + 30)
    assert book.stale("grid", T0 + 30.5)
    assert book.next_deadline(T0 + 1) == T0 + 30


def test_stale_episodes_are_reported_once_and_cleared_when_data_returns() -> None:
    book = MeterBook({"grid": MeterSpec("grid", "g", stale_after_s=5)}, started_at=T0)
    assert book.stale_changes(T0 + 1) == ([], [])
    assert book.stale_changes(T0 + 6) == (["grid"], [])  # never heard of since start
    assert "no reading since start" in book.describe_stale("grid", T0 + 6)
    assert book.stale_changes(T0 + 7) == ([], [])
    book.receive("g", b"100", T0 + 8)
    assert book.stale_changes(T0 + 8) == ([], ["grid"])
    assert book.stale_changes(T0 + 20) == (["grid"], [])
    assert "last reading 12 s ago" in book.describe_stale("grid", T0 + 20)


def test_two_meters_may_share_a_topic() -> None:
    specs = {
        "grid": MeterSpec("grid", "em", ("total",)),
        "mains": MeterSpec("mains", "em", ("phases",)),
    }
    book = MeterBook(specs, started_at=T0)
    assert book.topics() == ["em"]
    errors = book.receive("em", b'{"total": 10, "phases": [1, 2, 3]}', T0)
    assert [name for name, _ in errors] == ["mains"]
    assert book.last("grid") is not None
    assert book.last("mains") is None


def test_rate_limit_once_per_key_per_minute() -> None:
    limit = RateLimit(60)
    assert limit.allow("grid", T0)
    assert not limit.allow("grid", T0 + 59)
    assert limit.allow("mains", T0 + 59)
    assert limit.allow("grid", T0 + 60)
