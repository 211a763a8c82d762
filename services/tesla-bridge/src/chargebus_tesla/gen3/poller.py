"""Gen3 Wall Connectors over their local HTTP API: one read-only `twc3-<name>` EVSE per `[[tesla.wall_connectors]]`.

Entry point: `register_wall_connectors(service, config)` adds one supervised poller task per unit and subscribes to
the retained VehicleState of every car whose `wall_connector` names that unit (docs/contract.md §7: the unit carries the
car's VIN while the car reports being plugged in at home). Decisions live in `gen3.state` (pure), the API's
shapes in `gen3.api` (pure); this module only moves bytes: HTTP in, MQTT out.

Per unit: `GET /api/1/vitals` every `POLL_S`, `/api/1/lifetime` every `LIFETIME_S`, `/api/1/version` until it
answered once. The state `<p>/evse/twc3-<name>/state` is published retained on change and at least every
`REPUBLISH_S`. `OFFLINE_AFTER_FAILURES` failed vitals polls in a row → `online: false`, `stale: true` and exactly one
ErrorEvent on `<p>/tesla-bridge/error` (topic = the unit's URL, payload null); the next good answer publishes it
online again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import httpx
from chargebus.config import TeslaBridgeConfig, WallConnectorConfig
from chargebus.mqtt import Incoming, MessageHandler, Service
from chargebus.schema import VehicleState, parse_payload

from chargebus_tesla.gen3.api import (
    LIFETIME_PATH,
    VERSION_PATH,
    VITALS_PATH,
    Gen3FormatError,
    parse_lifetime,
    parse_version,
    parse_vitals,
)
from chargebus_tesla.gen3.state import (
    OFFLINE_AFTER_FAILURES,
    REPUBLISH_S,
    UnitTracker,
    base_url,
    split_host,
)

log = logging.getLogger("chargebus_tesla.gen3")

#: Vitals poll period (the unit refreshes its vitals about once a second; 5 s is plenty for allocation).
POLL_S = 5.0
#: Lifetime counters (and the version, until it answered) are read this often.
LIFETIME_S = 60.0
#: Per request: a unit on the LAN answers in milliseconds; a silent one must not hold up the next poll.
HTTP_TIMEOUT_S = 3.0
SERVICE_NAME = "tesla-bridge"


@dataclass(frozen=True, slots=True)
class PollSettings:
    poll_s: float = POLL_S
    lifetime_s: float = LIFETIME_S
    republish_s: float = REPUBLISH_S
    offline_after: int = OFFLINE_AFTER_FAILURES
    timeout_s: float = HTTP_TIMEOUT_S


class WallConnectorPoller:
    """Polls one unit and publishes its EvseState; `run()` is the supervised task."""

    def __init__(
        self,
        service: Service,
        unit: WallConnectorConfig,
        *,
        http: httpx.AsyncClient | None = None,
        settings: PollSettings | None = None,
    ) -> None:
        self.service = service
        self.settings = settings or PollSettings()
        host, port = split_host(unit.host)
        self.url = base_url(host, port)
        self.tracker = UnitTracker(
            unit.name,
            offline_after=self.settings.offline_after,
            republish_s=self.settings.republish_s,
            # The installer's limit, once `[[tesla.wall_connectors]]` has the key (the local API does not report it).
            max_amps=getattr(unit, "max_current_a", None),
        )
        self.topic = service.topics.evse_state(self.tracker.evse_id)
        self._http = http
        self._next_lifetime_at: float | None = None

    @property
    def name(self) -> str:
        return self.tracker.name

    async def run(self) -> None:
        clock = self.service.clock
        log.info(f"service={SERVICE_NAME} event=gen3_start evse_id={self.tracker.evse_id} url={self.url}")
        # Nothing can be published before the broker answers, and an ErrorEvent sent then would be lost.
        await self.service.connected.wait()
        async with self._client() as client:
            while True:
                started = clock.monotonic()
                await self.poll_once(client)
                await clock.sleep(max(0.0, self.settings.poll_s - (clock.monotonic() - started)))

    @contextlib.asynccontextmanager
    async def _client(self) -> AsyncIterator[httpx.AsyncClient]:
        if self._http is not None:
            yield self._http
            return
        async with httpx.AsyncClient(timeout=httpx.Timeout(self.settings.timeout_s)) as client:
            yield client

    async def poll_once(self, client: httpx.AsyncClient) -> None:
        clock = self.service.clock
        try:
            vitals = parse_vitals(await self._get(client, VITALS_PATH))
        except (httpx.HTTPError, ValueError) as exc:
            await self._failed(exc)
        else:
            if self.tracker.vitals_ok(vitals, clock.time()):
                log.info(f"service={SERVICE_NAME} event=gen3_online evse_id={self.tracker.evse_id} url={self.url}")
            now = clock.monotonic()
            if self._next_lifetime_at is None or now >= self._next_lifetime_at:
                self._next_lifetime_at = now + self.settings.lifetime_s
                await self._read_counters(client)
        await self.publish_if_due()

    async def _read_counters(self, client: httpx.AsyncClient) -> None:
        """Lifetime and (until it answered once) version; their failure does not make the unit offline."""
        try:
            self.tracker.lifetime = parse_lifetime(await self._get(client, LIFETIME_PATH))
        except (httpx.HTTPError, ValueError) as exc:
            log.debug(f"service={SERVICE_NAME} event=gen3_lifetime_failed evse_id={self.tracker.evse_id} error={exc!r}")
        if self.tracker.version is not None:
            return
        try:
            version = parse_version(await self._get(client, VERSION_PATH))
        except (httpx.HTTPError, ValueError) as exc:
            log.debug(f"service={SERVICE_NAME} event=gen3_version_failed evse_id={self.tracker.evse_id} error={exc!r}")
            return
        self.tracker.version = version
        log.info(
            f"service={SERVICE_NAME} event=gen3_version evse_id={self.tracker.evse_id} "
            f"firmware={version.firmware_version} part={version.part_number} serial={version.serial_number}"
        )

    async def _get(self, client: httpx.AsyncClient, path: str) -> Any:
        response = await client.get(self.url + path, timeout=self.settings.timeout_s)
        response.raise_for_status()
        try:
            return response.json()
        except ValueError:
            raise Gen3FormatError(f"{path}: answer is not JSON") from None

    async def _failed(self, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
        if not self.tracker.poll_failed():
            log.debug(
                f"service={SERVICE_NAME} event=gen3_poll_failed evse_id={self.tracker.evse_id} "
                f"failures={self.tracker.failures} error={reason!r}"
            )
            return
        await self.service.report_error(
            self.url + VITALS_PATH,
            None,
            f"wall connector {self.name} ({self.tracker.evse_id}) not answering after "
            f"{self.tracker.failures} polls: {reason}",
        )

    async def publish_if_due(self) -> None:
        clock = self.service.clock
        state = self.tracker.state(clock.time())
        if state is None or not self.tracker.due(state, clock.monotonic()):
            return
        await self.service.publish_retained(self.topic, state)
        self.tracker.published(state, clock.monotonic())

    async def on_vehicle_state(self, message: Incoming, vin: str) -> None:
        """A retained VehicleState of a car configured to charge at this unit; an empty payload forgets it."""
        if not message.payload:
            self.tracker.vehicle(vin, None)
        else:
            state = parse_payload(VehicleState, message.payload)
            if state.vin != vin:
                raise ValueError(f"VehicleState for {state.vin} published on the topic of {vin}")
            self.tracker.vehicle(vin, state)
        await self.publish_if_due()


def register_wall_connectors(
    service: Service,
    config: TeslaBridgeConfig,
    *,
    http: httpx.AsyncClient | None = None,
    poll_s: float = POLL_S,
    lifetime_s: float = LIFETIME_S,
    republish_s: float = REPUBLISH_S,
    offline_after: int = OFFLINE_AFTER_FAILURES,
    timeout_s: float = HTTP_TIMEOUT_S,
) -> None:
    """One supervised poller task per `[[tesla.wall_connectors]]` entry, plus the VehicleState subscriptions.

    `http` is used (and not closed) when given; otherwise each poller opens its own client. A unit whose `host`
    cannot be read, or whose name repeats an earlier one, is skipped with one ErrorEvent once the service runs.
    """
    settings = PollSettings(poll_s, lifetime_s, republish_s, offline_after, timeout_s)
    seen: set[str] = set()
    for unit in config.tesla.wall_connectors:
        if unit.name in seen:
            problem = f"wall connector name {unit.name!r} is used twice: only the first one is polled"
            service.add_task(f"gen3-{unit.name}-repeated", _config_problem(service, unit, problem))
            continue
        try:
            poller = WallConnectorPoller(service, unit, http=http, settings=settings)
        except ValueError as exc:
            service.add_task(f"gen3-{unit.name}", _config_problem(service, unit, str(exc)))
            continue
        seen.add(unit.name)
        service.add_task(f"gen3-{unit.name}", poller.run)
        for vehicle in config.tesla.vehicles:
            if vehicle.wall_connector == unit.name:
                service.on_message(service.topics.vehicle_state(vehicle.vin), _vehicle_handler(poller, vehicle.vin))


def _vehicle_handler(poller: WallConnectorPoller, vin: str) -> MessageHandler:
    async def handle(message: Incoming) -> None:
        await poller.on_vehicle_state(message, vin)

    return handle


def _config_problem(
    service: Service, unit: WallConnectorConfig, problem: str
) -> Callable[[], Coroutine[Any, Any, None]]:
    async def report() -> None:
        log.error(f"service={SERVICE_NAME} event=gen3_config_error name={unit.name} error={problem!r}")
        await service.connected.wait()
        await service.report_error(f"{service.topics.prefix}/{SERVICE_NAME}/gen3/{unit.name}", None, problem)

    return report
