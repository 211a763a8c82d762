"""The BLE proxy's circuit breaker and how the proxy's answers read: pure, on a fake clock."""

from __future__ import annotations

from typing import Any

import pytest
from chargebus.clock import FakeClock
from chargebus.config import TeslaVehicleConfig
from chargebus_tesla.ble import (
    AnswerKind,
    BleSettings,
    BreakerState,
    CircuitBreaker,
    online_state_of,
    parse_answer,
    refusal_reason,
    vehicle_data_of,
)

VIN = "5YJ3E1EA8KF000001"


def fail(breaker: CircuitBreaker, clock: FakeClock, times: int, reason: str = "not in range") -> list[bool]:
    return [breaker.failed(clock.time(), reason) for _ in range(times)]


def test_closed_until_n_failures_in_a_row() -> None:
    clock, breaker = FakeClock(), CircuitBreaker(failures=3, open_s=300)
    assert breaker.state(clock.time()) is BreakerState.CLOSED
    assert fail(breaker, clock, 2) == [False, False]
    assert breaker.allows(clock.time())
    assert not breaker.tripped
    assert breaker.failed(clock.time(), "not in range") is True  # the third one opens it, and says so once
    assert breaker.state(clock.time()) is BreakerState.OPEN
    assert not breaker.allows(clock.time())
    assert breaker.tripped


def test_a_success_resets_the_count() -> None:
    clock, breaker = FakeClock(), CircuitBreaker(failures=3, open_s=300)
    fail(breaker, clock, 2)
    assert breaker.succeeded() is False  # nothing to recover from
    assert fail(breaker, clock, 2) == [False, False]
    assert breaker.allows(clock.time())  # never three in a row


def test_open_for_open_s_then_one_trial() -> None:
    clock, breaker = FakeClock(), CircuitBreaker(failures=2, open_s=300)
    fail(breaker, clock, 2)
    clock.advance(299)
    assert not breaker.allows(clock.time())
    clock.advance(1)
    assert breaker.state(clock.time()) is BreakerState.HALF_OPEN
    assert breaker.allows(clock.time())
    assert breaker.tripped  # the outage lasts until a call gets through


def test_a_successful_trial_closes_it() -> None:
    clock, breaker = FakeClock(), CircuitBreaker(failures=2, open_s=60)
    fail(breaker, clock, 2)
    clock.advance(60)
    assert breaker.succeeded() is True  # the outage is over
    assert breaker.state(clock.time()) is BreakerState.CLOSED
    assert breaker.reason is None
    assert fail(breaker, clock, 1) == [False]  # a fresh count
    assert breaker.allows(clock.time())


def test_a_failed_trial_opens_it_again_for_open_s_without_a_new_outage() -> None:
    clock, breaker = FakeClock(), CircuitBreaker(failures=3, open_s=120)
    fail(breaker, clock, 3, reason="HTTP 503 Vehicle is not in range")
    opened_at = clock.time()
    clock.advance(120)
    assert breaker.failed(clock.time(), "no answer within 30 s") is False  # not a new outage
    assert breaker.open_until == clock.time() + 120
    assert not breaker.allows(clock.time() + 119)
    assert breaker.allows(clock.time() + 120)
    # The outage keeps the reason and the time it started: reported once, with the same words.
    assert breaker.reason == "HTTP 503 Vehicle is not in range"
    assert breaker.opened_at == opened_at


def test_a_long_outage_never_lets_more_than_one_call_per_pause() -> None:
    clock, breaker = FakeClock(), CircuitBreaker(failures=3, open_s=300)
    attempts = 0
    for _ in range(24 * 60):  # a day of a caller that wants to call every minute
        if breaker.allows(clock.time()):
            attempts += 1
            breaker.failed(clock.time(), "not in range")
        clock.advance(60)
    assert attempts == 3 + 24 * 3600 // 300 - 1  # the first three, then one per pause


@pytest.mark.parametrize(("failures", "open_s"), [(0, 60), (3, 0), (3, -1)])
def test_nonsense_settings_are_refused(failures: int, open_s: float) -> None:
    with pytest.raises(ValueError, match="breaker"):
        CircuitBreaker(failures, open_s)


# -- settings -------------------------------------------------------------------------------------------------------


