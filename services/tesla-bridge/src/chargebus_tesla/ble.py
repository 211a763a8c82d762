"""The BLE command proxy transport, pure: its circuit breaker and how its answers read.

A car with `transport = "ble_proxy"` is reached through a local HTTP proxy that speaks the Fleet API's shape and
talks to the car over Bluetooth (TeslaBleHttpProxy): commands on `POST /api/1/vehicles/{vin}/command/{name}`,
data on `GET /api/1/vehicles/{vin}/vehicle_data?endpoints=…`, the car's sleep state without waking it on
`GET /api/proxy/1/vehicles/{vin}/body_controller_state`. Nothing goes to Tesla and nothing is billed, but BLE is
slow and flaky: the car may be out of range, the adapter busy, a call may take many seconds. So each call has a
timeout, the calls to one proxy go one at a time, and a circuit breaker stops calling a proxy that keeps failing.

The proxy wraps every answer as `{"response": {"result", "reason", "vin", "command", "response": <data>}}` and
answers a failure with HTTP 503 and `result: false` (older versions put the data right under `response`).

No I/O and no clock here: the caller passes `now` (epoch seconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from chargebus.config import TeslaVehicleConfig

#: A call answered later than this (seconds) counts as a failure (TeslaBleHttpProxy retries the connection
#: itself for up to ~30 s before it answers).
DEFAULT_TIMEOUT_S = 30.0
#: This many failed calls in a row open the breaker ...
DEFAULT_BREAKER_FAILURES = 3
#: ... for this long; then one call is tried again (half-open).
DEFAULT_BREAKER_OPEN_S = 300.0

Fallback = Literal["none", "fleet"]
OnlineState = Literal["online", "asleep", "offline", "unknown"]

#: The body controller state call of TeslaBleHttpProxy (never wakes the car, never resets its sleep timer).
STATE_PATH = "/api/proxy/1/vehicles/{vin}/body_controller_state"
#: Commands and wake_up wait for the car's answer instead of only queueing the request.
COMMAND_PARAMS: dict[str, str] = {"wait": "true"}

_SLEEP_WORDS = ("vehicle is sleeping", "vehicle is asleep", "asleep or offline")
_ERROR_TEXT_MAX = 200


@dataclass(frozen=True)
class BleSettings:
    """One car's proxy and how to treat it (from `[[tesla.vehicles]]`)."""

    url: str
    timeout_s: float = DEFAULT_TIMEOUT_S
    breaker_failures: int = DEFAULT_BREAKER_FAILURES
    breaker_open_s: float = DEFAULT_BREAKER_OPEN_S
    fallback: Fallback = "none"

    @classmethod
    def of(cls, vehicle: TeslaVehicleConfig, *, fleet_usable: bool = True) -> BleSettings | None:
        """The settings of a BLE-proxy car, None for a Fleet API car; no fallback without usable Fleet settings."""
        if vehicle.transport != "ble_proxy" or not vehicle.ble_proxy_url:
            return None
        return cls(
            url=vehicle.ble_proxy_url.rstrip("/"),
            timeout_s=vehicle.ble_timeout_s,
            breaker_failures=vehicle.ble_breaker_failures,
            breaker_open_s=vehicle.ble_breaker_open_s,
            fallback=vehicle.ble_fallback if fleet_usable else "none",
        )


# -- the circuit breaker ------------------------------------------------------------------------------------------


class BreakerState(StrEnum):
    CLOSED = "closed"  # calls go through
    OPEN = "open"  # calls are refused until `open_until`
    HALF_OPEN = "half_open"  # the pause is over: the next call is the trial


