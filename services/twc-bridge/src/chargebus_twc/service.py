"""twc-bridge: Gen2 TWCs on RS-485 as chargebus charge points on MQTT.

The serial task (`bus.py`) drives or listens to the bus; this module connects it to MQTT: one retained EvseState
per slave, setpoints in, the `max_current` override command (owned here, docs/contract.md §5), Home Assistant discovery
and error reports. The decisions live in the pure modules (`offer.py`, `evse.py`, `overrides.py`, …).
"""

from __future__ import annotations

import asyncio
import logging
import sys

from chargebus.config import TwcBridgeConfig
from chargebus.ha import Discovery
from chargebus.mqtt import Incoming, Service
from chargebus.runner import ServiceEntry
from chargebus.schema import CommandEnvelope, EvseState, PayloadError, Setpoint, parse_for_topic
from chargebus.topics import TWC_BRIDGE, ParsedTopic, owning_bridge

from chargebus_twc.bus import BusEvent, PortDown, PortUp, SerialBus, WriteRefused
from chargebus_twc.codec import format_twc_id, parse_twc_id
from chargebus_twc.discovery import slave_entities
from chargebus_twc.evse import (
    Settings,
    Situation,
    basis_voltage,
    build_state,
    evse_id_of,
    needs_publish,
    offline_state,
    slave_id_of,
)
from chargebus_twc.link import BusLink, demand_for
from chargebus_twc.offer import BusLimits, plan_offers, rating_problem, setpoint_live, stage_with_holds
from chargebus_twc.overrides import OverrideStore, parse_max_current
from chargebus_twc.slaves import (
    ForeignMaster,
    IdConflict,
    PlugChanged,
    Slave,
    SlaveLinked,
    SlaveLost,
    SlaveRefused,
    VinRead,
)

NAME = "twc-bridge"
#: Our sign byte in linkready frames (TWCManager uses the same easy-to-spot value).
MASTER_SIGN = 0x77
#: How often the states are looked at; one is published on change and at least every `evse.KEEPALIVE_S`.
PUBLISH_PERIOD_S = 1.0

log = logging.getLogger("chargebus_twc")


