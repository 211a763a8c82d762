from __future__ import annotations

import asyncio
import time

import pytest
from chargebus.clock import FakeClock, SystemClock, clock_from_env, iso_utc, sleep_until_poked


async def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(start=1_000.0)
    assert clock.time() == 1_000.0
    clock.advance(5)
    await clock.sleep(10)
    assert clock.time() == 1_015.0
    assert clock.monotonic() == 15.0
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)


def test_time_scale_from_environment() -> None:
    assert clock_from_env({}).scale == 1.0
    assert clock_from_env({"CHARGEBUS_TIME_SCALE": "60"}).scale == 60.0
    with pytest.raises(ValueError, match="not a number"):
        clock_from_env({"CHARGEBUS_TIME_SCALE": "fast"})
    with pytest.raises(ValueError, match="positive"):
        SystemClock(0)


async def test_scaled_sleep_is_shorter_in_real_time() -> None:
    clock = SystemClock(scale=1000)
    start = clock.time()
    await clock.sleep(50)  # 50 simulated seconds = 50 ms real
    assert clock.time() - start >= 50


def test_iso_format_has_milliseconds_and_z() -> None:
    assert iso_utc(0.1234) == "1970-01-01T00:00:00.123Z"


def test_processes_with_one_origin_agree_on_accelerated_time() -> None:
    origin = time.time() - 100.0  # e.g. when the demo or a test started the first service
    early = SystemClock(60.0, origin)
    later = clock_from_env({"CHARGEBUS_TIME_SCALE": "60", "CHARGEBUS_TIME_ORIGIN": str(origin)})
    assert abs(early.time() - later.time()) < 1.0  # a second of simulated time: well under a setpoint's TTL
    assert early.time() == pytest.approx(origin + 100.0 * 60.0, abs=120.0)


def test_bad_origin_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="CHARGEBUS_TIME_ORIGIN"):
        clock_from_env({"CHARGEBUS_TIME_ORIGIN": "yesterday"})


async def test_sleep_until_poked_returns_on_the_poke_or_the_time() -> None:
    clock = SystemClock(scale=1000.0)  # 60 simulated seconds are 60 ms
    poke = asyncio.Event()
    started = clock.time()
    await sleep_until_poked(clock, 60, poke)
    assert clock.time() - started >= 59  # nothing poked: the whole sleep
    asyncio.get_running_loop().call_later(0.01, poke.set)
    started = clock.time()
    await sleep_until_poked(clock, 3600, poke)  # an hour, cut short by the poke
    assert poke.is_set()
    assert clock.time() - started < 3600
    await sleep_until_poked(clock, 3600, poke)  # already poked: at once
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []  # no waiter left behind
