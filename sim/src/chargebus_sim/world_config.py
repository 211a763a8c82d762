"""The `chargebus.toml` a simulated world hands to the four services: plain TOML text a user can read and edit.

Pure: `stack_toml()` turns the world's addresses (broker, pty, fake Fleet API, token file) and a few knobs into the
file. Scalar settings of `[allocator]`, `[tesla]`, `[twc]` and `[history]` can be overridden per call (tests shorten
the hysteresis delays, the demo keeps the defaults).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

Scalar = str | int | float | bool

#: The simulated home: the cars' GPS position and the `home` the bridge checks it against.
HOME_LAT = 52.52
HOME_LON = 13.40


@dataclass(frozen=True, slots=True)
class CarEntry:
    """One `[[tesla.vehicles]]` entry and its allocator settings."""

    vin: str
    name: str
    teslamate_car_id: int
    priority: int = 0
    #: The circuit a car on a mobile connector sits on (a car on a TWC is wired through the TWC's entry).
    circuit: str | None = None


@dataclass(frozen=True, slots=True)
class StackAddresses:
    """Where everything is: filled in by the world once its servers and pty are up."""

    mqtt_url: str
    prefix: str
    state_dir: Path
    twc_port: str
    api_base: str
    command_base: str
    token_url: str
    client_id: str
    token_file: Path
    teslamate_prefix: str
    history_db: Path
    mqtt_protocol: str = "auto"
    #: Where the ocpp-bridge listens: loopback only, on a port of its own, so a world never takes 0.0.0.0:9000.
    ocpp_listen: str = "127.0.0.1:9000"


def toml_value(value: Scalar | Sequence[Scalar] | Mapping[str, Scalar]) -> str:
    """A TOML value: strings as basic strings (JSON escapes are TOML escapes), inline tables and arrays."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{key} = {toml_value(item)}" for key, item in value.items()) + " }"
    return "[" + ", ".join(toml_value(item) for item in value) + "]"


def _section(name: str, defaults: Mapping[str, Scalar], overrides: Mapping[str, Scalar]) -> list[str]:
    merged = {**defaults, **overrides}
    return [f"[{name}]", *(f"{key} = {toml_value(value)}" for key, value in merged.items()), ""]


def stack_toml(
    where: StackAddresses,
    *,
    cars: Sequence[CarEntry],
    twc_ids: Sequence[str],
    circuit_a: float = 40.0,
    ha_discovery: bool = True,
    allocator: Mapping[str, Scalar] | None = None,
    tesla: Mapping[str, Scalar] | None = None,
    twc: Mapping[str, Scalar] | None = None,
    history: Mapping[str, Scalar] | None = None,
    meter_stale_after_s: float = 60.0,
) -> str:
    """The whole file. Every TWC and every car on a mobile connector sits on one single-phase circuit `garage`."""
    lines = [
        "# Written by the chargebus simulated world (chargebus_sim.world): every service reads its own sections.",
        f"state_dir = {toml_value(str(where.state_dir))}",
        "",
        *_section(
            "mqtt",
            {
                "url": where.mqtt_url,
                "prefix": where.prefix,
                "protocol": where.mqtt_protocol,
                "ha_discovery": ha_discovery,
            },
            {},
        ),
        *_section(
            "twc",
            {
                "port": where.twc_port,
                "voltage_v": 230,
                "phases": 1,
                "wiring_max_amps": 32,
                "bus_max_amps": 32,
                "min_amps": 6,
                "failsafe_amps": 6,
            },
            twc or {},
        ),
        *_section(
            "tesla",
            {
                "api_base": where.api_base,
                "command_base": where.command_base,
                "token_url": where.token_url,
                "client_id": where.client_id,
                "token_file": str(where.token_file),
                "teslamate_prefix": where.teslamate_prefix,
                "min_amps": 5,
            },
            tesla or {},
        ),
    ]
    home = {"lat": HOME_LAT, "lon": HOME_LON, "radius_m": 150}
    for car in cars:
        lines += [
            "[[tesla.vehicles]]",
            f"vin = {toml_value(car.vin)}",
            f"name = {toml_value(car.name)}",
            f"teslamate_car_id = {car.teslamate_car_id}",
            f"home = {toml_value(home)}",
            "phases = 1",
            "voltage_v = 230",
            "",
        ]
    lines += _section(
        "allocator", {"mode": "solar", "grid_meter": "grid", "reserve_w": 100, "share": "fair"}, allocator or {}
    )
    lines += [
        "[[allocator.circuits]]",
        'id = "garage"',
        f"max_current_a = {toml_value(circuit_a)}",
        "phases = 1",
        'phase = "L1"',
        "",
    ]
    for twc_id in twc_ids:
        lines += [f'[allocator.evses."twc-{twc_id}"]', 'circuit = "garage"', 'phase = "L1"', ""]
    for car in cars:
        if car.circuit is not None:
            lines += [f'[allocator.evses."car-{car.vin}"]', f"circuit = {toml_value(car.circuit)}", 'phase = "L1"', ""]
        lines += [f'[allocator.vehicles."{car.vin}"]', f"priority = {car.priority}", ""]
    lines += [
        "[[meters]]",
        'name = "grid"',
        f"topic = {toml_value(where.prefix + '/power/grid')}",
        f"stale_after_s = {toml_value(meter_stale_after_s)}",
        "",
    ]
    lines += _section("history", {"database": f"sqlite:///{where.history_db}"}, history or {})
    lines += ["", "[ocpp]", f"listen = {toml_value(where.ocpp_listen)}", ""]
    return "\n".join(lines)
