"""A slave as the contract's EvseState (docs/contract.md §6), and when to publish it. Pure: times are passed in.

Each slave is the charge point `twc-<id>`. Its electrical basis is the `[twc]` phases and, per phase, the voltage
the TWC reports in its energy answer (FD EB), else the nominal `voltage_v`. Its power limits are whole amps at that
basis: minimum = max(`min_amps`, 5 A protocol 1 / 6 A protocol 2); maximum = min(wiring limit, the unit's advertised
rating, the `max_current` override). The override has no field of its own in EvseState: it shows in `max_power_w`
and in `status_text`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from chargebus.schema import Control, EvseState, evse_id_name, evse_kind_of, make_evse_id

from chargebus_twc.codec import format_twc_id, parse_twc_id
from chargebus_twc.offer import BusLimits, slave_max_amps, slave_min_amps
from chargebus_twc.slaves import Slave

#: A slave answers every heartbeat (each second) and a listened-to master polls every 1–3 s; older data is stale.
STALE_AFTER_S = 6.0
#: Publish at least this often while online, so `updated_at` shows the data is alive.
KEEPALIVE_S = 10.0
#: An idle TWC reports about 0.25 A, a calibration offset (docs/twc-gen2-protocol.md §4.2): below this the draw is
#: taken as 0.
NOISE_FLOOR_A = 0.5
#: A car draws at least this while it charges (docs/twc-gen2-protocol.md §4.6 uses the same 1 A threshold).
CHARGING_A = 1.0

STATE_TEXT = {
    0x00: "ready",
    0x01: "charging",
    0x02: "error",
    0x03: "plugged in, not charging",
    0x04: "plugged in, ready to charge",
    0x05: "busy",
    0x06: "raising the current",
    0x07: "lowering the current",
    0x08: "starting to charge",
    0x09: "limit set",
    0x0A: "current adjusted",
}


def evse_id_of(slave_id: int) -> str:
    return make_evse_id("twc2", format_twc_id(slave_id))


def slave_id_of(evse_id: str) -> int | None:
    """The bus ID of `twc-<id>` (4 lower-case hex digits, docs/contract.md §4), else None."""
    hex_id = evse_id_name(evse_id)
    if evse_kind_of(evse_id) != "twc2" or hex_id != hex_id.lower():
        return None
    try:
        return parse_twc_id(hex_id)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Settings:
    """What the configuration says about every slave on this bus."""

    limits: BusLimits
    voltage_v: float
    phases: int
    controllable: bool
    start_stop: bool
    vin_hints: dict[str, str]


@dataclass(frozen=True, slots=True)
class Situation:
    """What the bridge knows about one slave besides its frames."""

    online: bool
    now: float
    now_monotonic: float
    #: Amps of the last limit heartbeat we sent (master mode); None before the first one.
    offered_a: float | None = None
    override_amps: int | None = None
    #: True while the slave runs on failsafe (no live setpoint).
    failsafe: bool = False
    rating_note: str | None = None


def basis_voltage(slave: Slave, nominal_v: float) -> float:
    """The mean of the phase voltages the TWC reports, else the nominal voltage."""
    measured = slave.phase_voltages_v
    if not measured:
        return nominal_v
    return round(sum(measured) / len(measured), 1)


def status_text(slave: Slave, settings: Settings, situation: Situation) -> str:
    if not situation.online:
        words = ["offline"]
    elif slave.state_code is None:
        words = ["linked"]
    else:
        words = [STATE_TEXT.get(slave.state_code, f"state 0x{slave.state_code:02X}")]
    if not settings.controllable:
        words.append("read-only (listen mode)")
    elif situation.online and situation.failsafe:
        words.append("failsafe (no live setpoint)")
    if situation.override_amps is not None:
        words.append(f"max_current override {situation.override_amps} A")
    if situation.rating_note is not None:
        words.append(situation.rating_note)
    return "; ".join(words)


def build_state(slave: Slave, settings: Settings, situation: Situation) -> EvseState:
    evse_id = evse_id_of(slave.slave_id)
    voltage_v = basis_voltage(slave, settings.voltage_v)
    phases = settings.phases
    step_w = voltage_v * phases
    limits = settings.limits
    min_amps = slave_min_amps(limits.min_amps, slave.protocol)
    max_amps = slave_max_amps(limits.wiring_max_amps, slave.advertised_max_amps, situation.override_amps)
    online = situation.online
    measured = slave.measured_amps if online else None
    current_a = None if measured is None else (measured if measured >= NOISE_FLOOR_A else 0.0)
    hint = settings.vin_hints.get(format_twc_id(slave.slave_id))
    vin = slave.vin or (hint if slave.plugged_in is not False else None)
    # A listener reports what the real master offered: the limit the slave says it applies.
    offered_a = situation.offered_a if settings.controllable else slave.reported_limit_amps
    controls: list[Control] = []
    if settings.controllable:
        controls = ["current", "start_stop"] if settings.start_stop else ["current"]
    plugged_in_at = (
        datetime.fromtimestamp(slave.plugged_in_at, tz=UTC) if online and slave.plugged_in_at is not None else None
    )
    return EvseState(
        evse_id=evse_id,
        kind="twc2",
        name=f"TWC {format_twc_id(slave.slave_id)}",
        controllable=settings.controllable,
        controls=controls,
        online=online,
        vin=vin if online else None,
        plugged_in=slave.plugged_in if online else None,
        plugged_in_at=plugged_in_at,
        charging=None if current_a is None else current_a >= CHARGING_A,
        phases=phases,
        voltage_v=voltage_v,
        phase_voltages_v=slave.phase_voltages_v,
        current_a=current_a,
        offered_a=offered_a if online else None,
        power_w=None if current_a is None else round(current_a * step_w, 1),
        min_power_w=min_amps * step_w,
        max_power_w=max_amps * step_w,
        step_w=step_w,
        session_energy_wh=None,
        lifetime_energy_wh=None if slave.lifetime_kwh is None else slave.lifetime_kwh * 1000.0,
        state_code=None if slave.state_code is None or not online else f"0x{slave.state_code:02X}",
        status_text=status_text(slave, settings, situation),
        source="rs485",
        updated_at=datetime.fromtimestamp(situation.now, tz=UTC),
        stale=not online or situation.now_monotonic - slave.last_seen > STALE_AFTER_S,
    )


def offline_state(last: EvseState, now: float, why: str) -> EvseState:
    """The last published state of a slave that is gone: every live reading unknown, limits kept."""
    return last.model_copy(
        update={
            "online": False,
            "stale": True,
            "vin": None,
            "plugged_in": None,
            "plugged_in_at": None,
            "charging": None,
            "current_a": None,
            "offered_a": None,
            "power_w": None,
            "state_code": None,
            "status_text": f"offline: {why}",
            "updated_at": datetime.fromtimestamp(now, tz=UTC),
        }
    )


def needs_publish(previous: EvseState | None, state: EvseState, last_published: float, now: float) -> bool:
    """On any change (other than `updated_at`), and at least every KEEPALIVE_S (monotonic seconds)."""
    if previous is None or now - last_published >= KEEPALIVE_S:
        return True
    return previous.model_copy(update={"updated_at": state.updated_at}) != state
