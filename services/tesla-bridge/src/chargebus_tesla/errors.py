"""What can go wrong talking to Tesla, as types the runtime can act on.

Each exception maps to one reaction of the bridge: an asleep car is a state, not a failure; a rate limit is a
deadline; an auth or region problem needs the user and stops further calls until fixed.
"""

# ruff: noqa: N818 -- these name conditions the runtime reacts to (an asleep car is not an "error")

from __future__ import annotations


class FleetError(Exception):
    """Base of every Fleet API failure."""


class VehicleAsleep(FleetError):
    """HTTP 408: the car is asleep or offline. Not an error: the car is simply unreachable without a wake."""

    def __init__(self, vin: str) -> None:
        super().__init__(f"vehicle {vin} is asleep or offline")
        self.vin = vin


class RateLimited(FleetError):
    """HTTP 429 now or earlier: no request may be sent before `until` (epoch seconds)."""

    def __init__(self, until: float) -> None:
        super().__init__(f"rate limited by Tesla until epoch {until:.0f}")
        self.until = until


class RegionMismatch(FleetError):
    """HTTP 421: the account lives in another region; `api_base` must point at that region's host."""

    def __init__(self, api_base: str, suggested_host: str | None) -> None:
        hint = f"; Tesla names {suggested_host}" if suggested_host else ""
        super().__init__(
            f"[tesla] api_base {api_base} is not this account's region (HTTP 421){hint}: "
            "set api_base to your region's Fleet API host"
        )
        self.api_base = api_base
        self.suggested_host = suggested_host


class AuthFailed(FleetError):
    """The tokens cannot be used or refreshed: the user must seed a new token file."""


class CommandProtocolRequired(FleetError):
    """HTTP 403 `Tesla Vehicle Command Protocol required`: commands must go through the signing proxy."""

    def __init__(self) -> None:
        super().__init__("the car requires signed commands: set [tesla] command_base to the vehicle-command HTTP proxy")


class RequestRejected(FleetError):
    """Another 4xx answer (bad request, missing scope, unknown vehicle …): retrying would not help."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(f"Tesla rejected the request: HTTP {status} {error}".rstrip())
        self.status = status
        self.error = error


class FleetUnavailable(FleetError):
    """5xx answers or network failures that outlasted the retries."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"Tesla API unavailable: {detail}")
        self.detail = detail


class BleUnavailable(FleetError):
    """A BLE-proxy car's call did not get through (or its breaker pauses BLE calls) and it has no fallback."""

    def __init__(self, vin: str, url: str, detail: str) -> None:
        super().__init__(f"BLE proxy {url} did not reach car {vin}: {detail}")
        self.vin = vin
        self.url = url
        self.detail = detail
