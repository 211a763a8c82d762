"""Meters: any MQTT topic becomes a power reading (docs/contract.md §2 `[[meters]]`), kept until it goes stale.

A meter named in `[[meters]]` reads its own topic: `json_path` (a dotted path into a JSON object, where a number
segment indexes a list) picks the watts out of a device's payload, else the payload is a plain number or a
PowerReading. `scale` turns it into W and `invert` flips the sign of a source that reports export as positive. A
meter name with no entry reads `<prefix>/power/<name>` natively. A bad payload never replaces the last good value;
the last good value is used until it is older than `stale_after_s` (docs/allocation.md §2 says what stale means).

Pure: no I/O, every time is passed in (epoch seconds).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from chargebus.config import MeterConfig
from chargebus.schema import PayloadError, decode_json, parse_power
from chargebus.topics import Topics

from chargebus_allocator.model import MeteredLoad
from chargebus_allocator.pairing import measurement_time

DEFAULT_STALE_AFTER_S = 30.0


@dataclass(frozen=True, slots=True)
class MeterSpec:
    name: str
    topic: str
    json_path: tuple[str, ...] | None = None
    scale: float = 1.0
    invert: bool = False
    stale_after_s: float = DEFAULT_STALE_AFTER_S


def meter_specs(names: Iterable[str], entries: Sequence[MeterConfig], topics: Topics) -> dict[str, MeterSpec]:
    """The meters the allocator reads, by name: a `[[meters]]` entry when there is one, else `<p>/power/<name>`."""
    configured = {entry.name: entry for entry in entries}
    specs: dict[str, MeterSpec] = {}
    for name in dict.fromkeys(names):
        entry = configured.get(name)
        if entry is None:
            specs[name] = MeterSpec(name, topics.power(name))
            continue
        path = tuple(part for part in entry.json_path.split(".") if part) if entry.json_path else None
        specs[name] = MeterSpec(name, entry.topic, path or None, entry.scale, entry.invert, entry.stale_after_s)
    return specs


def read(spec: MeterSpec, payload: bytes) -> MeteredLoad:
    """One reading in W (+ import, − export for a grid meter). Raises PayloadError with a readable message."""
    return read_timed(spec, payload)[0]


def read_timed(spec: MeterSpec, payload: bytes) -> tuple[MeteredLoad, float | None]:
    """`read`, with the PowerReading's own `ts` (epoch seconds) when it has one."""
    load, ts, _ = read_full(spec, payload)
    return load, ts


def read_full(spec: MeterSpec, payload: bytes) -> tuple[MeteredLoad, float | None, float | None]:
    """`read_timed`, with a battery meter's `soc_pct` when its PowerReading carries one."""
    if spec.json_path is None:
        reading = parse_power(payload)
        phase_power = reading.phase_power_w
        load = MeteredLoad(
            power_w=_convert(spec, reading.power_w),
            phase_power_w=_triple([_convert(spec, value) for value in phase_power]) if phase_power else None,
            phase_current_a=_triple(reading.phase_current_a) if reading.phase_current_a else None,
        )
        return load, reading.ts.timestamp() if reading.ts is not None else None, reading.soc_pct
    return MeteredLoad(power_w=_convert(spec, _at_path(decode_json(payload), spec.json_path))), None, None


def _convert(spec: MeterSpec, value: float) -> float:
    watts = value * spec.scale
    if not math.isfinite(watts):
        raise PayloadError(f"meter {spec.name}: {value!r} × scale {spec.scale:g} is not a finite number of watts")
    return -watts if spec.invert else watts


def _triple(values: Sequence[float]) -> tuple[float, float, float]:
    first, second, third = values
    return (first, second, third)


