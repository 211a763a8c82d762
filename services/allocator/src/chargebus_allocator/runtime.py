"""The allocator on MQTT: subscriptions, commands, the state file and the loop that runs rounds.

Inputs only update the engine and mark it dirty; one task runs the rounds. A round starts as soon as something
changed (messages that arrived together are taken in one round, and rounds are at least `MIN_GAP_S` apart, or
as long apart as the last one took, so a flood cannot eat the CPU) and otherwise when the engine says the next one
is due (setpoint refresh, a meter going stale, a timer ending, the regular tick).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Literal

from chargebus.clock import sleep_until_poked
from chargebus.config import AllocatorServiceConfig
from chargebus.ha import Discovery
from chargebus.mqtt import Incoming, Service
from chargebus.schema import CommandEnvelope, PayloadError, decode_json, parse_command, transaction_in, transaction_of
from chargebus.statefile import read_json_if_present, write_json
from chargebus.topics import TopicKey

from chargebus_allocator import commands, overrides, plans, schedules, statefile
from chargebus_allocator.discovery import Features, HaSync
from chargebus_allocator.engine import Engine, Notice, Round

log = logging.getLogger("chargebus.allocator")

SERVICE = "allocator"
#: The retained inputs of departure planning (docs/planning.md).
OUTLOOK_TOPICS: tuple[TopicKey, ...] = ("tariff_grid", "tariff_feedin", "forecast_solar", "forecast_co2")
#: Rounds are at least this far apart (real time): messages arriving meanwhile are taken together.
MIN_GAP_S = 0.005
#: After connecting, wait this long (simulated time) for retained states and meters before the first round.
STARTUP_GRACE_S = 0.5
#: Publications handed to the client but not yet acknowledged, before a round waits for them.
MAX_INFLIGHT = 1000


class Allocator:
    def __init__(self, service: Service, config: AllocatorServiceConfig) -> None:
        self.service = service
        self.config = config
        self.topics = service.topics
        self.clock = service.clock
        self.state_path: Path = statefile.path_in(config.state_dir)
        loaded, capacities, problems = self._load_state()
        self.engine = Engine(config, self.topics, self.clock.time(), loaded)
        problems += self.engine.plan_book.learner.load(capacities)
        self.startup_notices = [Notice(str(self.state_path), problem) for problem in problems]
        self.dirty = asyncio.Event()
        discovery = Discovery(service, enabled=config.mqtt.ha_discovery, ha_prefix=config.mqtt.ha_prefix)
        allocator = config.allocator
        features = Features(
            battery=allocator.battery_meter is not None, import_average=allocator.import_average.limit_w > 0
        )
        self.ha = HaSync(discovery, self.topics, features)
        self.rounds = 0
        self.inflight: set[asyncio.Task[None]] = set()
        self.saving = asyncio.Lock()

    def _load_state(self) -> tuple[overrides.Overrides, object, list[str]]:
        """The overrides and the learned capacities (`capacity_wh`) of the state file, and what was wrong in it."""
        try:
            data = read_json_if_present(self.state_path)
        except (OSError, ValueError) as exc:
            return overrides.Overrides(), None, [f"state file unreadable, starting without overrides: {exc}"]
        if data is None:
            return overrides.Overrides(), None, []
        loaded, problems = overrides.load(data)
        log.info(f"service={SERVICE} event=overrides_loaded path={self.state_path} count={len(loaded.entries)}")
        return loaded, data.get("capacity_wh") if isinstance(data, dict) else None, problems

    def register(self) -> None:
        service, topics = self.service, self.topics
        service.on_message(topics.filter("evse_state"), self._on_evse_state)
        service.on_message(topics.filter("vehicle_state"), self._on_vehicle_state)
        for topic in self.engine.meters.topics():
            service.on_message(topic, self._on_meter)
        service.on_command(topics.filter("allocator_mode_set"), self._on_mode)
        service.on_command(topics.filter("allocator_charge_now_set"), self._on_charge_now)
        service.on_command(topics.filter("evse_mode_set"), self._on_evse_mode)
        service.on_command(topics.filter("evse_priority_set"), self._on_evse_priority)
        service.on_command(topics.filter("vehicle_priority_set"), self._on_vehicle_priority)
        service.on_command(topics.filter("allocator_schedules_set"), self._on_schedules)
        service.on_command(topics.filter("allocator_schedules_enabled_set"), self._on_schedules_enabled)
        service.on_command(topics.filter("allocator_grid_limit_set"), self._on_grid_limit)
        service.on_raw_command(topics.filter("allocator_vins_set"), self._on_vins)
        service.on_raw_command(topics.filter("vehicle_plan_set"), self._on_vehicle_plan)
        service.on_raw_command(topics.filter("evse_plan_set"), self._on_evse_plan)
        for key in OUTLOOK_TOPICS:
            service.on_message(topics.filter(key), self._on_outlook)
        service.on_message(topics.filter("status"), self._on_status)
        service.on_connect(self._on_connect)
        service.add_task("rounds", self._run_rounds)
        allocator = self.config.allocator
        for warning in allocator.warnings():
            log.warning(f"service={SERVICE} event=config_warning warning={warning!r}")
        if not self.engine.house.meter_names:
            log.warning(
                f"service={SERVICE} event=config_warning warning='no grid_meter or generation_meter: solar modes "
                "see no surplus'"
            )
        if allocator.authorization == "open" and (allocator.allowed_vins or allocator.denied_vins):
            log.warning(f"service={SERVICE} event=config_warning warning='authorization is open: VIN lists unused'")

    # -- inputs -------------------------------------------------------------------------------------------------

    def _changed(self) -> None:
        self.dirty.set()

    async def _on_evse_state(self, message: Incoming) -> None:
        evse_id = message.parsed.ids["evse_id"] if message.parsed is not None else ""
        commands.evse(evse_id)
        if self.engine.evse_state(evse_id, message.payload, self.clock.time()):
            self._changed()

    async def _on_vehicle_state(self, message: Incoming) -> None:
        vin = message.parsed.ids["vin"] if message.parsed is not None else ""
        commands.vin(vin)
        if self.engine.vehicle_state(vin, message.payload):
            self._changed()

    async def _on_meter(self, message: Incoming) -> None:
        notices = self.engine.meter_message(message.topic, message.payload, self.clock.time())
        self._changed()
        for notice in notices:
            await self.service.report_error(notice.topic, notice.payload, notice.error)

    async def _on_outlook(self, message: Incoming) -> None:
        key = message.parsed.key if message.parsed is not None else ""
        if self.engine.outlook_message(key, message.payload):
            log.info(f"service={SERVICE} event=outlook_received topic={message.topic} bytes={len(message.payload)}")
            self._changed()

    async def _on_status(self, message: Incoming) -> None:
        """A service's presence: a bridge that went offline takes its EVSEs offline with it."""
        service = _topic_id(message, "service")
        if self.engine.bridge_status(service, message.payload):
            online = service not in self.engine.bridges_offline
            log.info(f"service={SERVICE} event=bridge_{'online' if online else 'offline'} bridge={service}")
            self._changed()

    async def _on_connect(self) -> None:
        notices, self.startup_notices = self.startup_notices, []
        for notice in notices:
            await self.service.report_error(notice.topic, notice.payload, notice.error)

    # -- commands -----------------------------------------------------------------------------------------------

    async def _on_mode(self, message: Incoming, command: CommandEnvelope) -> None:
        _check_size(message)
        await self._override(overrides.MODE, commands.mode(command.value))

    async def _on_charge_now(self, message: Incoming, command: CommandEnvelope) -> None:
        _check_size(message)
        seconds, evse_id = commands.charge_now(command.value)
        if evse_id:
            self._check_known_evse(evse_id)
        until = self.clock.time() + seconds if seconds > 0 else None
        key = overrides.evse_key(evse_id, overrides.CHARGE_NOW) if evse_id else overrides.CHARGE_NOW
        await self._override(key, until)

    async def _on_evse_mode(self, message: Incoming, command: CommandEnvelope) -> None:
        _check_size(message)
        evse_id = self._check_known_evse(commands.evse(_topic_id(message, "evse_id")))
        await self._override(overrides.evse_key(evse_id, "mode"), commands.mode(command.value))

    async def _on_evse_priority(self, message: Incoming, command: CommandEnvelope) -> None:
        _check_size(message)
        evse_id = self._check_known_evse(commands.evse(_topic_id(message, "evse_id")))
        await self._override(overrides.evse_key(evse_id, "priority"), commands.priority(command.value))

    async def _on_vehicle_priority(self, message: Incoming, command: CommandEnvelope) -> None:
        _check_size(message)
        vin, warning = commands.vin(_topic_id(message, "vin"))
        self._check_known_vin(vin)
        value = commands.priority(command.value)
        if warning is not None:
            log.warning(f"service={SERVICE} event=vin_check_digit vin={vin}")
        await self._override(overrides.vehicle_key(vin, "priority"), value)

    async def _on_schedules(self, message: Incoming, command: CommandEnvelope) -> None:
        _check_size(message)
        windows = schedules.parse_schedules(command.value)
        shown = f"{len(windows)} windows" if windows is not None else None
        await self._override(overrides.SCHEDULES, windows, shown=shown)

    async def _on_schedules_enabled(self, message: Incoming, command: CommandEnvelope) -> None:
        _check_size(message)
        await self._override(overrides.SCHEDULES_ENABLED, commands.schedules_enabled(command.value))

    async def _on_grid_limit(self, message: Incoming, command: CommandEnvelope) -> None:
        _check_size(message)
        value = commands.grid_limit(command.value)
        await self._override(overrides.GRID_LIMIT, value, shown=f"{value:g} W" if value is not None else None)

    async def _on_vins(self, message: Incoming) -> None:
        """`{"allow": [...], "deny": [...]}` as the whole payload, or in the usual envelope, or `default`."""
        _check_size(message)
        command = _vins_command(message.payload)
        try:
            lists, warnings = commands.vin_lists(command.value)
        except ValueError as exc:
            raise PayloadError(str(exc), command.transaction) from None
        for warning in warnings:
            log.warning(f"service={SERVICE} event=vin_check_digit warning={warning!r}")
        if lists is not None and self.config.allocator.authorization == "open":
            log.warning(
                f"service={SERVICE} event=vins_unused warning='authorization is open: the lists have no effect'"
            )
        shown = f"allow={len(lists.allow)} deny={len(lists.deny)}" if lists is not None else None
        await self._override(overrides.VINS, lists, shown=shown)

    async def _on_vehicle_plan(self, message: Incoming) -> None:
        _check_size(message)
        vin, _ = commands.vin(_topic_id(message, "vin"))
        self._check_known_vin(vin)
        await self._plan(message, overrides.vehicle_key(vin, overrides.PLAN), "soc_pct")

    async def _on_evse_plan(self, message: Incoming) -> None:
        _check_size(message)
        evse_id = self._check_known_evse(commands.evse(_topic_id(message, "evse_id")))
        await self._plan(message, overrides.evse_key(evse_id, overrides.PLAN), "energy_wh")

    async def _plan(self, message: Incoming, key: str, target: Literal["soc_pct", "energy_wh"]) -> None:
        """`plan/set`: the plan bare (`{"soc_pct": 80, "by": "07:00"}`), in the envelope, or `default`."""
        command = _object_command(message.payload, ("soc_pct", "energy_wh", "by", "repeat", "strategy"))
        existing = self.engine.overrides.plans_entry(key)
        try:
            request = commands.plan_request(command.value, existing.request if existing is not None else None, target)
        except ValueError as exc:
            raise PayloadError(str(exc), command.transaction) from None
        stored = plans.store(request, self.engine.timezone, self.clock.time()) if request is not None else None
        if stored is not None and existing is not None and stored.request == existing.request:
            stored = existing  # the same plan again: keep its departure as first fixed
        shown = request.model_dump_json(exclude={"v"}, exclude_none=True) if request is not None else None
        self.engine.plans_changed()
        await self._override(key, stored, shown=shown)

    def _check_known_evse(self, evse_id: str) -> str:
        """Commands may name only EVSEs the allocator knows (docs/contract.md §3.3): nothing is stored for a
        made-up id, so a looping flow cannot grow the state file."""
        if not self.engine.known_evse(evse_id):
            raise ValueError(f"unknown EVSE id {evse_id!r}: not configured and not seen")
        return evse_id

    def _check_known_vin(self, vin: str) -> None:
        """The same for a car (docs/contract.md §3.3): to set a car's priority before it is seen, configure it."""
        if not self.engine.known_vin(vin):
            raise ValueError(f"unknown VIN {vin}: not configured and not seen")

    async def _override(self, key: str, value: overrides.Value | None, *, shown: str | None = None) -> None:
        if not self.engine.overrides.put(key, value, self.clock.time()):
            log.info(f"service={SERVICE} event=override_unchanged key={key}")
            return
        text = "default" if value is None else shown or value
        log.info(f"service={SERVICE} event=override key={key} value={text}")
        self._changed()
        await self._save_overrides()

    async def _save_overrides(self) -> None:
        try:
            async with self.saving:  # one writer at a time, each writing the latest overrides
                await asyncio.to_thread(write_json, self.state_path, self.engine.state_file(), indent=1)
        except OSError as exc:
            # Not an input error: the override holds for now, but would not survive a restart.
            await self.service.report_error(str(self.state_path), None, f"cannot write the state file: {exc}")

    # -- rounds -------------------------------------------------------------------------------------------------

    async def _run_rounds(self) -> None:
        await self.service.connected.wait()
        await self.clock.sleep(STARTUP_GRACE_S)
        while not self.service.stopping:
            self.dirty.clear()
            started = time.perf_counter()
            result = self.engine.compute(self.clock.time())
            busy_s = time.perf_counter() - started
            self.rounds += 1
            await self._publish(result)
            await self._wait(result.next_wake)
            # Coalesce: whatever arrives within the gap is taken by the next round, together.
            rest = max(MIN_GAP_S, busy_s) - (time.perf_counter() - started)
            if rest > 0:
                await asyncio.sleep(rest)

    async def _publish(self, result: Round) -> None:
        """Hand everything to the client in order, without waiting for the broker's acknowledgements: a round
        must not wait for the PUBACKs of the last one (the broker may hold the second one back for its delayed ACK).
        """
        service = self.service
        if result.battery_hold is not None:
            # Before the setpoints: the battery is told to stop discharging in the same round the car is told to go.
            payload = b"true" if result.battery_hold else b"false"
            self._send(service.publish_retained(self.topics.build("allocator_battery_hold"), payload))
        for setpoint in result.setpoints:
            self._send(service.publish_retained(self.topics.evse_setpoint(setpoint.evse_id), setpoint))
        for evse_id in self.engine.removed_evses():
            self._send(service.clear_retained(self.topics.evse_setpoint(evse_id)))
            log.info(f"service={SERVICE} event=setpoint_cleared evse_id={evse_id} reason=evse_gone")
        if result.state is not None:
            self._send(service.publish_retained(self.topics.build("allocator_state"), result.state))
        for notice in result.notices:
            self._send(service.report_error(notice.topic, notice.payload, notice.error))
        for event in result.events:
            log.info(f"service={SERVICE} {event}")
        if result.overrides_changed:
            self._send(self._save_overrides())
        await self.ha.sync(result.allocation)
        if len(self.inflight) > MAX_INFLIGHT:
            await asyncio.wait(set(self.inflight))  # a broker that stopped acknowledging: do not pile up

    def _send(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.inflight.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self.inflight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(f"service={SERVICE} event=publish_failed error={task.exception()!r}")

    async def _wait(self, wake_at: float) -> None:
        """Until something changes or the next round is due."""
        if self.dirty.is_set():
            return
        delay = wake_at - self.clock.time()
        if delay > 0:
            await sleep_until_poked(self.clock, delay, self.dirty)


def _topic_id(message: Incoming, name: str) -> str:
    return message.parsed.ids.get(name, "") if message.parsed is not None else ""


def _vins_command(payload: bytes) -> CommandEnvelope:
    """The lists may come bare (`{"allow": [...]}`, as docs/contract.md §5 shows them) or as the envelope's value
    (docs/contract.md §3)."""
    return _object_command(payload, ("allow", "deny"))


def _object_command(payload: bytes, fields: tuple[str, ...]) -> CommandEnvelope:
    """An object value may come bare (with any of `fields` at the top) or as the envelope's value."""
    try:
        data = decode_json(payload)
    except PayloadError:
        data = None
    if isinstance(data, dict) and "value" not in data and any(name in data for name in fields):
        value = {key: item for key, item in data.items() if key != "transaction"}
        return CommandEnvelope(value=value, transaction=transaction_of(data))
    return parse_command(payload)


def _check_size(message: Incoming) -> None:
    if len(message.payload) > commands.MAX_COMMAND_BYTES:
        raise PayloadError(
            f"payload too large ({len(message.payload)} bytes, at most {commands.MAX_COMMAND_BYTES})",
            transaction_in(message.payload),
        )


async def setup(service: Service, config: AllocatorServiceConfig) -> None:
    Allocator(service, config).register()