def test_settings_from_the_vehicle_entry() -> None:
    fleet_car = TeslaVehicleConfig(vin=VIN)
    assert BleSettings.of(fleet_car) is None
    ble_car = TeslaVehicleConfig(
        vin=VIN,
        transport="ble_proxy",
        ble_proxy_url="http://10.0.0.5:8080/",
        ble_timeout_s=20,
        ble_breaker_failures=5,
        ble_breaker_open_s=60,
        ble_fallback="fleet",
    )
    settings = BleSettings.of(ble_car)
    assert settings == BleSettings("http://10.0.0.5:8080", 20, 5, 60, "fleet")
    # Without a usable Fleet API account (client_id, token_file) there is nothing to fall back to.
    unusable = BleSettings.of(ble_car, fleet_usable=False)
    assert unusable is not None
    assert unusable.fallback == "none"


def test_vehicle_defaults() -> None:
    car = TeslaVehicleConfig(vin=VIN, transport="ble_proxy", ble_proxy_url="http://127.0.0.1:8080")
    assert (car.ble_timeout_s, car.ble_breaker_failures, car.ble_breaker_open_s, car.ble_fallback) == (
        30,
        3,
        300,
        "none",
    )


# -- answers --------------------------------------------------------------------------------------------------------


def envelope(result: bool, reason: str = "", data: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"result": result, "reason": reason, "vin": VIN, "command": "x"}
    if data is not None:
        body["response"] = data
    return {"response": body}


def test_a_successful_answer_carries_its_data() -> None:
    data = {"charge_state": {"battery_level": 61}}
    answer = parse_answer(200, envelope(result=True, reason="The command was successfully processed.", data=data))
    assert answer.kind is AnswerKind.OK
    assert vehicle_data_of(answer) == data


def test_an_older_proxy_puts_the_data_right_under_response() -> None:
    answer = parse_answer(200, {"response": {"charge_state": {"battery_level": 61}}})
    assert answer.kind is AnswerKind.OK
    assert vehicle_data_of(answer) == {"charge_state": {"battery_level": 61}}


def test_a_passed_through_fleet_envelope_is_unwrapped() -> None:
    inner = {"response": {"charge_state": {"battery_level": 61}}}
    assert vehicle_data_of(parse_answer(200, envelope(result=True, data=inner))) == inner["response"]


def test_a_command_answer_has_no_vehicle_data() -> None:
    assert vehicle_data_of(parse_answer(200, envelope(result=True, reason="done"))) is None


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (503, envelope(result=False, reason="Vehicle is not in range: context deadline exceeded"), AnswerKind.FAILED),
        (503, envelope(result=False, reason="failed to connect to vehicle (A): timeout"), AnswerKind.FAILED),
        (503, envelope(result=False, reason="vehicle is sleeping"), AnswerKind.ASLEEP),
        (200, envelope(result=False, reason="car could not execute command: is_charging"), AnswerKind.REFUSED),
        (404, None, AnswerKind.FAILED),  # not the proxy's path: its text "404 page not found"
        (200, {"something": "else"}, AnswerKind.FAILED),
        (200, None, AnswerKind.FAILED),
        (500, {"response": None, "error": "upstream internal error"}, AnswerKind.FAILED),
    ],
)
def test_failures_refusals_and_sleep(status: int, body: Any, kind: AnswerKind) -> None:
    answer = parse_answer(status, body)
    assert answer.kind is kind
    if kind is AnswerKind.FAILED:
        assert answer.reason.startswith(f"HTTP {status}")


def test_refusal_reason_is_the_cars_word() -> None:
    assert refusal_reason("car could not execute command: is_charging") == "is_charging"
    assert refusal_reason("not_charging") == "not_charging"


@pytest.mark.parametrize(
    ("data", "state"),
    [
        ({"vehicleSleepStatus": "VEHICLE_SLEEP_STATUS_AWAKE"}, "online"),
        ({"vehicleSleepStatus": "VEHICLE_SLEEP_STATUS_ASLEEP"}, "asleep"),
        ({"vehicle_sleep_status": "VEHICLE_SLEEP_STATUS_ASLEEP"}, "asleep"),
        ({"vehicleSleepStatus": "VEHICLE_SLEEP_STATUS_UNKNOWN"}, "unknown"),
        ({}, "unknown"),
        (None, "unknown"),
    ],
)
def test_sleep_status(data: Any, state: str) -> None:
    assert online_state_of(data) == state
