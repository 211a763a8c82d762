"""Injectable time.

Every time-based decision (setpoint expiry, hysteresis delays, poll cadences) reads a `Clock`, so unit tests use
`FakeClock` and whole-stack tests run simulated days in minutes with `CHARGEBUS_TIME_SCALE`.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from datetime import UTC, datetime
from typing import Protocol

TIME_SCALE_ENV = "CHARGEBUS_TIME_SCALE"
TIME_ORIGIN_ENV = "CHARGEBUS_TIME_ORIGIN"


class Clock(Protocol):
    def time(self) -> float:
        """Seconds since the epoch (simulated)."""

    def monotonic(self) -> float:
        """Seconds on a monotonic scale (simulated), for intervals."""

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of simulated time."""


async def sleep_until_poked(clock: Clock, seconds: float, poke: asyncio.Event) -> None:
    """Wait `seconds` of simulated time, or less when `poke` is set first (it is not cleared here)."""
    if poke.is_set():
        return
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    poked = asyncio.ensure_future(poke.wait())
    try:
        await asyncio.wait({sleeper, poked}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sleeper, poked):
            task.cancel()
        # let the cancelled waiters finish here, so none is left pending when the loop closes
        await asyncio.gather(sleeper, poked, return_exceptions=True)


def utc_datetime(clock: Clock) -> datetime:
    return datetime.fromtimestamp(clock.time(), tz=UTC)


def format_utc(value: datetime) -> str:
    """The contract's time format: ISO 8601 UTC with milliseconds and a Z (`2026-11-24T12:00:00.123Z`)."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_utc(epoch_s: float) -> str:
    """An epoch time in the contract's format."""
    return format_utc(datetime.fromtimestamp(epoch_s, tz=UTC))


class SystemClock:
    """Real time, optionally accelerated: simulated time starts at the real now and runs `scale` times faster."""

    def __init__(self, scale: float = 1.0, origin: float | None = None) -> None:
        """`origin` (epoch s): the moment simulated and real time were equal. Processes given the same origin agree
        on the simulated time whenever each of them started; without it each starts at its own real now."""
        if not scale > 0:
            raise ValueError(f"time scale must be positive, got {scale}")
        self.scale = scale
        now = time.time()
        self._wall_origin = now if origin is None else origin + (now - origin) * scale
        self._mono_origin = time.monotonic()

    def time(self) -> float:
        return self._wall_origin + (time.monotonic() - self._mono_origin) * self.scale

    def monotonic(self) -> float:
        return time.monotonic() * self.scale

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.scale)


def clock_from_env(environ: dict[str, str] | None = None) -> SystemClock:
    """The process clock: `CHARGEBUS_TIME_SCALE` (default 1) accelerates it; `CHARGEBUS_TIME_ORIGIN` (epoch s) lets
    accelerated processes started at different moments (a restarted service) agree on the time."""
    env = environ if environ is not None else dict(os.environ)
    scale = _env_float(env, TIME_SCALE_ENV)
    origin = _env_float(env, TIME_ORIGIN_ENV)
    return SystemClock(1.0 if scale is None else scale, origin)


def _env_float(env: dict[str, str], name: str) -> float | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{name}={raw!r}: not a finite number")
    return value


class FakeClock:
    """A clock that moves only when told: `advance()` or an awaited `sleep()` (which advances instantly)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._mono = 0.0

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not run backwards")
        self._now += seconds
        self._mono += seconds

    async def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)
