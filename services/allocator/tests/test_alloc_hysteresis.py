"""The per-charge-point state machine of docs/allocation.md §6, step by step."""

from __future__ import annotations

from chargebus_allocator.hysteresis import (
    advance,
    counts_as_charging,
    may_hold,
    min_off_left_s,
    seed,
    start_left_s,
    stop_left_s,
    unplugged,
)
from chargebus_allocator.model import Delays, Timer

T = 1_000.0
DELAYS = Delays(enable_delay_s=60, disable_delay_s=180, min_on_s=300, min_off_s=300)


def test_seeded_from_the_evse_report() -> None:
    assert seed(charging=True, now=T) == Timer("charging", since=T, charged_since=T)
    assert seed(charging=False, now=T) == Timer("idle", since=T)


def test_idle_starts_only_after_the_enable_delay() -> None:
    timer = advance(Timer(), "admitted", DELAYS, T, delayed=True)
    assert timer.phase == "starting"
    assert start_left_s(timer, DELAYS, T + 20) == 40
    assert advance(timer, "admitted", DELAYS, T + 59, delayed=True).phase == "starting"
    charging = advance(timer, "admitted", DELAYS, T + 60, delayed=True)
    assert charging == Timer("charging", since=T + 60, charged_since=T + 60)


def test_starting_falls_back_to_idle_when_not_admitted_and_starts_over() -> None:
    timer = advance(Timer(), "admitted", DELAYS, T, delayed=True)
    timer = advance(timer, "dropped", DELAYS, T + 30, delayed=True)
    assert timer.phase == "idle"
    assert min_off_left_s(timer, DELAYS, T + 30) == 0  # it never charged: nothing to rest from
    timer = advance(timer, "admitted", DELAYS, T + 35, delayed=True)
    assert (timer.phase, timer.since) == ("starting", T + 35)


def test_modes_that_act_at_once_skip_the_enable_delay() -> None:
    assert advance(Timer(), "admitted", DELAYS, T, delayed=False).phase == "charging"


def test_charging_holds_its_minimum_through_the_disable_delay_and_min_on() -> None:
    charging = Timer("charging", since=T, charged_since=T)
    assert may_hold(charging, DELAYS, T + 10)
    stopping = advance(charging, "held", DELAYS, T + 10, delayed=True)
    assert stopping == Timer("stopping", since=T + 10, charged_since=T)
    # min_on (T + 300) outlasts the disable delay (T + 190).
    assert stop_left_s(stopping, DELAYS, T + 100) == 200
    assert may_hold(stopping, DELAYS, T + 299)
    assert not may_hold(stopping, DELAYS, T + 300)
    stopped = advance(stopping, "dropped", DELAYS, T + 300, delayed=True)
    assert stopped == Timer("idle", since=T + 300, stopped_at=T + 300)


def test_the_disable_delay_counts_from_the_start_of_stopping() -> None:
    charging = Timer("charging", since=T, charged_since=T)
    stopping = advance(charging, "held", DELAYS, T + 1000, delayed=True)
    assert stop_left_s(stopping, DELAYS, T + 1000) == 180
    assert advance(stopping, "held", DELAYS, T + 1100, delayed=True).since == T + 1000


def test_stopping_returns_to_charging_and_keeps_its_start_time() -> None:
    stopping = Timer("stopping", since=T + 100, charged_since=T)
    again = advance(stopping, "admitted", DELAYS, T + 150, delayed=True)
    assert again == Timer("charging", since=T, charged_since=T)
    assert counts_as_charging(stopping)
    assert counts_as_charging(again)


def test_min_off_after_a_stop() -> None:
    stopped = Timer("idle", since=T, stopped_at=T)
    assert min_off_left_s(stopped, DELAYS, T + 100) == 200
    assert min_off_left_s(stopped, DELAYS, T + 300) == 0


def test_unplugging_starts_a_fresh_session() -> None:
    stopped = Timer("idle", since=T, stopped_at=T)
    assert unplugged(stopped, T + 5) == Timer("idle", since=T + 5)
    fresh = Timer("idle", since=T)
    assert unplugged(fresh, T + 5) is fresh


def test_idle_stays_idle_when_dropped() -> None:
    timer = Timer("idle", since=T)
    assert advance(timer, "dropped", DELAYS, T + 5, delayed=True) is timer