def _at_path(data: Any, path: tuple[str, ...]) -> float:
    node = data
    for depth, part in enumerate(path):
        where = ".".join(path[: depth + 1])
        if isinstance(node, dict):
            if part not in node:
                raise PayloadError(f"json_path {'.'.join(path)}: no key {where!r} in the payload")
            node = node[part]
        elif isinstance(node, list) and part.isdigit():
            index = int(part)
            if index >= len(node):
                raise PayloadError(f"json_path {'.'.join(path)}: {where!r} is past the end of a list")
            node = node[index]
        else:
            raise PayloadError(f"json_path {'.'.join(path)}: {where!r} does not lead into a JSON object")
    if isinstance(node, bool) or not isinstance(node, int | float):
        raise PayloadError(f"json_path {'.'.join(path)}: expected a number, got {type(node).__name__}")
    return float(node)


@dataclass(frozen=True, slots=True)
class Reading:
    load: MeteredLoad
    at: float  # when it was received (our clock: staleness never trusts a meter's own clock)
    #: When it was measured: its `ts` where plausible (pairing.measurement_time), else `at`. Only pairing uses it.
    measured_at: float = math.nan
    soc_pct: float | None = None  # a battery meter's SoC, when its PowerReading has one

    def __post_init__(self) -> None:
        if math.isnan(self.measured_at):
            object.__setattr__(self, "measured_at", self.at)


@dataclass(slots=True)
class MeterBook:
    """The last good reading of every meter, which ones are stale, and which stale episodes were reported."""

    specs: dict[str, MeterSpec]
    started_at: float
    readings: dict[str, Reading] = field(default_factory=dict)
    reported_stale: set[str] = field(default_factory=set)

    def topics(self) -> list[str]:
        return list(dict.fromkeys(spec.topic for spec in self.specs.values()))

    def receive(self, topic: str, payload: bytes, now: float) -> list[tuple[str, str]]:
        """Every meter on `topic` reads the payload; returns (meter name, error) for those that could not."""
        errors = []
        for spec in self.specs.values():
            if spec.topic != topic:
                continue
            try:
                load, ts, soc = read_full(spec, payload)
                self.readings[spec.name] = Reading(load, now, measurement_time(ts, now), soc)
            except PayloadError as exc:
                errors.append((spec.name, str(exc)))
        return errors

    def last(self, name: str) -> Reading | None:
        """The last good reading, stale or not."""
        return self.readings.get(name)

    def stale(self, name: str, now: float) -> bool:
        spec = self.specs[name]
        reading = self.readings.get(name)
        since = reading.at if reading is not None else self.started_at
        return now - since > spec.stale_after_s

    def stale_changes(self, now: float) -> tuple[list[str], list[str]]:
        """(meters that just went stale, meters whose data just came back): each episode is reported once."""
        went, back = [], []
        for name in self.specs:
            if self.stale(name, now):
                if name not in self.reported_stale:
                    self.reported_stale.add(name)
                    went.append(name)
            elif name in self.reported_stale:
                self.reported_stale.discard(name)
                back.append(name)
        return went, back

    def next_deadline(self, now: float) -> float | None:
        """The next moment a fresh meter goes stale (when a round should run to notice it)."""
        deadlines = []
        for name, spec in self.specs.items():
            reading = self.readings.get(name)
            since = reading.at if reading is not None else self.started_at
            deadline = since + spec.stale_after_s
            if deadline >= now:
                deadlines.append(deadline)
        return min(deadlines, default=None)

    def describe_stale(self, name: str, now: float) -> str:
        reading = self.readings.get(name)
        if reading is None:
            return f"meter {name}: no reading since start ({now - self.started_at:.0f} s)"
        return (
            f"meter {name}: stale, last reading {now - reading.at:.0f} s ago "
            f"(stale_after_s {self.specs[name].stale_after_s:g})"
        )


@dataclass(slots=True)
class RateLimit:
    """At most one report per key per `interval_s`: a broken meter must not flood the error topic."""

    interval_s: float = 60.0
    last: dict[str, float] = field(default_factory=dict)

    def allow(self, key: str, now: float) -> bool:
        previous = self.last.get(key)
        if previous is not None and now - previous < self.interval_s:
            return False
        self.last[key] = now
        return True
