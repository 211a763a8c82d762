"""`[forecast]`: what loads, and the one-line problems of what does not."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from chargebus.config import (
    ConfigError,
    FixedTariffConfig,
    ForecastServiceConfig,
    ForecastSolarConfig,
    FullConfig,
    NordpoolTariffConfig,
    OpenMeteoConfig,
    TibberTariffConfig,
    load_config,
)

ROOT = Path(__file__).resolve().parents[3]


def load(tmp_path: Path, text: str) -> ForecastServiceConfig:
    path = tmp_path / "chargebus.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(ForecastServiceConfig, path)


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return caught.value.problems


def test_the_example_file_configures_every_kind_of_source() -> None:
    config = load_config(FullConfig, ROOT / "chargebus.example.toml").forecast
    assert isinstance(config.grid_tariff, NordpoolTariffConfig)
    assert isinstance(config.feedin_tariff, FixedTariffConfig)
    assert isinstance(config.solar, ForecastSolarConfig)
    assert set(config.sources) == {"tariff_grid", "tariff_feedin", "forecast_solar"}


def test_the_example_file_mentions_every_forecast_key() -> None:
    text = (ROOT / "chargebus.example.toml").read_text(encoding="utf-8")
    section = text[text.index("[forecast]") :]
    models = (FullConfig.model_fields["forecast"].annotation, FixedTariffConfig, NordpoolTariffConfig)
    for model in (*models, TibberTariffConfig, ForecastSolarConfig, OpenMeteoConfig):
        assert model is not None
        for key in model.model_fields:
            assert re.search(rf"(^|[\s.\[]){key}(\s*=|\]|\.)", section, re.MULTILINE), f"{key} is not documented"


def test_defaults_and_inline_tables(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        '[forecast]\ngrid_tariff = { source = "fixed", day_price = 0.3, night_price = 0.2 }\n'
        'solar = { source = "open_meteo", lat = 48.1, lon = 11.6, declination = 30, azimuth = -10, kwp = 9.9 }\n',
    ).forecast
    assert config.refresh_s == 3600
    assert isinstance(config.solar, OpenMeteoConfig)
    assert config.solar.api_url == "https://api.open-meteo.com"
    assert config.feedin_tariff is None


def test_no_forecast_section_is_valid(tmp_path: Path) -> None:
    assert load(tmp_path, "").forecast.sources == {}


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        (
            'grid_tariff = { source = "entsoe" }',
            "forecast.grid_tariff = {'source': 'entsoe'}: source 'entsoe' is not supported yet",
        ),
        (
            'grid_tariff = { source = "octopus" }',
            "source 'octopus' is not supported yet (supported: nordpool, tibber, fixed)",
        ),
        ('grid_tariff = { source = "tibber" }', "forecast.grid_tariff.tibber.token_file: missing"),
        ('grid_tariff = { source = "tibber", token = "x" }', "forecast.grid_tariff.tibber.token = ***: unknown key"),
        (
            'feedin_tariff = { source = "octopus" }',
            "forecast.feedin_tariff = {'source': 'octopus'}: source 'octopus' is not",
        ),
        ('grid_tariff = { source = "awattar" }', "unknown source 'awattar' (known: nordpool, entsoe, tibber"),
        ("grid_tariff = { price = 0.3 }", "forecast.grid_tariff = {'price': 0.3}: needs source = one of"),
        ('solar = { source = "solcast" }', "unknown source 'solcast' (known: forecast_solar, open_meteo)"),
        ('grid_tariff = { source = "fixed" }', "needs price (flat), or both day_price and night_price"),
        ('grid_tariff = { source = "fixed", price = 0.3, day_price = 0.4 }', "give price (flat), or day_price"),
        ('grid_tariff = { source = "fixed", price = 0.3, currency = "eur" }', "forecast.grid_tariff.fixed.currency"),
        (
            'grid_tariff = { source = "fixed", day_price = 0.3, night_price = 0.2, night_end = "22:00" }',
            "night_start and night_end must differ",
        ),
        ('grid_tariff = { source = "fixed", price = 0.3, night_start = "24:00" }', "night_start = '24:00'"),
        ('grid_tariff = { source = "fixed", price = 0.3, timezone = "Mars/Base" }', "unknown IANA time zone"),
        ('grid_tariff = { source = "nordpool", area = "XX" }', "forecast.grid_tariff.nordpool.area = 'XX'"),
        ('grid_tariff = { source = "nordpool" }', "forecast.grid_tariff.nordpool.area: missing"),
        ('grid_tariff = { source = "nordpool", area = "SE3", currency = "USD" }', "nordpool.currency = 'USD'"),
        ('grid_tariff = { source = "nordpool", area = "SE3", apikey = "x" }', "apikey = 'x': unknown key"),
        ('solar = { source = "forecast_solar", lat = 52, lon = 5, declination = 30, azimuth = 0 }', "kwp: missing"),
        (
            'solar = { source = "open_meteo", lat = 95, lon = 5, declination = 30, azimuth = 0, kwp = 5 }',
            "forecast.solar.open_meteo.lat = 95",
        ),
        (
            (
                'solar = { source = "forecast_solar", lat = 5, lon = 5, declination = 30, azimuth = 0, kwp = 5, '
                'api_url = "ftp://x" }'
            ),
            "must be an http:// or https:// URL",
        ),
        ('co2 = { source = "electricitymaps" }', "no CO2 provider is supported yet"),
        ("refresh_s = 10", "forecast.refresh_s = 10"),
        ("retry_initial_s = 600\nretry_max_s = 60", "retry_initial_s 600 is above retry_max_s 60"),
    ],
)
def test_problems_name_the_key_and_why(tmp_path: Path, table: str, expected: str) -> None:
    found = problems(tmp_path, f"[forecast]\n{table}\n")
    assert any(expected in line for line in found), found


def test_an_api_key_lives_in_a_file_and_is_never_shown(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("s3cr3t\n", encoding="utf-8")
    key_file.chmod(0o600)
    config = load(
        tmp_path,
        "[forecast]\n"
        f'solar = {{ source = "forecast_solar", lat = 5, lon = 5, declination = 30, azimuth = 0, kwp = 5, '
        f'api_key_file = "{key_file}" }}\n',
    ).forecast
    assert isinstance(config.solar, ForecastSolarConfig)
    assert config.solar.api_key() == "s3cr3t"
    assert "s3cr3t" not in repr(config)
    found = problems(
        tmp_path,
        '[forecast]\nsolar = { source = "forecast_solar", lat = 5, lon = 5, declination = 30, azimuth = 0, kwp = 5, '
        'api_key = "s3cr3t" }\n',
    )
    assert found == ["config: forecast.solar.forecast_solar.api_key = ***: unknown key (misspelt?)"]


def test_an_api_key_file_others_can_read_is_warned_about(tmp_path: Path) -> None:
    from chargebus.config import warn_if_secrets_readable  # noqa: PLC0415

    key_file = tmp_path / "readable.key"
    key_file.write_text("k", encoding="utf-8")
    key_file.chmod(0o644)
    raw = {"forecast": {"solar": {"api_key_file": str(key_file)}}}
    (warning,) = warn_if_secrets_readable(tmp_path / "chargebus.toml", raw)
    assert "forecast.solar.api_key_file" in warning
