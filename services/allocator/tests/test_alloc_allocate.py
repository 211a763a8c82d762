"""`allocate` end to end: states, reasons, setpoints, read-only loads, slow followers, memory."""

from __future__ import annotations

from dataclasses import replace

import pytest
from chargebus_allocator.model import Circuit, Delays, MeteredLoad, Settings, Timer

from services.allocator.tests.alloc_builders import T0, VIN_A, amps, by_id, point, run, watts

CAR_A = f"car-{VIN_A}"
GARAGE = (Circuit("garage", max_current_a=32, phases=1, voltage_v=240),)


def test_every_charge_point_gets_a_state_and_a_sentence() -> None:
    points = [
        point("twc-0001"),
        point("twc-0002", controllable=False, power_w=1000),
        point("twc-0003", online=False),
        point("twc-0004", plugged_in=False),
        point("twc-0005", vin=VIN_A, authorized=False),
        point("twc-0006", wants_charge=False, soc_pct=80, charge_limit_pct=80),
        point("twc-0007", mode="off"),
        point("twc-0008", schedule_cap_w=1000),
        point("twc-0009", authorized=False),
        point("twc-000a", wants_charge=False),
    ]
    allocation, _ = run(points, mode="now")
    results = by_id(allocation)
    assert {key: (r.state, r.reason) for key, r in results.items()} == {
        "twc-0001": ("charging", "charging at 32 A (7 680 W): its maximum; mode now."),
        "twc-0002": ("read_only", "read-only: it takes no setpoints; its measured 1 000 W counts on no circuit."),
        "twc-0003": (
            "offline",
            "offline: no fresh data from twc-0003; it is told to keep what it does until it reports.",
        ),
        "twc-0004": ("unplugged", "unplugged: no car to charge."),
        "twc-0005": ("refused", f"refused: VIN {VIN_A} is not authorised to charge here."),
        "twc-0006": ("full", "full: the car is at 80 % of its 80 % limit."),
        "twc-0007": ("waiting", "mode off: charging is switched off."),
        "twc-0008": (
            "kicked_out",
            "kicked out: its maximum 1 000 W is below its minimum 1 440 W, so it cannot charge.",
        ),
        "twc-0009": (
            "refused",
            "refused: its car's VIN is unknown, and an unknown VIN is not authorised to charge here.",
        ),
        "twc-000a": ("full", "full: the car reports its charge complete."),
    }
    assert {intent.evse_id for intent in allocation.setpoints} == set(results) - {"twc-0002"}
    told = {intent.evse_id: (intent.power_w, intent.charge) for intent in allocation.setpoints}
    assert told.pop("twc-0003") == (None, None)  # offline: "do not touch"
    assert all(value == (0, False) for key, value in told.items() if key != "twc-0001")


def test_a_merged_charge_point_splits_its_setpoint() -> None:
    merged = point("twc-4a1b", vin=VIN_A, evse_ids=("twc-4a1b", CAR_A), start_stop_evse_id=CAR_A)
    allocation, _ = run([merged], mode="now")
    intents = {intent.evse_id: (intent.power_w, intent.charge) for intent in allocation.setpoints}
    assert intents == {"twc-4a1b": (7680, None), CAR_A: (None, True)}
    kicked, _ = run([merged], mode="off")
    assert {intent.evse_id: (intent.power_w, intent.charge) for intent in kicked.setpoints} == {
        "twc-4a1b": (0, None),
        CAR_A: (None, False),
    }


def test_read_only_and_offline_draws_count_on_their_circuit() -> None:
    points = [
        point("twc-0001", circuit="garage"),
        point("twc3-garage", circuit="garage", controllable=False, power_w=2400),
        point("twc-0002", circuit="garage", online=False, power_w=1200),
    ]
    allocation, _ = run(points, mode="now", circuits=GARAGE)
    assert amps(allocation)["twc-0001"] == 32 - 10 - 5
    assert list(allocation.circuits[0].load_a) == pytest.approx([32])


def test_metered_load_leaves_the_rest_and_an_overfull_circuit_admits_nobody() -> None:
    metered = (Circuit("garage", 32, phases=1, voltage_v=240, metered=MeteredLoad(4800)),)
    allocation, _ = run([point("twc-0001", circuit="garage")], mode="now", circuits=metered)
    assert amps(allocation) == {"twc-0001": 12}
    over = (Circuit("garage", 32, phases=1, voltage_v=240, metered=MeteredLoad(8400)),)
    allocation, _ = run([point("twc-0001", circuit="garage")], mode="now", circuits=over)
    result = allocation.points[0]
    assert (result.state, result.allocated_w) == ("kicked_out", 0)
    assert result.reason == "kicked out: circuit garage is 3 A over its limit on L1"
    assert list(allocation.circuits[0].headroom_a) == pytest.approx([-3])


