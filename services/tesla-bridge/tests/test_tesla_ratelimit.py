"""Retry-After parsing and the persisted rate-limit deadline."""

from __future__ import annotations

import json
import stat
from email.utils import formatdate
from pathlib import Path

import pytest
from chargebus.clock import FakeClock
from chargebus_tesla.errors import RateLimited
from chargebus_tesla.ratelimit import DEFAULT_RETRY_AFTER_S, RateLimitGate, retry_after_seconds

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("30", 30.0),
        (" 7200 ", 7200.0),
        (formatdate(NOW + 90, usegmt=True), 90.0),
        (formatdate(NOW - 90, usegmt=True), 0.0),
        (None, DEFAULT_RETRY_AFTER_S),
        ("", DEFAULT_RETRY_AFTER_S),
        ("soon", DEFAULT_RETRY_AFTER_S),
        ("nan", DEFAULT_RETRY_AFTER_S),
        ("-5", 0.0),
    ],
)
def test_retry_after(header: str | None, seconds: float) -> None:
    assert retry_after_seconds(header, NOW) == pytest.approx(seconds)


def test_gate_blocks_persists_and_expires(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    path = tmp_path / "rate.json"
    gate = RateLimitGate(clock, path)
    gate.check()
    assert gate.block(30) == NOW + 30
    assert gate.block(10) == NOW + 30  # a shorter block never shortens a longer one
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(RateLimited) as caught:
        RateLimitGate(clock, path).check()
    assert caught.value.until == NOW + 30
    clock.advance(30)
    RateLimitGate(clock, path).check()
    assert gate.blocked_until is None


@pytest.mark.parametrize("content", ["not json", json.dumps({"blocked_until": "x"}), json.dumps([1])])
def test_a_garbled_file_does_not_block(tmp_path: Path, content: str) -> None:
    path = tmp_path / "rate.json"
    path.write_text(content)
    RateLimitGate(FakeClock(NOW), path).check()


def test_a_storm_is_the_429s_with_no_other_answer_between_them() -> None:
    clock = FakeClock(NOW)
    gate = RateLimitGate(clock)
    gate.answered()  # no storm on: nothing ends
    assert gate.take_ended() is None
    gate.block(30)
    clock.advance(30)
    gate.block(60)  # the next request got a 429 again: the same storm
    assert gate.storm is not None
    assert gate.storm.refusals == 2
    assert gate.take_ended() is None
    clock.advance(60)
    gate.answered()
    ended = gate.take_ended()
    assert ended is not None
    assert (ended.started_at, ended.refusals) == (NOW, 2)
    assert gate.take_ended() is None  # reported once
    assert gate.storm is None


def test_a_deadline_from_before_a_restart_opens_a_storm_that_an_answer_ends(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    path = tmp_path / "rate.json"
    RateLimitGate(clock, path).block(30)
    gate = RateLimitGate(clock, path)  # restarted
    with pytest.raises(RateLimited):
        gate.check()
    assert gate.storm is not None
    assert gate.storm.refusals == 0
    clock.advance(30)
    gate.check()
    gate.answered()
    assert gate.take_ended() is not None
