"""What a failed Tesla call is reported as: which condition (per car or account-wide) and the sentence. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from chargebus.clock import iso_utc

from chargebus_tesla.errors import AuthFailed, BleUnavailable, FleetError, RateLimited
from chargebus_tesla.problems import RATE_LIMITED


@dataclass(frozen=True)
class ProblemReport:
    #: the car's VIN, or "*" for a condition of the whole account (a 429 storm, the login)
    scope: str
    key: str
    message: str


def problem_for(
    exc: FleetError, *, vin: str, key: str, what: str, now: float, storm_reported: bool
) -> ProblemReport | None:
    """The problem to report for `exc` (`what` names the call), or None when it is no news on its own: a single
    failed BLE call (an outage is reported by its breaker), or a 429 while the storm is already reported."""
    if isinstance(exc, BleUnavailable):
        return None
    if isinstance(exc, RateLimited):
        if storm_reported:
            return None  # the storm is reported once, when it starts and when it ends (`publish_usage`)
        message = (
            f"rate limited by Tesla until {iso_utc(exc.until)} "
            f"(in {max(0.0, exc.until - now):.0f} s): no Tesla request before then; "
            f"{what} is retried after it"
        )
        return ProblemReport("*", RATE_LIMITED, message)
    if isinstance(exc, AuthFailed):
        return ProblemReport("*", "auth", f"Tesla login needed, all Tesla calls stopped: {exc}")
    return ProblemReport(vin, key, f"{what} failed: {exc}")
