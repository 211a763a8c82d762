"""Pure bookkeeping of one source's failures: the retry delay (capped exponential backoff) and the two moments worth
an ErrorEvent, when a failure episode starts and when it ends (docs/contract.md §10.1), never each retry."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class SourceHealth:
    retry_initial_s: float
    retry_max_s: float
    failures: int = 0  # failed attempts in a row: 0 while the source works
    last_error: str | None = field(default=None)

    @property
    def failing(self) -> bool:
        return self.failures > 0

    def failed(self, error: str) -> bool:
        """Count a failed attempt; True when it starts an episode (the one to report)."""
        self.failures += 1
        self.last_error = error
        return self.failures == 1

    def succeeded(self) -> int:
        """Count a success; the failed attempts of the episode it ends (0: there was none to report)."""
        ended, self.failures, self.last_error = self.failures, 0, None
        return ended

    def retry_delay(self) -> float:
        """Seconds until the next attempt after the `failures`-th failure in a row: initial, doubling, capped."""
        if self.failures == 0:
            return 0.0
        exponent = min(self.failures - 1, 60)  # 2**60 × anything ≥ 1 s is far beyond any cap
        return min(self.retry_max_s, self.retry_initial_s * 2.0**exponent)