class CircuitBreaker:
    """After `failures` failed calls in a row, no call for `open_s`; then one trial call decides.

    A success closes it (and resets the count); a failed trial opens it again for `open_s`. `reason` is the failure
    that opened it and stays the same until it closes, so an outage reads the same however long it lasts.
    """

    def __init__(self, failures: int = DEFAULT_BREAKER_FAILURES, open_s: float = DEFAULT_BREAKER_OPEN_S) -> None:
        if failures < 1 or open_s <= 0:
            raise ValueError("a breaker needs failures >= 1 and open_s > 0")
        self.failures = failures
        self.open_s = open_s
        self.consecutive = 0
        self.open_until: float | None = None
        self.reason: str | None = None
        self.opened_at: float | None = None

    def state(self, now: float) -> BreakerState:
        if self.open_until is None:
            return BreakerState.CLOSED
        return BreakerState.OPEN if now < self.open_until else BreakerState.HALF_OPEN

    def allows(self, now: float) -> bool:
        """A call may be made now (closed, or the pause is over)."""
        return self.state(now) is not BreakerState.OPEN

    @property
    def tripped(self) -> bool:
        """Opened and not yet closed by a success (open or half-open): the outage is still on."""
        return self.open_until is not None

    def succeeded(self) -> bool:
        """A call got through; True when this ends an outage."""
        recovered = self.open_until is not None
        self.consecutive, self.open_until, self.reason, self.opened_at = 0, None, None, None
        return recovered

    def failed(self, now: float, reason: str) -> bool:
        """A call failed at `now`; True when this starts an outage (the breaker opens from closed)."""
        self.consecutive += 1
        if self.open_until is not None:
            # The trial (or a call that raced the pause) failed: pause again, same outage.
            self.open_until = now + self.open_s
            return False
        if self.consecutive < self.failures:
            return False
        self.open_until, self.reason, self.opened_at = now + self.open_s, reason, now
        return True


# -- answers --------------------------------------------------------------------------------------------------------


class AnswerKind(StrEnum):
    OK = "ok"  # the proxy reached the car and it did what was asked (`data` holds what it returned)
    REFUSED = "refused"  # the car answered `result: false` (a command's refusal, with its reason)
    ASLEEP = "asleep"  # the proxy reached the car, which sleeps (data is not read without waking it)
    FAILED = "failed"  # the proxy could not do it: not in range, BLE error, bad answer (counts for the breaker)


@dataclass(frozen=True)
class Answer:
    kind: AnswerKind
    data: Any = None
    reason: str = ""


def parse_answer(status: int, body: Any) -> Answer:
    """How one HTTP answer of the proxy reads; `body` is the decoded JSON (None when it was not JSON)."""
    envelope = body.get("response") if isinstance(body, dict) else None
    if not isinstance(envelope, dict):
        text = str(body.get("error") or "") if isinstance(body, dict) else ""
        return Answer(AnswerKind.FAILED, reason=f"HTTP {status} {text}".strip()[:_ERROR_TEXT_MAX])
    reason = str(envelope.get("reason") or body.get("error") or "")[:_ERROR_TEXT_MAX]
    if any(word in reason.lower() for word in _SLEEP_WORDS):
        return Answer(AnswerKind.ASLEEP, reason=reason)
    if status != 200:
        return Answer(AnswerKind.FAILED, reason=f"HTTP {status} {reason}".strip())
    if "result" not in envelope:
        return Answer(AnswerKind.OK, envelope)  # an older proxy: the Fleet API's data right under `response`
    if envelope.get("result") is not True:
        return Answer(AnswerKind.REFUSED, reason=reason)
    data = envelope.get("response")
    return Answer(AnswerKind.OK, data if data is not None else envelope, reason)


def vehicle_data_of(answer: Answer) -> dict[str, Any] | None:
    """The Fleet API `vehicle_data` object inside an OK answer, or None when it has none."""
    data = answer.data
    if isinstance(data, dict) and isinstance(data.get("response"), dict):
        data = data["response"]  # a proxy that passes the Fleet API envelope through unchanged
    return data if isinstance(data, dict) and ("charge_state" in data or "drive_state" in data) else None


def online_state_of(data: Any) -> OnlineState:
    """`vehicleSleepStatus` of the body controller state → the contract's online state."""
    if not isinstance(data, dict):
        return "unknown"
    status = data.get("vehicleSleepStatus", data.get("vehicle_sleep_status"))
    text = str(status or "").upper()
    if text.endswith("AWAKE"):
        return "online"
    if text.endswith("ASLEEP"):
        return "asleep"
    return "unknown"


def refusal_reason(reason: str) -> str:
    """`car could not execute command: is_charging` → `is_charging` (the car's own word, as the Fleet API says)."""
    return reason.rsplit(":", 1)[-1].strip()
