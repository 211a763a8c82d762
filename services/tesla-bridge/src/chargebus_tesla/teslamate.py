"""TeslaMate's MQTT feed for one car, pure: topic → field, payload → value, freshness.

TeslaMate publishes `<prefix>/cars/<car_id>/<field>` as plain strings (retained, QoS 1), only when a value changes,
plus a non-retained `healthy` heartbeat on every summary (about every 30 s while the car sleeps). Its `car_id` is
TeslaMate's own database id and no topic carries the VIN, so the mapping car_id → VIN comes from the config
(`teslamate_car_id`), never from `display_name`.

Rules kept here:

- `""` means null (TeslaMate publishes an empty string for a nulled value, which also deletes the retained copy).
- A retained message replayed at subscribe time says what TeslaMate last knew, not that it is alive: it fills the
  values but does not count as "heard". Only live messages (and the heartbeat) make the feed fresh.
- The feed is fresh while heard within `teslamate_stale_s` (longer while TeslaMate says `suspended`: it is silent
  for its whole 21-minute suspend period) and `healthy` is not `false`. Right after start the bridge grants a
  short grace period, so that a car TeslaMate already watches is not polled before the first heartbeat arrives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from chargebus.values import lenient_number as _number

from chargebus_tesla.poll_policy import OnlineState, teslamate_is_fresh
from chargebus_tesla.vehicle_data import CHARGING_STATES, CarReport

#: After start, a car with a `teslamate_car_id` is not polled for this long while waiting for TeslaMate's first
#: live message (its heartbeat comes every 30 s while the car sleeps, every summary otherwise).
STARTUP_GRACE_S = 120.0

#: The TeslaMate fields the bridge reads (TeslaMate's own names). Others are accepted and ignored.
FIELDS: frozenset[str] = frozenset(
    {
        "display_name",
        "state",
        "since",
        "healthy",
        "battery_level",
        "charge_limit_soc",
        "plugged_in",
        "charging_state",
        "charger_actual_current",
        "charger_phases",
        "charger_voltage",
        "charger_power",
        "charge_current_request",
        "charge_current_request_max",
        "charge_energy_added",
        "time_to_full_charge",
        "geofence",
        "latitude",
        "longitude",
        "location",
    }
)

#: TeslaMate's state machine → the contract's online state. `suspended` means TeslaMate stopped polling so the car
#: can fall asleep; the car is usually still online. `start`/`unavailable` say nothing yet.
_ONLINE_STATES: dict[str, OnlineState] = {
    "online": "online",
    "charging": "online",
    "driving": "online",
    "updating": "online",
    "suspended": "online",
    "asleep": "asleep",
    "offline": "offline",
}


def car_topic_filter(prefix: str, car_id: int) -> str:
    """The subscription for one TeslaMate car (`prefix` may hold a namespace: `teslamate/ns`)."""
    return f"{prefix}/cars/{car_id}/#"


def parse_topic(prefix: str, topic: str) -> tuple[int, str] | None:
    """`<prefix>/cars/<id>/<field>` → (id, field); None for anything else."""
    head = f"{prefix}/cars/"
    if not topic.startswith(head):
        return None
    parts = topic[len(head) :].split("/")
    if len(parts) != 2 or not parts[0].isdigit() or not parts[1]:
        return None
    return int(parts[0]), parts[1]


def decode_value(payload: bytes) -> str | None:
    """A TeslaMate payload as text; the empty string (TeslaMate's null) as None."""
    text = payload.decode("utf-8", errors="replace").strip()
    return text or None


@dataclass
class TeslaMateCar:
    """What TeslaMate said about one car, and when it was last heard live."""

    car_id: int
    values: dict[str, str | None] = field(default_factory=dict)
    last_message_at: float | None = None
    #: when a value the bridge reads last changed (live messages only)
    last_change_at: float | None = None
    messages: int = 0

    def apply(self, name: str, payload: bytes, now: float, *, retained: bool) -> bool:
        """One message on `<prefix>/cars/<id>/<name>`. True when a value the bridge reads changed."""
        self.messages += 1
        if not retained:
            self.last_message_at = now
        if name not in FIELDS:
            return False
        value = decode_value(payload)
        if name == "healthy" and retained and value is None:
            # TeslaMate wipes an old retained heartbeat at start-up: nothing to learn from that.
            return False
        changed = self.values.get(name) != value or name not in self.values
        self.values[name] = value
        if changed and not retained and name != "healthy":
            self.last_change_at = now
        return changed

    # -- reading -----------------------------------------------------------------------------------------------

    @property
    def state(self) -> str | None:
        return self.values.get("state")

    @property
    def online_state(self) -> OnlineState:
        return _ONLINE_STATES.get(self.state or "", "unknown")

    @property
    def healthy(self) -> bool | None:
        return _boolean(self.values.get("healthy"))

    @property
    def plugged_in(self) -> bool | None:
        return _boolean(self.values.get("plugged_in"))

    @property
    def geofence(self) -> str | None:
        return self.values.get("geofence")

    @property
    def knows_geofence(self) -> bool:
        return "geofence" in self.values

    @property
    def display_name(self) -> str | None:
        return self.values.get("display_name")

    def fresh(self, now: float, stale_s: float, started_at: float) -> bool:
        """TeslaMate is a live source for this car right now (see the module docstring)."""
        if self.healthy is False:
            return False
        if self.last_message_at is None:
            return now - started_at < STARTUP_GRACE_S
        return teslamate_is_fresh(now, self.last_message_at, self.state, stale_s)

    def report(self) -> CarReport:
        """The charging facts, in the contract's units (W, Wh, s), read leniently field by field."""
        get = self.values.get
        state = get("charging_state")
        phases = _number(get("charger_phases"))
        power_kw = _number(get("charger_power"))
        energy_kwh = _number(get("charge_energy_added"))
        hours = _number(get("time_to_full_charge"))
        latitude, longitude = self._position()
        return CarReport(
            charging_state=state if state in CHARGING_STATES else None,  # type: ignore[arg-type]
            soc_pct=_number(get("battery_level")),
            charge_limit_pct=_number(get("charge_limit_soc")),
            charger_phases=int(phases) if phases is not None and 1 <= phases <= 3 else None,
            charger_voltage_v=_number(get("charger_voltage")),
            charger_actual_current_a=_number(get("charger_actual_current")),
            charge_current_request_a=_number(get("charge_current_request")),
            charge_current_request_max_a=_number(get("charge_current_request_max")),
            # TeslaMate publishes charger_power in kW (its docs table says W; its code and HA discovery say kW).
            charger_power_w=None if power_kw is None else power_kw * 1000.0,
            charge_energy_added_wh=None if energy_kwh is None else energy_kwh * 1000.0,
            time_to_full_s=None if hours is None else hours * 3600.0,
            latitude=latitude,
            longitude=longitude,
        )

    def _position(self) -> tuple[float | None, float | None]:
        location = _json_object(self.values.get("location"))
        if location is not None:
            latitude, longitude = _number(location.get("latitude")), _number(location.get("longitude"))
            if latitude is not None and longitude is not None:
                return latitude, longitude
        return _number(self.values.get("latitude")), _number(self.values.get("longitude"))


def geofence_says_home(geofence: str | None) -> bool:
    """TeslaMate geofence name → at home, when no `home` location is configured: a name containing "home"."""
    return geofence is not None and "home" in geofence.casefold()


def _boolean(value: str | None) -> bool | None:
    if value == "true":
        return True
    if value == "false":
        return False
    return None


def _json_object(value: str | None) -> dict[str, Any] | None:
    if not value:
        return None
    try:
        data = json.loads(value)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
