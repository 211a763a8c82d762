"""TeslaMate's feed, pure: topics, "" as null, units, retained vs live, freshness and the start-up grace."""

from __future__ import annotations

from chargebus_tesla.poll_policy import TESLAMATE_SUSPENDED_SILENCE_S
from chargebus_tesla.teslamate import (
    STARTUP_GRACE_S,
    TeslaMateCar,
    car_topic_filter,
    decode_value,
    geofence_says_home,
    parse_topic,
)

T0 = 1_800_000_000.0
STALE_S = 900.0


def car_with(now: float = T0, *, retained: bool = False, **values: str) -> TeslaMateCar:
    car = TeslaMateCar(1)
    for name, value in values.items():
        car.apply(name, value.encode(), now, retained=retained)
    return car


def heard(car: TeslaMateCar) -> float | None:
    return car.last_message_at


def test_topics_with_and_without_a_namespace() -> None:
    assert car_topic_filter("teslamate", 1) == "teslamate/cars/1/#"
    assert parse_topic("teslamate", "teslamate/cars/1/battery_level") == (1, "battery_level")
    assert parse_topic("teslamate/ns", "teslamate/ns/cars/12/state") == (12, "state")
    assert parse_topic("teslamate", "teslamate/ns/cars/1/state") is None
    assert parse_topic("teslamate", "teslamate/cars/x/state") is None
    assert parse_topic("teslamate", "teslamate/cars/1/a/b") is None
    assert parse_topic("teslamate", "teslamate/cars/1/") is None
    assert parse_topic("teslamate", "other/cars/1/state") is None


def test_empty_string_is_null() -> None:
    assert decode_value(b"") is None
    assert decode_value(b"  ") is None
    assert decode_value(b"11") == "11"
    car = car_with(charger_power="11")
    assert car.report().charger_power_w == 11_000.0
    assert car.apply("charger_power", b"", T0, retained=False)
    assert car.report().charger_power_w is None


def test_charging_fields_in_contract_units() -> None:
    car = car_with(
        state="charging",
        charging_state="Charging",
        charger_actual_current="16",
        charger_phases="3",
        charger_voltage="230",
        charger_power="11",
        charge_energy_added="5.06",
        time_to_full_charge="1.5",
        battery_level="62",
        charge_limit_soc="80",
        charge_current_request="16",
        charge_current_request_max="16",
        plugged_in="true",
    )
    report = car.report()
    assert report.charging_state == "Charging"
    assert report.charging
    assert report.charger_actual_current_a == 16
    assert report.charger_phases == 3
    assert report.charger_voltage_v == 230
    assert report.charger_power_w == 11_000
    assert report.charge_energy_added_wh == 5060
    assert report.time_to_full_s == 5400
    assert report.soc_pct == 62
    assert report.charge_limit_pct == 80
    assert car.plugged_in is True
    assert car.online_state == "online"


def test_garbage_values_are_unknown_not_a_crash() -> None:
    car = car_with(
        charging_state="Exploding",
        charger_phases="7",
        charger_voltage="abc",
        battery_level="NaN",
        location="{not json",
        plugged_in="maybe",
        healthy="yes",
    )
    report = car.report()
    assert report.charging_state is None
    assert report.charger_phases is None
    assert report.charger_voltage_v is None
    assert report.soc_pct is None
    assert report.latitude is None
    assert car.plugged_in is None
    assert car.healthy is None
    assert car_with(state="\ufffd").online_state == "unknown"


def test_location_json_wins_over_deprecated_latitude_longitude() -> None:
    car = car_with(latitude="1.5", longitude="2.5")
    assert (car.report().latitude, car.report().longitude) == (1.5, 2.5)
    car.apply("location", b'{"latitude":52.52,"longitude":13.4}', T0, retained=False)
    assert (car.report().latitude, car.report().longitude) == (52.52, 13.4)


def test_states_map_to_online_states() -> None:
    expected = {
        "asleep": "asleep",
        "offline": "offline",
        "online": "online",
        "charging": "online",
        "driving": "online",
        "updating": "online",
        "suspended": "online",
        "start": "unknown",
        "unavailable": "unknown",
    }
    for state, online in expected.items():
        assert car_with(state=state).online_state == online


def test_retained_values_fill_in_but_do_not_count_as_heard() -> None:
    car = car_with(retained=True, state="asleep", battery_level="60")
    assert heard(car) is None
    assert car.report().soc_pct == 60
    assert car.online_state == "asleep"
    # The start-up grace covers the wait for TeslaMate's first heartbeat, then the feed counts as absent.
    assert car.fresh(T0 + 10, STALE_S, started_at=T0)
    assert not car.fresh(T0 + STARTUP_GRACE_S + 1, STALE_S, started_at=T0)
    car.apply("healthy", b"true", T0 + 200, retained=False)
    assert heard(car) == T0 + 200
    assert car.fresh(T0 + 200 + STALE_S, STALE_S, started_at=T0)
    assert not car.fresh(T0 + 201 + STALE_S, STALE_S, started_at=T0)


def test_heartbeat_keeps_the_feed_fresh_without_counting_as_a_change() -> None:
    car = car_with(state="asleep")
    assert car.apply("healthy", b"true", T0 + 30, retained=False)  # first time: a new value
    assert not car.apply("healthy", b"true", T0 + 60, retained=False)
    assert car.last_message_at == T0 + 60
    assert not car.apply("unrelated_field", b"1", T0 + 90, retained=False)
    assert car.last_message_at == T0 + 90


def test_unhealthy_teslamate_is_not_a_source() -> None:
    car = car_with(state="online", healthy="false")
    assert not car.fresh(T0 + 1, STALE_S, started_at=T0 - 1000)


def test_teslamate_wiping_its_retained_heartbeat_is_ignored() -> None:
    car = TeslaMateCar(1)
    assert not car.apply("healthy", b"", T0, retained=True)
    assert car.healthy is None


def test_suspended_allows_the_whole_suspend_period_of_silence() -> None:
    car = car_with(state="suspended")
    silence = TESLAMATE_SUSPENDED_SILENCE_S - 1
    assert silence > STALE_S
    assert car.fresh(T0 + silence, STALE_S, started_at=T0)
    assert not car.fresh(T0 + TESLAMATE_SUSPENDED_SILENCE_S + 1, STALE_S, started_at=T0)
    asleep = car_with(state="asleep")
    assert not asleep.fresh(T0 + silence, STALE_S, started_at=T0)


def test_geofence_home_rule() -> None:
    assert geofence_says_home("🏡 Home")
    assert geofence_says_home("home")
    assert not geofence_says_home("Office")
    assert not geofence_says_home(None)
