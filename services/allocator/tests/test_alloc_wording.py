"""Numbers in reasons read the way docs/allocation.md writes them."""

from __future__ import annotations

from chargebus_allocator import wording


def test_watts_group_thousands_with_a_space() -> None:
    assert wording.watts(4000) == "4 000 W"
    assert wording.watts(4320.4) == "4 320 W"
    assert wording.watts(12_000_000) == "12 000 000 W"
    assert wording.watts(-3000) == "-3 000 W"
    assert wording.watts(0) == "0 W"


def test_amps_drop_a_zero_decimal() -> None:
    assert wording.amps(6) == "6 A"
    assert wording.amps(6.04) == "6 A"
    assert wording.amps(3.5) == "3.5 A"


def test_seconds_are_whole_and_never_negative() -> None:
    assert wording.seconds(44.6) == "45 s"
    assert wording.seconds(-1) == "0 s"
