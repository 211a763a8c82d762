"""ocpp-bridge: an OCPP central system whose charge points' connectors are chargebus EVSEs on MQTT.

Chargers connect over WebSocket (`ws[s]://<listen>/<ocpp_id>`); each connector becomes `ocpp-<name>[-<n>]` with a
retained EvseState, and its setpoints become charging profiles. One task per charge point reconciles its profiles
with its targets (a slow charger never delays another); a one-second tick notices expired setpoints, silent
chargers and publishes states. The decisions live in the pure modules (`profile.py`, `evse.py`, `admission.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import sys
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from chargebus.config import OcppBridgeConfig, OcppChargePointConfig
from chargebus.ha import Discovery
from chargebus.mqtt import Incoming, Service
from chargebus.runner import ServiceEntry
from chargebus.schema import CommandEnvelope, EvseState, PayloadError, Setpoint, evse_kind_of, parse_for_topic
from chargebus.topics import OCPP_BRIDGE, ParsedTopic, owning_bridge
from pydantic import ValidationError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from chargebus_ocpp.admission import SUBPROTOCOLS, ReportBudget, admit, choose_subprotocol, ocpp_id_of
from chargebus_ocpp.discovery import connector_entities
from chargebus_ocpp.evse import same_but_time, unknown_name
from chargebus_ocpp.overrides import OverrideStore, parse_max_current
from chargebus_ocpp.station import Link, Station
from chargebus_ocpp.v16 import Csms16
from chargebus_ocpp.v201 import Csms201

NAME = "ocpp-bridge"
TICK_S = 1.0
#: A state is published on change and at least this often.
KEEPALIVE_S = 30.0
#: Frames above this are refused by the WebSocket layer (no OCPP message comes near it).
MAX_FRAME_BYTES = 64 * 1024
#: Unconfigured chargers admitted at once (allow_unknown): each becomes EVSEs, so their number is bounded.
MAX_UNKNOWN = 16
#: A refused charger retries often: its refusal is reported at most once per this many seconds.
REFUSAL_REPORT_S = 600.0
MAX_REFUSALS_REMEMBERED = 256
#: How long a new connection may take to send its BootNotification before the bridge carries on without one.
BOOT_WAIT_S = 3.0

log = logging.getLogger("chargebus_ocpp")


class OcppBridge:
    def __init__(self, service: Service, config: OcppBridgeConfig) -> None:
        self.service = service
        self.topics = service.topics
        self.clock = service.clock
        self.ocpp = config.ocpp
        self.discovery = Discovery(service, enabled=config.mqtt.ha_discovery, ha_prefix=config.mqtt.ha_prefix)
        self.passwords: dict[str, str | None] = {cp.ocpp_id: cp.password() for cp in self.ocpp.charge_points}
        self.store = OverrideStore(config.state_dir)
        self.overrides, problem = self.store.load()
        self._startup_problems = [problem] if problem else []
        self.stations: dict[str, Station] = {}
        for cp in self.ocpp.charge_points:
            self._add_station(cp, controllable=True)
        self.published: dict[str, tuple[EvseState, float]] = {}
        self.refusals: OrderedDict[str, float] = OrderedDict()
        self.budget = ReportBudget()
        self.server: Server | None = None
        self.listening = asyncio.Event()
        self._publish_lock = asyncio.Lock()
        self._workers: dict[str, asyncio.Task[None]] = {}

    @property
    def scheme(self) -> str:
        return "wss" if self.ocpp.tls else "ws"

    def _source(self, ocpp_id: str) -> str:
        return f"{self.scheme}://{self.ocpp.listen}/{ocpp_id}"

    def _add_station(self, cp: OcppChargePointConfig, *, controllable: bool) -> Station:
        station = Station(
            cp=cp,
            controllable=controllable,
            clock=self.clock,
            heartbeat_s=self.ocpp.heartbeat_s,
            meter_interval_s=self.ocpp.meter_interval_s,
            report=self._report,
            topic_of_setpoint=self.topics.evse_setpoint,
            source_topic=self._source(cp.ocpp_id),
            on_change=self._on_station_change,
        )
        station.overrides = self.overrides
        self.stations[cp.ocpp_id] = station
        return station

    # -- wiring -------------------------------------------------------------------------------------------------

    def register(self) -> None:
        self.service.on_message(self.topics.filter("evse_setpoint"), self.on_setpoint)
        self.service.on_command(self.topics.filter("evse_max_current_set"), self.on_max_current, owns=_owns_ocpp_evse)
        self.service.on_connect(self._on_connected)
        self.service.add_task("websocket", self.serve)
        self.service.add_task("tick", self._tick_forever)
        points = ", ".join(f"{cp.ocpp_id}→ocpp-{cp.name}" for cp in self.ocpp.charge_points) or "none"
        log.info(
            f"service={NAME} event=configured listen={self.scheme}://{self.ocpp.listen} charge_points={points} "
            f"allow_unknown={self.ocpp.allow_unknown}"
        )

    async def _on_connected(self) -> None:
        for problem in self._startup_problems:
            await self.service.report_error(str(self.store.path), None, problem)
        self._startup_problems = []
        await self.publish_states()

    def _apply_overrides(self) -> None:
        for station in self.stations.values():
            station.overrides = self.overrides
            station.wake.set()

    async def on_max_current(self, message: Incoming, command: CommandEnvelope) -> None:
        evse_id = message.parsed.ids.get("evse_id", "") if message.parsed else ""
        found = self._connector_of(evse_id)
        if found is None:
            raise ValueError(f"unknown EVSE id {evse_id!r}: not configured and not seen")
        station, _ = found
        if not station.controllable:
            raise ValueError(f"{evse_id} is read-only (an unconfigured charger): it has no max_current")
        amps = parse_max_current(
            command.value, max_current_a=station.cp.max_current_a, min_current_a=station.cp.min_current_a
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
        self._apply_overrides()
        log.info(f"service={NAME} event=max_current evse_id={evse_id} amps={'default' if amps is None else amps}")
        await self.publish_station(station)

    async def _report(self, topic: str, error: str) -> None:
        allowed = self.budget.allow(topic, self.clock.monotonic())
        if allowed is True:
            await self.service.report_error(topic, None, error)
        elif allowed is None:
            await self.service.report_error(
                topic, None, f"{error} (more than {self.budget.per_window} reports a minute: the next are only logged)"
            )
        else:
            log.warning(f"service={NAME} event=error_suppressed topic={topic} error={error!r}")

    # -- the WebSocket server -----------------------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self.ocpp.cert_file is None or self.ocpp.key_file is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(self.ocpp.cert_file), str(self.ocpp.key_file))
        return context

    async def serve(self) -> None:
        async with serve(
            self._handle,
            self.ocpp.host or None,
            self.ocpp.port,
            ssl=self._ssl_context(),
            process_request=self._process_request,
            select_subprotocol=_select_subprotocol,
            subprotocols=[Subprotocol(p) for p in SUBPROTOCOLS],
            max_size=MAX_FRAME_BYTES,
            compression=None,
            ping_interval=None,  # OCPP keeps its own heartbeat; some chargers mishandle WebSocket pings
        ) as server:
            self.server = server
            self.listening.set()
            log.info(f"service={NAME} event=listening address={self.scheme}://{self.ocpp.listen}")
            await asyncio.Future()  # until cancelled

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        ocpp_id = ocpp_id_of(request.path)
        station = self.stations.get(ocpp_id) if ocpp_id is not None else None
        configured = station is not None and station.controllable
        offered = [p.strip() for h in request.headers.get_all("Sec-WebSocket-Protocol") for p in h.split(",")]
        refusal = admit(
            ocpp_id,
            request.headers.get("Authorization"),
            [p for p in offered if p],
            configured=configured,
            password=self.passwords.get(ocpp_id or "") if configured else None,
            allow_unknown=self.ocpp.allow_unknown,
        )
        if refusal is None and ocpp_id is not None and station is None:
            refusal_text = self._admit_unknown(ocpp_id)
            if refusal_text is not None:
                return connection.respond(503, refusal_text)
        if refusal is None:
            return None
        await self._report_refusal(ocpp_id or request.path[:60], refusal.reason)
        response = connection.respond(refusal.status, refusal.reason + "\n")
        if refusal.status == 401:
            response.headers["WWW-Authenticate"] = 'Basic realm="chargebus"'
        return response

    def _admit_unknown(self, ocpp_id: str) -> str | None:
        name = unknown_name(ocpp_id)
        if name is None:
            return f"charge point id {ocpp_id!r} does not make an EVSE name"
        if any(s.cp.name == name for s in self.stations.values()):
            return f"charge point id {ocpp_id!r} would take the name {name!r}, which another one has"
        if sum(1 for s in self.stations.values() if not s.controllable) >= MAX_UNKNOWN:
            return f"already {MAX_UNKNOWN} unconfigured charge points: configure this one"
        try:
            cp = OcppChargePointConfig(ocpp_id=ocpp_id, name=name)
        except ValidationError:
            return f"charge point id {ocpp_id!r} cannot be admitted (characters a URL segment must not carry)"
        self._add_station(cp, controllable=False)
        log.info(f"service={NAME} event=unknown_admitted ocpp_id={ocpp_id} evse_id=ocpp-{name} read_only=true")
        return None

    async def _report_refusal(self, ocpp_id: str, reason: str) -> None:
        now = self.clock.monotonic()
        key = f"{ocpp_id}|{reason}"
        last = self.refusals.get(key)
        log.warning(f"service={NAME} event=refused ocpp_id={ocpp_id!r} reason={reason!r}")
        if last is not None and now - last < REFUSAL_REPORT_S:
            return
        self.refusals[key] = now
        self.refusals.move_to_end(key)
        while len(self.refusals) > MAX_REFUSALS_REMEMBERED:
            self.refusals.popitem(last=False)
        await self.service.report_error(self._source(ocpp_id), None, f"connection refused: {reason}")

    async def _handle(self, connection: ServerConnection) -> None:
        ocpp_id = ocpp_id_of(connection.request.path if connection.request else "")
        station = self.stations.get(ocpp_id or "")
        if ocpp_id is None or station is None:
            await connection.close(1008, "unknown charge point")
            return
        version = connection.subprotocol or "ocpp1.6"
        session = self._session(version, ocpp_id, connection, station)
        previous = station.link
        if previous is not None:
            log.warning(f"service={NAME} event=replaced ocpp_id={ocpp_id}: a new connection replaces the old one")
            with contextlib.suppress(Exception):
                await previous.close()
        station.connected(session)
        session.spawn(self._boot_or_carry_on(station, session), "boot-wait")
        self._ensure_worker(station)
        log.info(f"service={NAME} event=connected ocpp_id={ocpp_id} version={version}")
        try:
            await session.start()
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
            log.info(f"service={NAME} event=disconnected ocpp_id={ocpp_id} code={code}")
        finally:
            session.closed.set()
            station.disconnected(session)
            for task in list(session.tasks):
                task.cancel()
            await self.publish_station(station)

    async def _boot_or_carry_on(self, station: Station, session: Link) -> None:
        """A charger that only lost its connection reconnects without a BootNotification: after a short wait the
        bridge configures it and sends its profiles anyway (it would otherwise stay uncontrolled until a reboot)."""
        await asyncio.sleep(BOOT_WAIT_S)
        if station.link == session and not station.booted:
            log.info(f"service={NAME} event=no_boot ocpp_id={station.cp.ocpp_id}: configuring the reconnected charger")
            station.on_boot(station.capabilities.vendor, station.capabilities.model)
            await session.configure()

    def _session(self, version: str, ocpp_id: str, connection: ServerConnection, station: Station) -> Any:
        if version == "ocpp2.0.1":
            return Csms201(
                ocpp_id, connection, station, source=self._source(ocpp_id), heartbeat_s=self.ocpp.heartbeat_s
            )
        return Csms16(ocpp_id, connection, station, source=self._source(ocpp_id), heartbeat_s=self.ocpp.heartbeat_s)

    # -- per station work ---------------------------------------------------------------------------------------

    def _ensure_worker(self, station: Station) -> None:
        ocpp_id = station.cp.ocpp_id
        task = self._workers.get(ocpp_id)
        if task is None or task.done():
            self._workers[ocpp_id] = asyncio.create_task(self._work(station), name=f"ocpp-{ocpp_id}")

    async def _work(self, station: Station) -> None:
        while True:
            await station.wake.wait()
            station.wake.clear()
            try:
                await station.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception(f"service={NAME} event=reconcile_failed ocpp_id={station.cp.ocpp_id}")
                await self._report(station.source_topic, f"sending profiles failed: {type(exc).__name__}: {exc}")
            await self.publish_station(station)

    async def _tick_forever(self) -> None:
        while True:
            for station in list(self.stations.values()):
                station.wake.set()
                self._ensure_worker(station)
            await self.publish_states()
            await self.clock.sleep(TICK_S)

    # -- MQTT input ---------------------------------------------------------------------------------------------

    def _connector_of(self, evse_id: str) -> tuple[Station, int] | None:
        for station in self.stations.values():
            connector = station.connector_of(evse_id)
            if connector is not None:
                return station, connector
        return None

    async def on_setpoint(self, message: Incoming) -> None:
        evse_id = message.parsed.ids.get("evse_id", "") if message.parsed else ""
        if evse_kind_of(evse_id) != "ocpp":
            return  # another bridge's charge point
        found = self._connector_of(evse_id)
        if found is None:
            if message.payload:
                with contextlib.suppress(PayloadError):
                    parse_for_topic(Setpoint, message.payload, "evse_id", evse_id)
                    log.debug(f"service={NAME} event=setpoint_ignored evse_id={evse_id} reason=not ours")
            return  # a charge point of another instance, perhaps: not ours to judge
        station, connector = found
        if not message.payload:
            station.take_setpoint(connector, None)  # withdrawn: failsafe
            return
        setpoint = parse_for_topic(Setpoint, message.payload, "evse_id", evse_id)  # invalid: reported, last kept
        if not station.controllable:
            raise ValueError(f"{evse_id} is read-only (an unconfigured charger): setpoints are not applied")
        station.take_setpoint(connector, setpoint)

    # -- state --------------------------------------------------------------------------------------------------

    async def _on_station_change(self, station: Station) -> None:
        await self.publish_station(station)

    async def publish_station(self, station: Station) -> None:
        async with self._publish_lock:
            now = self.clock.monotonic()
            for state in station.states():
                previous, at = self.published.get(state.evse_id, (None, 0.0))
                if previous is None:
                    for item in connector_entities(
                        self.topics,
                        state.evse_id,
                        state.name,
                        controllable=station.controllable,
                        max_current_a=station.cp.max_current_a,
                    ):
                        await self.discovery.publish(item)
                if same_but_time(previous, state) and now - at < KEEPALIVE_S:
                    continue
                self.published[state.evse_id] = (state, now)
                await self.service.publish_retained(self.topics.evse_state(state.evse_id), state)

    async def publish_states(self) -> None:
        for station in list(self.stations.values()):
            await self.publish_station(station)


def _owns_ocpp_evse(parsed: ParsedTopic) -> bool:
    return owning_bridge(parsed.ids.get("evse_id", "")) == OCPP_BRIDGE


def _select_subprotocol(_connection: ServerConnection, offered: Sequence[str]) -> Any:
    """ocpp2.0.1 over ocpp1.6; a charger offering none is taken as 1.6 (some old firmware sends no header)."""
    return choose_subprotocol(list(offered))


def build(service: Service, config: OcppBridgeConfig) -> OcppBridge:
    bridge = OcppBridge(service, config)
    bridge.register()
    return bridge


async def setup(service: Service, config: OcppBridgeConfig) -> None:
    # The ocpp library logs every frame at INFO: kept for --log-level debug only.
    logging.getLogger("ocpp").setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        build(service, config)
    except OSError as exc:  # a password file that cannot be read
        print(f"config: ocpp.charge_points: {exc.strerror or exc}: {exc.filename}", file=sys.stderr)  # noqa: T201
        sys.exit(2)


#: The service's `main()` (its own process) and what `chargebus run` starts in one process with others.
main = ServiceEntry(NAME, OcppBridgeConfig, setup)


if __name__ == "__main__":
    sys.exit(main())
