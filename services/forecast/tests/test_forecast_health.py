"""Backoff and error episodes: reported when they start and when they end, never per retry."""

from __future__ import annotations

from chargebus_forecast.health import SourceHealth
from hypothesis import given
from hypothesis import strategies as st


def test_backoff_doubles_up_to_the_cap() -> None:
    health = SourceHealth(retry_initial_s=60, retry_max_s=600)
    delays = []
    for _ in range(6):
        health.failed("boom")
        delays.append(health.retry_delay())
    assert delays == [60, 120, 240, 480, 600, 600]


def test_an_episode_is_reported_once_and_its_end_once() -> None:
    health = SourceHealth(retry_initial_s=1, retry_max_s=8)
    assert health.succeeded() == 0  # nothing to report: it never failed
    assert [health.failed("e") for _ in range(4)] == [True, False, False, False]
    assert health.failing
    assert health.succeeded() == 4
    assert health.failures == 0
    assert health.retry_delay() == 0
    assert health.failed("again")  # a new episode


@given(st.floats(1, 3600), st.floats(1, 86_400), st.integers(1, 10_000))
def test_delay_is_bounded_and_never_falls(initial: float, cap: float, failures: int) -> None:
    health = SourceHealth(retry_initial_s=min(initial, cap), retry_max_s=cap)
    previous = 0.0
    for _ in range(min(failures, 80)):
        health.failed("e")
        delay = health.retry_delay()
        assert min(initial, cap) <= delay <= cap
        assert delay >= previous
        previous = delay
