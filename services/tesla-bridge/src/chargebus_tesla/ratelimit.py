"""Honouring Tesla's 429: no request before the Retry-After deadline, even across restarts.

Tesla has answered with Retry-After values of many hours; a bridge that forgets the deadline on restart keeps
hitting the API and pays for every 429 (the predecessor used a fixed 10 minutes). The deadline is one for the
whole account: the Usage topic reports a single `rate_limited_until`, and a client that is being throttled has
no business probing other endpoints either.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path

from chargebus.clock import Clock
from chargebus.statefile import read_json, write_json

from chargebus_tesla.errors import RateLimited

log = logging.getLogger(__name__)

#: Wait this long when a 429 carries no usable Retry-After (TeslaMate's choice too).
DEFAULT_RETRY_AFTER_S = 300.0


def retry_after_seconds(header: str | None, now: float) -> float:
    """Seconds to wait from a Retry-After header: delta seconds or an HTTP date; default when absent/garbled."""
    if header is None or not header.strip():
        return DEFAULT_RETRY_AFTER_S
    text = header.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(text).timestamp() - now
        except (TypeError, ValueError, IndexError):
            return DEFAULT_RETRY_AFTER_S
    if not math.isfinite(seconds):
        return DEFAULT_RETRY_AFTER_S
    return max(0.0, seconds)


@dataclass(slots=True)
class Storm:
    """429s with no other answer between them: reported once when it starts and once when it ends."""

    started_at: float
    refusals: int = 0  # 429 answers in it (a deadline carried over from before a restart starts one with none)


class RateLimitGate:
    """The persisted 'blocked until' deadline; `check()` before every request, `answered()` after any answer but a
    429. It also follows the storm: `storm` while one lasts, `take_ended()` once it is over."""

    def __init__(self, clock: Clock, path: Path | None = None) -> None:
        self._clock = clock
        self._path = path
        self._until = self._load()
        self.storm: Storm | None = None
        self._ended: Storm | None = None

    @property
    def blocked_until(self) -> float | None:
        """The deadline while it lies in the future, else None."""
        return self._until if self._until > self._clock.time() else None

    def check(self) -> None:
        until = self.blocked_until
        if until is not None:
            if self.storm is None:
                self.storm = Storm(self._clock.time())
            raise RateLimited(until)

    def answered(self) -> None:
        """Tesla answered a request with anything but a 429: a storm, if one was on, is over."""
        if self.storm is not None:
            self._ended, self.storm = self.storm, None

    def take_ended(self) -> Storm | None:
        """The storm that ended since the last call, once."""
        ended, self._ended = self._ended, None
        return ended

    def block(self, seconds: float) -> float:
        """Block for `seconds` from now (never shortening a longer block); returns the deadline."""
        now = self._clock.time()
        until = max(self._until, now + seconds)
        self._until = until
        if self.storm is None:
            self.storm = Storm(now)
        self.storm.refusals += 1
        if self._path is not None:
            write_json(self._path, {"blocked_until": until})
        log.warning(f"tesla_rate_limited until={until:.0f} wait_s={seconds:.0f}")
        return until

    def _load(self) -> float:
        if self._path is None:
            return 0.0
        try:
            data = read_json(self._path)
        except FileNotFoundError:
            return 0.0
        except (OSError, ValueError) as exc:
            log.warning(f"tesla_rate_limit_file_unreadable path={self._path} error={type(exc).__name__}")
            return 0.0
        until = data.get("blocked_until") if isinstance(data, dict) else None
        if isinstance(until, bool) or not isinstance(until, int | float) or not math.isfinite(until):
            return 0.0
        return float(until)