class TwcBridge:
    """The bridge for one RS-485 bus."""

    def __init__(self, service: Service, config: TwcBridgeConfig) -> None:
        twc = config.twc
        self.service = service
        self.topics = service.topics
        self.clock = service.clock
        self.twc = twc
        self.limits = BusLimits.from_config(twc)
        self.controllable = twc.mode == "master"
        self.settings = Settings(
            limits=self.limits,
            voltage_v=twc.voltage_v,
            phases=twc.phases,
            controllable=self.controllable,
            start_stop=twc.start_stop,
            vin_hints=dict(twc.vin_hints),
        )
        self.link = BusLink(self.clock, mode=twc.mode, master_id=parse_twc_id(twc.master_id), sign=MASTER_SIGN)
        self.bus = SerialBus(twc.port, self.link, self.clock, self.offers)
        self.discovery = Discovery(service, enabled=config.mqtt.ha_discovery, ha_prefix=config.mqtt.ha_prefix)
        self.store = OverrideStore(config.state_dir)
        self.overrides, problem = self.store.load()
        self._startup_problems = [problem] if problem else []
        #: Live setpoints by evse_id, with the epoch second they arrived.
        self.setpoints: dict[str, tuple[Setpoint, float]] = {}
        #: Last published state per slave, with the monotonic second it went out.
        self.published: dict[int, tuple[EvseState, float]] = {}
        self.rating_notes: dict[int, str] = {}
        self._charge_sent: dict[int, bool] = {}
        #: Every slave heard on this bus since the start (a lost one may come back).
        self.seen: set[int] = set()
        self._publish_lock = asyncio.Lock()

    # -- wiring -------------------------------------------------------------------------------------------------

    def register(self) -> None:
        if self.controllable:
            self.service.on_message(self.topics.filter("evse_setpoint"), self.on_setpoint)
        self.service.on_command(self.topics.filter("evse_max_current_set"), self.on_max_current, owns=_owns_twc_evse)
        self.service.on_connect(self._on_connected)
        self.service.add_task("serial", self.bus.run)
        self.service.add_task("events", self._handle_events)
        self.service.add_task("publish", self._publish_forever)
        overrides = ", ".join(f"{k}={v}" for k, v in sorted(self.overrides.items())) or "none"
        log.info(
            f"service={NAME} event=configured port={self.twc.port} mode={self.twc.mode} "
            f"master_id={self.twc.master_id} wiring_max_amps={self.limits.wiring_max_amps} "
            f"bus_max_amps={self.limits.bus_max_amps} max_current_overrides={overrides}"
        )

    async def _on_connected(self) -> None:
        for problem in self._startup_problems:
            await self.service.report_error(str(self.store.path), None, problem)
        self._startup_problems = []

    # -- offers (called by the serial task before each transmission) ---------------------------------------------

    def _setpoint_of(self, slave: Slave) -> tuple[Setpoint | None, float]:
        found = self.setpoints.get(evse_id_of(slave.slave_id))
        return (None, 0.0) if found is None else found

    def offers(self) -> dict[int, int]:
        now = self.clock.time()
        demands = []
        holding: dict[int, int] = {}
        for slave in self.link.registry.slaves:
            setpoint, received_at = self._setpoint_of(slave)
            demand = demand_for(
                slave,
                self.limits,
                voltage_v=basis_voltage(slave, self.twc.voltage_v),
                phases=self.twc.phases,
                setpoint=setpoint,
                received_at=received_at,
                override_amps=self.overrides.get(evse_id_of(slave.slave_id)),
                current_offer=self._current_offer(slave),
            )
            demands.append(demand)
            live = setpoint is not None and setpoint_live(setpoint, received_at, now)
            if live and setpoint is not None and setpoint.power_w is None and self._offer_unknown(slave):
                holding[slave.slave_id] = demand.max_amps
        planned = plan_offers(demands, self.limits, now)
        minimums = {demand.slave_id: demand.min_amps for demand in demands}
        return stage_with_holds(planned, self.link.committed(), minimums, holding, self.limits.bus_max_amps)

    def _offer_unknown(self, slave: Slave) -> bool:
        return slave.slave_id not in self.link.offered and slave.reported_limit_centiamps is None

    def _current_offer(self, slave: Slave) -> int:
        """What the slave applies: our last offer, else the limit it reports (a previous master's), else 0."""
        if slave.slave_id in self.link.offered:
            return self.link.offered[slave.slave_id]
        return (slave.reported_limit_centiamps or 0) // 100

    # -- MQTT input ---------------------------------------------------------------------------------------------

    def _ours(self, slave_id: int) -> bool:
        return slave_id in self.seen or self.link.registry.get(slave_id) is not None

    async def on_setpoint(self, message: Incoming) -> None:
        evse_id = message.parsed.ids.get("evse_id", "") if message.parsed else ""
        slave_id = slave_id_of(evse_id)
        if slave_id is None:
            return  # another bridge's charge point
        if not message.payload:
            self.setpoints.pop(evse_id, None)  # the retained setpoint was withdrawn: failsafe
            return
        try:
            setpoint = _parse_setpoint(evse_id, message.payload)
        except PayloadError:
            if self._ours(slave_id):
                raise  # reported; the last valid setpoint stays until it expires
            return  # a TWC of another instance, perhaps: not ours to judge
        self.setpoints[evse_id] = (setpoint, self.clock.time())
        self._apply_charge(slave_id)

    def _apply_charge(self, slave_id: int) -> None:
        """Queue FC B1/B2 when `[twc] start_stop` is on and the setpoint's `charge` changed."""
        scheduler = self.link.scheduler
        found = self.setpoints.get(evse_id_of(slave_id))
        if not self.twc.start_stop or scheduler is None or found is None or self.link.registry.get(slave_id) is None:
            return
        setpoint, received_at = found
        charge = setpoint.charge
        if charge is None or not setpoint_live(setpoint, received_at, self.clock.time()):
            return
        if self._charge_sent.get(slave_id) != charge:
            self._charge_sent[slave_id] = charge
            scheduler.queue_charge(slave_id, start=charge)
            log.info(f"service={NAME} event=charge_command evse_id={evse_id_of(slave_id)} start={charge}")

    async def on_max_current(self, message: Incoming, command: CommandEnvelope) -> None:
        evse_id = message.parsed.ids.get("evse_id", "") if message.parsed else ""
        slave_id = slave_id_of(evse_id)
        known = slave_id is not None and (self._ours(slave_id) or evse_id in self.overrides)
        if slave_id is None or not known:
            raise ValueError(f"unknown evse_id {evse_id!r}: no such TWC on this bus")
        if not self.controllable:
            raise ValueError(f"{evse_id} is read-only: the bridge only listens to this bus (twc.mode = listen)")
        amps = parse_max_current(
            command.value, wiring_max_amps=self.limits.wiring_max_amps, min_amps=self.limits.min_amps
        )
        updated = dict(self.overrides)
        if amps is None:
            updated.pop(evse_id, None)
        else:
            updated[evse_id] = amps
        try:
            self.store.save(updated)
        except OSError as exc:
            raise ValueError(f"cannot save the override to {self.store.path}: {exc.strerror or exc}") from None
        self.overrides = updated
        log.info(f"service={NAME} event=max_current evse_id={evse_id} amps={'default' if amps is None else amps}")
        await self.publish_states()

    # -- bus events ---------------------------------------------------------------------------------------------

    async def _handle_events(self) -> None:
        await self.service.connected.wait()  # reports made before the first connect would be lost
        while True:
            event = await self.bus.events.get()
            await self.on_event(event)

    async def on_event(self, event: BusEvent) -> None:  # noqa: C901, PLR0912 - one branch per event kind
        port = self.twc.port
        match event:
            case SlaveLinked(slave_id, protocol, advertised):
                evse_id = evse_id_of(slave_id)
                self.seen.add(slave_id)
                log.info(f"service={NAME} event=slave_linked evse_id={evse_id} protocol={protocol} max_a={advertised}")
                if advertised is not None and slave_id not in self.rating_notes:
                    problem = rating_problem(self.limits.wiring_max_amps, advertised)
                    if problem is not None:
                        self.rating_notes[slave_id] = f"unit rated {advertised:g} A, below the wiring limit"
                        await self.service.report_error(self.topics.evse_state(evse_id), None, f"{evse_id}: {problem}")
                for item in slave_entities(
                    self.topics, evse_id, controllable=self.controllable, wiring_max_amps=self.limits.wiring_max_amps
                ):
                    await self.discovery.publish(item)
                self._apply_charge(slave_id)
            case SlaveRefused(slave_id):
                await self.service.report_error(
                    port,
                    None,
                    f"a 4th slave twc-{format_twc_id(slave_id)} announced itself; a Gen2 bus drives at most 3, "
                    "so it is not driven",
                )
            case SlaveLost(slave_id, silent_s):
                evse_id = evse_id_of(slave_id)
                log.warning(f"service={NAME} event=slave_lost evse_id={evse_id} silent_s={silent_s:.1f}")
                self._charge_sent.pop(slave_id, None)
                last = self.published.pop(slave_id, None)
                if last is not None:
                    why = f"no answer for {silent_s:.0f} s"
                    await self.service.publish_retained(
                        self.topics.evse_state(evse_id), offline_state(last[0], self.clock.time(), why)
                    )
                for item in slave_entities(
                    self.topics, evse_id, controllable=self.controllable, wiring_max_amps=self.limits.wiring_max_amps
                ):
                    await self.discovery.remove(item)
            case IdConflict(slave_id):
                log.warning(f"service={NAME} event=id_conflict slave_id={format_twc_id(slave_id)} action=relink")
            case ForeignMaster(master_id):
                await self.service.report_error(
                    port,
                    None,
                    f"another master ({format_twc_id(master_id)}) talks on this bus: set every TWC's rotary switch "
                    "to F, or use twc.mode = listen",
                )
            case PlugChanged(slave_id, plugged_in):
                log.info(f"service={NAME} event=plug evse_id={evse_id_of(slave_id)} plugged_in={plugged_in}")
            case VinRead(slave_id, vin, check_digit_ok):
                level = logging.INFO if check_digit_ok else logging.WARNING
                evse_id = evse_id_of(slave_id)
                log.log(level, f"service={NAME} event=vin evse_id={evse_id} vin={vin} check_digit_ok={check_digit_ok}")
            case PortUp():
                log.info(f"service={NAME} event=port_open port={port}")
            case PortDown(_, error, first, retry_in_s):
                if first:
                    await self.service.report_error(
                        port, None, f"serial port {port} {error}; retrying with backoff (up to 10 s) until it works"
                    )
                else:
                    log.debug(f"service={NAME} event=port_retry port={port} retry_in_s={retry_in_s:.1f}")
            case WriteRefused(reason):
                await self.service.report_error(port, None, f"a transmission was refused: {reason}")
        await self.publish_states()

    # -- state --------------------------------------------------------------------------------------------------

    def state_of(self, slave: Slave) -> EvseState:
        now = self.clock.time()
        evse_id = evse_id_of(slave.slave_id)
        setpoint, received_at = self._setpoint_of(slave)
        offered = self.link.offered.get(slave.slave_id)
        situation = Situation(
            online=self.bus.connected,
            now=now,
            now_monotonic=self.clock.monotonic(),
            offered_a=None if offered is None else float(offered),
            override_amps=self.overrides.get(evse_id),
            failsafe=not setpoint_live(setpoint, received_at, now),
            rating_note=self.rating_notes.get(slave.slave_id),
        )
        return build_state(slave, self.settings, situation)

    async def publish_states(self) -> None:
        async with self._publish_lock:
            for slave in self.link.registry.slaves:
                state = self.state_of(slave)
                previous, published_at = self.published.get(slave.slave_id, (None, 0.0))
                now = self.clock.monotonic()
                if needs_publish(previous, state, published_at, now):
                    self.published[slave.slave_id] = (state, now)
                    await self.service.publish_retained(self.topics.evse_state(state.evse_id), state)

    async def _publish_forever(self) -> None:
        while True:
            await self.publish_states()
            await self.clock.sleep(PUBLISH_PERIOD_S)


def _parse_setpoint(evse_id: str, payload: bytes) -> Setpoint:
    return parse_for_topic(Setpoint, payload, "evse_id", evse_id)


def build(service: Service, config: TwcBridgeConfig) -> TwcBridge:
    bridge = TwcBridge(service, config)
    bridge.register()
    return bridge


async def setup(service: Service, config: TwcBridgeConfig) -> None:
    build(service, config)


def _owns_twc_evse(parsed: ParsedTopic) -> bool:
    return owning_bridge(parsed.ids.get("evse_id", "")) == TWC_BRIDGE


#: The service's `main()` (its own process) and what `chargebus run` starts in one process with others.
main = ServiceEntry(NAME, TwcBridgeConfig, setup)


if __name__ == "__main__":
    sys.exit(main())
