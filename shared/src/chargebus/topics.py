"""The one place topic strings are built and parsed (docs/contract.md §5).

`TOPICS` is the table; `Topics(prefix)` builds concrete topics and subscription filters and parses received
topics back into (spec, ids). Nothing else in the project writes a topic string by hand.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Literal

from chargebus.schema import evse_kind_of

SERVICES = ("twc-bridge", "tesla-bridge", "allocator", "history", "ocpp-bridge", "forecast")
TWC_BRIDGE, TESLA_BRIDGE, OCPP_BRIDGE = "twc-bridge", "tesla-bridge", "ocpp-bridge"
BRIDGES = (TWC_BRIDGE, TESLA_BRIDGE, OCPP_BRIDGE)


def owning_bridge(evse_id: str) -> str:
    """The bridge that publishes an EVSE and answers its commands: `car-*` and `twc3-*` the tesla-bridge, `ocpp-*` the
    ocpp-bridge, `twc-*` the twc-bridge, which also answers for ids of no EVSE kind (one service must,
    docs/contract.md §3)."""
    kind = evse_kind_of(evse_id)
    if kind in ("vehicle", "twc3"):
        return TESLA_BRIDGE
    if kind == "ocpp":
        return OCPP_BRIDGE
    return TWC_BRIDGE


DEFAULT_PREFIX = "chargebus"

Direction = Literal["in", "out", "in/out"]
#: Every spec's key, so that mypy catches a misspelt one at `Topics.build` / `Topics.filter` (a test keeps this in
#: step with `TOPICS`).
TopicKey = Literal[
    "evse_state",
    "evse_setpoint",
    "vehicle_state",
    "power",
    "allocator_state",
    "allocator_mode_set",
    "allocator_schedules_set",
    "allocator_schedules_enabled_set",
    "allocator_vins_set",
    "allocator_charge_now_set",
    "allocator_grid_limit_set",
    "allocator_battery_hold",
    "tariff_grid",
    "tariff_feedin",
    "forecast_solar",
    "forecast_co2",
    "forecast_state",
    "vehicle_plan_set",
    "evse_plan_set",
    "evse_mode_set",
    "evse_priority_set",
    "evse_max_current_set",
    "vehicle_priority_set",
    "vehicle_charge_limit_set",
    "vehicle_refresh_set",
    "tesla_usage",
    "history_request",
    "history_energy",
    "status",
    "error",
]


@dataclass(frozen=True, slots=True)
class TopicSpec:
    key: TopicKey
    pattern: str  # below the prefix, with {evse_id} / {vin} / {meter} / {service} / {subject_id} placeholders
    direction: Direction
    retained: bool = dataclasses.field(kw_only=True)
    payload: str = dataclasses.field(kw_only=True)
    who: str = dataclasses.field(kw_only=True)

    @property
    def is_command(self) -> bool:
        return self.pattern.endswith(("/set", "/request"))


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("evse_state", "evse/{evse_id}/state", "out", retained=True, payload="EvseState", who="bridges"),
    TopicSpec(
        "evse_setpoint", "evse/{evse_id}/setpoint", "in", retained=True, payload="Setpoint", who="allocator → bridges"
    ),
    TopicSpec("vehicle_state", "vehicle/{vin}/state", "out", retained=True, payload="VehicleState", who="tesla-bridge"),
    TopicSpec(
        "power",
        "power/{meter}",
        "in/out",
        retained=True,
        payload="number (W) or PowerReading",
        who="meters, sim, anyone",
    ),
    TopicSpec("allocator_state", "allocator/state", "out", retained=True, payload="AllocatorState", who="allocator"),
    TopicSpec(
        "allocator_mode_set",
        "allocator/mode/set",
        "in",
        retained=False,
        payload="off|now|solar|minsolar",
        who="users → allocator",
    ),
    TopicSpec(
        "allocator_schedules_set",
        "allocator/schedules/set",
        "in",
        retained=False,
        payload="JSON list of schedules, replaces",
        who="users → allocator",
    ),
    TopicSpec(
        "allocator_schedules_enabled_set",
        "allocator/schedules_enabled/set",
        "in",
        retained=False,
        payload="true|false",
        who="users → allocator",
    ),
    TopicSpec(
        "allocator_vins_set",
        "allocator/vins/set",
        "in",
        retained=False,
        payload='{"allow": […], "deny": […]}, replaces',
        who="users → allocator",
    ),
    TopicSpec(
        "allocator_charge_now_set",
        "allocator/charge_now/set",
        "in",
        retained=False,
        payload='seconds, 0 cancels; {"value":{"seconds":…,"evse_id":…}}',
        who="users → allocator",
    ),
    TopicSpec(
        "allocator_grid_limit_set",
        "allocator/grid_limit/set",
        "in",
        retained=False,
        payload="grid import cap in W, or default (clears)",
        who="users, grid operator signal → allocator",
    ),
    TopicSpec(
        "allocator_battery_hold",
        "allocator/battery_hold",
        "out",
        retained=True,
        payload="true|false: do not discharge the home battery into the car now",
        who="allocator → battery automation",
    ),
    TopicSpec(
        "tariff_grid", "tariff/grid", "in/out", retained=True, payload="Tariff", who="forecast, anyone → allocator"
    ),
    TopicSpec(
        "tariff_feedin", "tariff/feedin", "in/out", retained=True, payload="Tariff", who="forecast, anyone → allocator"
    ),
    TopicSpec(
        "forecast_solar",
        "forecast/solar",
        "in/out",
        retained=True,
        payload="SolarForecast",
        who="forecast, anyone → allocator",
    ),
    TopicSpec(
        "forecast_co2",
        "forecast/co2",
        "in/out",
        retained=True,
        payload="Co2Forecast",
        who="forecast, anyone → allocator",
    ),
    TopicSpec(
        "forecast_state",
        "forecast/state",
        "out",
        retained=True,
        payload="ForecastState",
        who="forecast",
    ),
    TopicSpec(
        "vehicle_plan_set",
        "vehicle/{vin}/plan/set",
        "in",
        retained=False,
        payload="PlanRequest with soc_pct, or default (clears)",
        who="users → allocator",
    ),
    TopicSpec(
        "evse_plan_set",
        "evse/{evse_id}/plan/set",
        "in",
        retained=False,
        payload="PlanRequest with energy_wh, or default (clears)",
        who="users → allocator",
    ),
    TopicSpec(
        "evse_mode_set",
        "evse/{evse_id}/mode/set",
        "in",
        retained=False,
        payload="mode or default",
        who="users → allocator",
    ),
    TopicSpec(
        "evse_priority_set",
        "evse/{evse_id}/priority/set",
        "in",
        retained=False,
        payload="integer -1000…1000 or default",
        who="users → allocator",
    ),
    TopicSpec(
        "evse_max_current_set",
        "evse/{evse_id}/max_current/set",
        "in",
        retained=False,
        payload="amps (≤ wiring limit) or default",
        who="users → owning bridge",
    ),
    TopicSpec(
        "vehicle_priority_set",
        "vehicle/{vin}/priority/set",
        "in",
        retained=False,
        payload="integer -1000…1000 or default",
        who="users → allocator",
    ),
    TopicSpec(
        "vehicle_charge_limit_set",
        "vehicle/{vin}/charge_limit/set",
        "in",
        retained=False,
        payload="percent 50…100 (billed command)",
        who="users → tesla-bridge",
    ),
    TopicSpec(
        "vehicle_refresh_set",
        "vehicle/{vin}/refresh/set",
        "in",
        retained=False,
        payload="any (one billed data call, rate-limited)",
        who="users → tesla-bridge",
    ),
    TopicSpec("tesla_usage", "tesla-bridge/usage", "out", retained=True, payload="Usage", who="tesla-bridge"),
    TopicSpec(
        "history_request",
        "history/request",
        "in",
        retained=False,
        payload="HistoryRequest (answer on its response_topic)",
        who="users → history",
    ),
    TopicSpec(
        "history_energy",
        "history/energy/{subject_id}",
        "out",
        retained=True,
        payload="all-time energy in Wh (plain number) of the EVSE or vehicle whose evse_id or VIN is subject_id",
        who="history → Home Assistant",
    ),
    TopicSpec("status", "{service}/status", "out", retained=True, payload="online / offline", who="every service"),
    TopicSpec("error", "{service}/error", "out", retained=False, payload="ErrorEvent", who="every service"),
)
SPECS: dict[TopicKey, TopicSpec] = {spec.key: spec for spec in TOPICS}

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_SEGMENT = r"([^/#+]+)"


def _matcher(pattern: str) -> re.Pattern[str]:
    escaped = re.escape(pattern).replace(r"\{", "{").replace(r"\}", "}")
    return re.compile("^" + _PLACEHOLDER.sub(_SEGMENT, escaped) + "$")


_MATCHERS = tuple((spec, _matcher(spec.pattern), _PLACEHOLDER.findall(spec.pattern)) for spec in TOPICS)


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    spec: TopicSpec
    ids: dict[str, str]

    @property
    def key(self) -> TopicKey:
        return self.spec.key


def validate_prefix(prefix: str) -> str:
    """A prefix is one or more plain topic levels: no wildcards, no leading or trailing slash, not empty."""
    if not prefix or prefix.startswith("/") or prefix.endswith("/") or any(c in prefix for c in "#+\0"):
        raise ValueError(f"invalid topic prefix {prefix!r}: use plain levels like 'chargebus' or 'home/ev'")
    return prefix


class Topics:
    """Topic builder and parser for one prefix."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = validate_prefix(prefix)

    def build(self, key: TopicKey, **ids: str) -> str:
        """The concrete topic of spec `key`; ids must not contain `/`, `+`, `#` (they would change the level)."""
        for name, value in ids.items():
            if not value or any(c in value for c in "/#+\0"):
                raise ValueError(f"invalid {name} {value!r} for a topic level")
        return f"{self.prefix}/{SPECS[key].pattern.format(**ids)}"

    def filter(self, key: TopicKey) -> str:
        """The subscription filter of spec `key`, with `+` for every id."""
        return f"{self.prefix}/{_PLACEHOLDER.sub('+', SPECS[key].pattern)}"

    def parse(self, topic: str) -> ParsedTopic | None:
        """Which spec a received topic belongs to, with its ids; None for a foreign topic."""
        head = self.prefix + "/"
        if not topic.startswith(head):
            return None
        rest = topic[len(head) :]
        for spec, matcher, names in _MATCHERS:
            match = matcher.fullmatch(rest)
            if match is not None:
                ids = dict(zip(names, match.groups(), strict=True))
                if spec.key in {"status", "error"} and ids["service"] not in SERVICES:
                    continue
                return ParsedTopic(spec, ids)
        return None

    # Typed shortcuts for the topics services use most.
    def evse_state(self, evse_id: str) -> str:
        return self.build("evse_state", evse_id=evse_id)

    def evse_setpoint(self, evse_id: str) -> str:
        return self.build("evse_setpoint", evse_id=evse_id)

    def vehicle_state(self, vin: str) -> str:
        return self.build("vehicle_state", vin=vin)

    def power(self, meter: str) -> str:
        return self.build("power", meter=meter)

    def status(self, service: str) -> str:
        return self.build("status", service=service)

    def error(self, service: str) -> str:
        return self.build("error", service=service)


def topic_table(prefix: str = DEFAULT_PREFIX) -> str:
    """The contract's topic table as aligned text, for `chargebus topics`."""
    rows = [("topic", "dir", "retained", "payload", "who")]
    rows += [
        (f"{prefix}/{spec.pattern}", spec.direction, "yes" if spec.retained else "no", spec.payload, spec.who)
        for spec in TOPICS
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)) + "  " + row[4]
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)
