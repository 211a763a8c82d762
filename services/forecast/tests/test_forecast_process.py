"""The forecast service as users run it: its own process, a config file, the real broker, recorded providers.

The clock runs 60 times faster (`CHARGEBUS_TIME_SCALE`), so `refresh_s = 60` is one real second and the backoff's
seconds are sixtieths: an outage, its retries and the recovery take a few real seconds.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

from chargebus.schema import ErrorEvent, ForecastState, SolarForecast, Tariff, parse_payload

from services.forecast.tests.provider_server import days_to_today, serve
from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Received, Recorder, ServiceProcess

API_KEY = "s3cr3t-f0r3c4st-k3y"


def write_config(tmp_path: Path, api_url: str) -> Path:
    key_file = tmp_path / "forecast_solar.key"
    key_file.write_text(API_KEY + "\n", encoding="utf-8")
    key_file.chmod(0o600)
    config = tmp_path / "chargebus.toml"
    config.write_text(
        f'state_dir = "{tmp_path}"\n'
        "[forecast]\n"
        "refresh_s = 60\n"
        "retry_initial_s = 1\n"
        "retry_max_s = 4\n"
        'grid_tariff = { source = "fixed", day_price = 0.34, night_price = 0.22, timezone = "Europe/Berlin" }\n'
        'feedin_tariff = { source = "fixed", price = 0.08 }\n'
        f'solar = {{ source = "forecast_solar", lat = 52.52, lon = 13.4, declination = 30, azimuth = 0, kwp = 6, '
        f'api_url = "{api_url}", api_key_file = "{key_file}" }}\n',
        encoding="utf-8",
    )
    config.chmod(0o600)
    return config


def forecast_process(broker_url: str, prefix: str, config: Path) -> ServiceProcess:
    env = {
        "CHARGEBUS_MQTT_URL": broker_url,
        "CHARGEBUS_TOPIC_PREFIX": prefix,
        "CHARGEBUS_CONFIG": "",
        "CHARGEBUS_TIME_SCALE": "60",
        "CHARGEBUS_MQTT__HA_PREFIX": f"{prefix}-ha",
    }
    return ServiceProcess([sys.executable, "-m", "chargebus_forecast", "--config", str(config)], env)


def errors(bus: Recorder, prefix: str) -> list[ErrorEvent]:
    return [parse_payload(ErrorEvent, m.payload) for m in bus.on(f"{prefix}/forecast/error")]


async def test_publishes_retained_tariffs_and_forecast_and_reports_an_outage_once(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path
) -> None:
    async with serve() as server:
        server.shift_days = days_to_today(date(2026, 6, 15))
        server.fail_next = 3  # Forecast.Solar is down when the service starts: three failed attempts
        service = forecast_process(mqtt_broker.url, prefix, write_config(tmp_path, f"http://127.0.0.1:{server.port}"))
        service.start(tmp_path / "forecast.log")
        try:
            async with Recorder(mqtt_broker.url, [f"{prefix}/#", f"{prefix}-ha/#"]) as bus:
                await bus.wait_message(f"{prefix}/forecast/status", lambda m: m.text == "online", timeout=20)
                grid = await bus.wait_message(f"{prefix}/tariff/grid", timeout=10)
                feedin = await bus.wait_message(f"{prefix}/tariff/feedin", timeout=10)
                solar = await bus.wait_message(f"{prefix}/forecast/solar", timeout=20)
                recovered = await bus.wait_for(
                    lambda: next((e for e in errors(bus, prefix) if "recovered" in e.error), None), 10, "recovery"
                )
                episode = errors(bus, prefix)
                # the outage: one event when it started, one when it ended, none for the retry in between
                assert len(episode) == 2, episode
                assert episode[0].topic == f"{prefix}/forecast/solar"
                assert episode[0].payload is None
                assert episode[0].error.startswith("forecast_solar: fetch failed: ForecastSolarConnectionError")
                assert recovered.error == "forecast_solar: recovered after 3 failed attempts"
                assert len(server.requests) == 4
                assert all(r.startswith(f"/{API_KEY}/estimate/52.52/13.4/30.0/0.0/6.0") for r in server.requests)

                tariff = parse_payload(Tariff, grid.payload)
                assert tariff.currency == "EUR"
                assert {slot.price for slot in tariff.slots} == {0.34, 0.22}
                assert parse_payload(Tariff, feedin.payload).slots[0].price == 0.08
                forecast = parse_payload(SolarForecast, solar.payload)
                assert len(forecast.slots) > 0
                assert (
                    forecast.slots[0].end - forecast.slots[0].start == forecast.slots[-1].end - forecast.slots[-1].start
                )

                def state_ok(message: Received) -> bool:
                    state = parse_payload(ForecastState, message.payload)
                    return state.refreshed_at is not None and not state.failing and state.grid_price is not None

                state = parse_payload(
                    ForecastState, (await bus.wait_message(f"{prefix}/forecast/state", state_ok, timeout=10)).payload
                )
                assert state.grid_price in {0.34, 0.22}
                assert state.grid_price_next_hour in {0.34, 0.22}
                assert state.feedin_price == 0.08
                assert state.currency == "EUR"

                discovered = {m.topic.split("/")[-2] for m in bus.messages if m.topic.startswith(f"{prefix}-ha/")}
                assert discovered >= {
                    "forecast_grid_price",
                    "forecast_grid_price_next_hour",
                    "forecast_feedin_price",
                    "forecast_solar_now",
                    "forecast_last_refresh",
                }

                # Down again after a good fetch: reported once, nothing new published, the last good one stays.
                published = len(bus.on(f"{prefix}/forecast/solar"))
                before = len(errors(bus, prefix))
                server.fail_next = 1_000
                await bus.wait_for(lambda: len(errors(bus, prefix)) > before, 10, "the second outage")
                requests = len(server.requests)
                await bus.wait_for(lambda: len(server.requests) >= requests + 3, 15, "three more retries")
                assert len(errors(bus, prefix)) == before + 1
                assert len(bus.on(f"{prefix}/forecast/solar")) == published
                last_good = bus.on(f"{prefix}/forecast/solar")[-1].payload
            # what a consumer starting now gets: the retained messages, the last good forecast among them
            async with Recorder(mqtt_broker.url, [f"{prefix}/tariff/+", f"{prefix}/forecast/+"]) as late:
                kept = await late.wait_message(f"{prefix}/forecast/solar", timeout=10)
                assert kept.retain
                assert kept.payload == last_good
                for topic in ("tariff/grid", "tariff/feedin", "forecast/state"):
                    assert (await late.wait_message(f"{prefix}/{topic}", timeout=10)).retain
        finally:
            service.stop()
    log = service.log()
    assert "Traceback" not in log
    assert API_KEY not in log
    assert "event=fetch_failed" in log
    assert "event=published topic=" in log


def test_a_source_not_supported_yet_stops_the_start_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "chargebus.toml"
    config.write_text('[forecast]\ngrid_tariff = { source = "entsoe" }\n', encoding="utf-8")
    service = forecast_process("mqtt://127.0.0.1:1", "x", config).start(tmp_path / "log")
    assert service.wait(30) == 2
    assert service.log().strip() == (
        "config: forecast.grid_tariff = {'source': 'entsoe'}: source 'entsoe' is not supported yet "
        "(supported: nordpool, tibber, fixed)"
    )


async def test_runs_in_one_process_with_the_others(mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path) -> None:
    config = tmp_path / "chargebus.toml"
    config.write_text(
        f'state_dir = "{tmp_path}"\n[forecast]\ngrid_tariff = {{ source = "fixed", price = 0.25, currency = "SEK" }}\n',
        encoding="utf-8",
    )
    env = {"CHARGEBUS_MQTT_URL": mqtt_broker.url, "CHARGEBUS_TOPIC_PREFIX": prefix, "CHARGEBUS_CONFIG": ""}
    process = ServiceProcess([sys.executable, "-m", "chargebus", "run", "forecast", "--config", str(config)], env)
    process.start(tmp_path / "run.log")
    try:
        async with Recorder(mqtt_broker.url, [f"{prefix}/#"]) as bus:
            await bus.wait_message(f"{prefix}/forecast/status", lambda m: m.text == "online", timeout=20)
            tariff = parse_payload(Tariff, (await bus.wait_message(f"{prefix}/tariff/grid", timeout=10)).payload)
            assert (tariff.currency, tariff.slots[0].price) == ("SEK", 0.25)
            assert bus.on(f"{prefix}/forecast/solar") == []  # not configured: never published
    finally:
        process.stop()
    assert "Traceback" not in process.log()