def test_a_slow_car_counts_at_its_measured_draw_until_it_has_followed_a_decrease() -> None:
    car = point(CAR_A, vin=VIN_A, circuit="garage", follows_slowly=True, power_w=24 * 240, charging=True)
    twc = point("twc-0001", circuit="garage", charging=True)
    allocation, _ = run([car, twc], mode="now", circuits=GARAGE)
    # Fair share is 16 A each, but the car still draws 24 A: the TWC gets only what is really free, 8 A.
    assert amps(allocation) == {CAR_A: 16, "twc-0001": 8}
    assert list(allocation.circuits[0].load_a) == pytest.approx([32])
    assert by_id(allocation)["twc-0001"].reason == (
        "charging at 8 A (1 920 W): circuit garage is full on L1 (32 A) until slower cars there have followed "
        "a decrease; mode now."
    )
    followed, _ = run([replace(car, power_w=16 * 240), twc], mode="now", circuits=GARAGE)
    assert amps(followed) == {CAR_A: 16, "twc-0001": 16}


def test_a_slow_car_over_the_limit_is_cut_to_what_the_circuit_carries_and_blocks_others() -> None:
    metered = (Circuit("garage", 32, phases=1, voltage_v=240, metered=MeteredLoad(20 * 240)),)
    car = point(CAR_A, vin=VIN_A, circuit="garage", follows_slowly=True, power_w=16 * 240, charging=True)
    twc = point("twc-0001", circuit="garage")
    allocation, _ = run([car, twc], mode="now", circuits=metered)
    assert amps(allocation) == {CAR_A: 12, "twc-0001": 0}
    assert by_id(allocation)["twc-0001"].state == "kicked_out"


def test_priority_share_fills_the_highest_first() -> None:
    points = [point("twc-0001", priority=1), point("twc-0002", priority=2)]
    allocation, _ = run(points, mode="solar", grid_w=-9_000, reserve_w=0, share="priority")
    assert watts(allocation) == {"twc-0001": 1440, "twc-0002": 7440}  # 7 560 W is 31.5 A: floored
    assert by_id(allocation)["twc-0001"].reason.startswith("charging at 6 A (1 440 W), its minimum")


def test_reasons_name_the_deciding_limit() -> None:
    points = [point("twc-0001", circuit="garage"), point("twc-0002", circuit="garage"), point("twc-0003")]
    allocation, _ = run(points, mode="solar", grid_w=-12_000, reserve_w=0, circuits=GARAGE)
    reasons = {key: r.reason for key, r in by_id(allocation).items()}
    assert reasons["twc-0001"] == "charging at 16 A (3 840 W): circuit garage is full on L1 (32 A); mode solar."
    assert reasons["twc-0003"] == (
        "charging at 18 A (4 320 W): fair share of 12 000 W available among 3 charge points; mode solar."
    )


def test_timers_are_kept_per_car_and_per_evse() -> None:
    points = [point("twc-0001", vin=VIN_A, charging=True), point("twc-0002")]
    _, timers = run(points, mode="now")
    assert set(timers) == {VIN_A, "twc-0002"}
    assert timers[VIN_A] == Timer("charging", since=T0, charged_since=T0)


def test_two_charge_points_with_one_key_are_refused() -> None:
    with pytest.raises(ValueError, match="share a key"):
        run([point("twc-0001", vin=VIN_A), point("twc-0002", vin=VIN_A)])


def test_stopping_holds_the_minimum_and_says_when_it_stops() -> None:
    twc = point("twc-0001", charging=True, power_w=1440)
    settings = Settings(mode="solar", reserve_w=0, delays=Delays())
    previous = {"twc-0001": Timer("charging", since=T0 - 1000, charged_since=T0 - 1000)}
    allocation, timers = run([twc], grid_w=400, previous=previous, settings=settings)
    result = allocation.points[0]
    assert (result.state, result.allocated_w) == ("stopping", 1440)
    assert result.reason == (
        "stopping in 180 s: 1 040 W available no longer covers its minimum 1 440 W; it holds the minimum until then."
    )
    assert allocation.available_w == 1440  # the held minimum is paid from the 1 040 W first, the grid adds 400 W
    assert allocation.setpoints[0].charge is True
    assert timers["twc-0001"].phase == "stopping"
