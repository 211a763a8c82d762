"""One car's loop in the tesla-bridge: its state, call schedule, commands, user commands and published state.

`step()` makes at most one poll call, plans and sends the commands the setpoint asks for, runs queued user commands
and publishes the car's state when it changed; it returns when it next wants to run. Tests and the cost benchmark
drive `step()` themselves on a fake clock (`TeslaBridge.step_all()`); the service runs `CarRuntime.run()` as
supervised tasks. A car sees only its `CarContext` (settings, client, bus, clock, topics, overrides, problems), never
the bridge that owns it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from chargebus.clock import Clock, sleep_until_poked
from chargebus.config import TeslaConfig, TeslaVehicleConfig
from chargebus.schema import Setpoint
from chargebus.topics import Topics
from chargebus.units import clamp_offer
from pydantic import BaseModel

from chargebus_tesla import car_state
from chargebus_tesla.bus import Bus
from chargebus_tesla.car_state import CarState, EvseFacts, Snapshot
from chargebus_tesla.commands import (
    CHARGE_START,
    CHARGE_STOP,
    SET_CHARGING_AMPS,
    CarFacts,
    CommandPlanner,
    PlannedCommand,
    Target,
    car_max_amps,
    failsafe_target,
    target_from_setpoint,
)
from chargebus_tesla.errors import BleUnavailable, FleetError, VehicleAsleep
from chargebus_tesla.fleet import FleetClient
from chargebus_tesla.fleet_problems import problem_for
from chargebus_tesla.overrides import Overrides
from chargebus_tesla.poll_policy import (
    CHARGE_AND_LOCATION_ENDPOINTS,
    CHARGE_ENDPOINTS,
    WAKE_CONFIRM_TIMEOUT_S,
    Action,
    CarView,
    PollDecision,
    PollPolicy,
)
from chargebus_tesla.problems import RATE_LIMITED, Problems
from chargebus_tesla.status import LinkFacts, WakeFacts, evse_online, status_text
from chargebus_tesla.teslamate import TeslaMateCar
from chargebus_tesla.user_commands import RefreshLimiter
from chargebus_tesla.vehicle_data import parse_vehicle_data

#: The log lines keep the logger they always had (`chargebus_tesla.bridge`), so filters and tests still match.
log = logging.getLogger("chargebus_tesla.bridge")

#: The car's retained state is re-published at least this often (its `data_age_s` and `stale` move on).
STATE_REPUBLISH_S = 300.0
#: A loop that has nothing to do looks again after this long at the latest.
MAX_IDLE_S = 300.0
#: A step that made no call never asks to run again sooner than this (no busy loop, whatever the inputs).
MIN_STEP_S = 1.0
#: Refusals of start/stop that only mean "already so": not worth an error message.
_BENIGN_REFUSALS = frozenset({"is_charging", "charging", "requested", "not_charging", "already_set"})


@dataclass(frozen=True)
class CarContext:
    """What a car's loop may use of the bridge around it."""

    tesla: TeslaConfig
    client: FleetClient
    bus: Bus
    clock: Clock
    topics: Topics
    overrides: Overrides
    problems: Problems
    started_at: float
    teslamate_prefix: str
    publish_usage: Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class UserAction:
    kind: Literal["charge_limit", "refresh"]
    topic: str
    payload: bytes
    transaction: str | int | None
    percent: int = 0


class CarRuntime:
    """One car: its state, call schedule, command memory, setpoint and queued user commands."""

    def __init__(self, context: CarContext, vehicle: TeslaVehicleConfig) -> None:
        self.ctx = context
        self.vehicle = vehicle
        self.vin = vehicle.vin
        self.clock = context.clock
        tesla = context.tesla
        uses_teslamate = bool(context.teslamate_prefix) and vehicle.teslamate_car_id is not None
        self.teslamate = TeslaMateCar(vehicle.teslamate_car_id or 0) if uses_teslamate else None
        self.state = CarState(vehicle, self.teslamate)
        self.policy = PollPolicy(tesla.max_wakes_per_day)
        self.planner = CommandPlanner(tesla.command_min_interval_s)
        self.refresh_limiter = RefreshLimiter()
        self.setpoint: Setpoint | None = None
        self.setpoint_expires_at: float | None = None
        self.setpoints_received = 0
        self.offered_a: float | None = None
        self.actions: list[UserAction] = []
        self._woke_at: float | None = None
        self._published: dict[str, tuple[bytes, float]] = {}
        self._poke = asyncio.Event()
        topics = context.topics
        self.evse_id = car_state.evse_id(self.vin)
        self.state_topic = topics.evse_state(self.evse_id)
        self.setpoint_topic = topics.evse_setpoint(self.evse_id)
        self.vehicle_topic = topics.vehicle_state(self.vin)
        self.api_source: Literal["fleet_api", "ble_proxy"] = (
            "ble_proxy" if vehicle.transport == "ble_proxy" else "fleet_api"
        )

    # -- inputs ------------------------------------------------------------------------------------------------

    def poke(self) -> None:
        self._poke.set()

    def set_setpoint(self, setpoint: Setpoint, now: float) -> None:
        self.setpoint, self.setpoint_expires_at = setpoint, setpoint.expires_at_epoch(now)
        self.setpoints_received += 1
        self.poke()

    def clear_setpoint(self) -> None:
        self.setpoint = self.setpoint_expires_at = None
        self.poke()

    def enqueue(self, action: UserAction) -> None:
        self.actions.append(action)
        self.poke()

    def teslamate_fresh(self, now: float) -> bool:
        tm = self.teslamate
        return tm is not None and tm.fresh(now, self.ctx.tesla.teslamate_stale_s, self.ctx.started_at)

    def snapshot(self, now: float) -> Snapshot:
        return self.state.snapshot(
            now,
            teslamate_fresh=self.teslamate_fresh(now),
            api_source=self.api_source,
            api_stale_s=self.policy.stale_after_s(),
        )

    def attribute(self, reason: str, now: float) -> None:
        """Count one call under what it was made for (`UsageCar.by_reason`)."""
        self.ctx.client.counter.attribute(self.vin, reason, now)

    # -- the loop ----------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Step, then wait until the step's time or a poke; forever (a supervised service task)."""
        while True:
            self._poke.clear()
            next_at = await self.step()
            delay = next_at - self.clock.time()
            if delay > 0:
                await sleep_until_poked(self.clock, delay, self._poke)

    async def step(self) -> float:
        """One round; returns when this car wants to run again (now = at once)."""
        now = self.clock.time()
        if self.actions:
            await self._run_user_actions()
            now = self.clock.time()
        snap = self.snapshot(now)
        decision = self.policy.next_call(now, self._view(now, snap))
        if decision.due(now):
            await self._perform(decision, now)
            await self._check_ble()
            await self.ctx.publish_usage()
            return self.clock.time()
        await self._check_wake(now, snap)
        retry_at = await self._command(now, snap)
        await self._check_ble()
        now = self.clock.time()
        snap = self.snapshot(now)
        await self.publish(now, snap)
        await self.ctx.publish_usage()
        candidates = [decision.at, now + MAX_IDLE_S]
        if retry_at is not None:
            candidates.append(max(retry_at, self.rate_limited_until() or 0.0))
        if self.setpoint_expires_at is not None and self.setpoint_expires_at > now:
            candidates.append(self.setpoint_expires_at)
        if self._woke_at is not None:
            candidates.append(self._woke_at + WAKE_CONFIRM_TIMEOUT_S)
        return max(now + MIN_STEP_S, min(candidates))

    # -- what the car is and wants -----------------------------------------------------------------------------

    def target(self, now: float, snap: Snapshot) -> Target | None:
        """The setpoint's wish in whole amps, or the failsafe once it expired; None = leave the car alone."""
        max_amps = self.max_amps(snap)
        setpoint = self.setpoint
        if setpoint is not None and self.setpoint_expires_at is not None and now < self.setpoint_expires_at:
            basis = self.state.basis
            return target_from_setpoint(
                power_w=setpoint.power_w,
                charge=setpoint.charge,
                setpoint_phases=setpoint.phases,
                setpoint_voltage_v=setpoint.voltage_v,
                car_phases=basis.phases,
                car_voltage_v=basis.voltage_v,
                min_amps=self.ctx.tesla.min_amps,
                max_amps=max_amps,
            )
        failsafe = failsafe_target(self.ctx.tesla.failsafe_amps)
        if failsafe is None or failsafe.amps is None:
            return None
        return Target(charge=failsafe.charge, amps=clamp_offer(failsafe.amps, self.ctx.tesla.min_amps, max_amps))

    def max_amps(self, snap: Snapshot) -> int:
        amps = car_max_amps(snap.report.charge_current_request_max_a)
        override = self.ctx.overrides.max_current.get(self.vin)
        return amps if override is None else min(amps, override)

    def _controls(self, snap: Snapshot) -> bool:
        """This car may be commanded now: controllable, and known to be at home."""
        return self.vehicle.controllable and snap.at_home is True

    def _view(self, now: float, snap: Snapshot) -> CarView:
        target = self.target(now, snap) if self._controls(snap) else None
        wants_charge = target is not None and target.charge is True and target.amps != 0 and not snap.charging
        return CarView(
            online_state=snap.online_state,
            charging=snap.charging,
            plugged_in=snap.plugged_in,
            at_home=snap.at_home,
            teslamate_fresh=snap.teslamate_fresh,
            under_control=target is not None and target.amps is not None,
            wants_charge=wants_charge,
            home_configured=self.vehicle.home is not None,
            rate_limited_until=self.rate_limited_until(),
            follows_command=self.state.follows_command,
            time_to_full_s=snap.report.time_to_full_s,
        )

    def rate_limited_until(self) -> float | None:
        """Tesla's 429 deadline, if this car's calls go to the Fleet API now (a BLE proxy is never rate limited)."""
        return self.ctx.client.rate_limited_until_for(self.vin)

    # -- Tesla calls -------------------------------------------------------------------------------------------

    async def _perform(self, decision: PollDecision, now: float) -> None:
        client = self.ctx.client
        log.info(
            f"tesla_poll vin={self.vin} action={decision.action} cause={decision.cause} reason={decision.reason!r}"
        )
        self.attribute(decision.cause.value, now)
        recorders: dict[Action, Callable[[float], None]] = {
            Action.STATE: self.policy.record_state_call,
            Action.DATA: self.policy.record_data_call,
            Action.WAKE: self.policy.record_wake,
        }
        try:
            if decision.action is Action.STATE:
                self.state.observe_online_state(now, await client.vehicle_state(self.vin))
            elif decision.action is Action.DATA:
                data = await client.vehicle_data(self.vin, decision.endpoints)
                self.state.observe_report(self.clock.time(), parse_vehicle_data(data))
            elif decision.action is Action.WAKE:
                self._woke_at = now
                log.info(f"tesla_wake vin={self.vin} wakes_today={self.policy.wakes_today(now) + 1}")
                self.state.observe_online_state(now, await client.wake_up(self.vin))
            self.api_source = client.via(self.vin)
            self.ctx.problems.resolved(self.vin, "poll")
        except VehicleAsleep:
            self.api_source = client.via(self.vin)
            self.state.observe_online_state(self.clock.time(), "asleep")  # a state, not an error
        except FleetError as exc:
            await self._fleet_problem(exc, "poll", self.state_topic)
        finally:
            recorders[decision.action](now)

    async def _check_ble(self) -> None:
        """A BLE proxy outage (its breaker open) is one ErrorEvent for its whole length, not one per call."""
        outage = self.ctx.client.ble_outage(self.vin)
        if outage is None:
            self.ctx.problems.resolved(self.vin, "ble")
            return
        await self.ctx.problems.report(self.vin, "ble", self.state_topic, outage.message)

    async def _check_wake(self, now: float, snap: Snapshot) -> None:
        woke_at = self._woke_at
        if woke_at is None:
            return
        if snap.online_state == "online":
            self._woke_at = None
            self.ctx.problems.resolved(self.vin, "wake")
        elif now >= woke_at + WAKE_CONFIRM_TIMEOUT_S:
            self._woke_at = None
            await self.ctx.problems.report(
                self.vin,
                "wake",
                self.setpoint_topic,
                f"car {self.vin} did not come online within {WAKE_CONFIRM_TIMEOUT_S:.0f} s of wake_up; "
                "it is left alone until the next allowed wake",
                repeat=True,
            )

    async def _command(self, now: float, snap: Snapshot) -> float | None:
        if not self._controls(snap):
            return None
        target = self.target(now, snap)
        if target is None:
            return None
        report = snap.report
        facts = CarFacts(
            online=snap.online_state == "online",
            charging_state=report.charging_state,
            charge_current_request_a=report.charge_current_request_a,
        )
        plan = self.planner.plan(now, target, facts)
        if plan.commands:
            log.info(
                f"tesla_plan vin={self.vin} commands={[c.name for c in plan.commands]} amps={target.amps} "
                f"charge={target.charge} reason={plan.reason!r}"
            )
        for index, command in enumerate(plan.commands):
            if command.delay_s > 0:
                await self.clock.sleep(command.delay_s)
            if not await self._send(command, facts):
                for unsent in plan.commands[index + 1 :]:
                    self.planner.failed(unsent)  # the planner counted them as sent
                limited = self.rate_limited_until()
                if limited is not None:
                    # Try again as soon as Tesla allows (the planner's own interval may still hold it back).
                    return limited if plan.retry_at is None else min(plan.retry_at, limited)
                break
        return plan.retry_at

    async def _send(self, command: PlannedCommand, facts: CarFacts) -> bool:
        client = self.ctx.client
        self.attribute(command.name, self.clock.time())
        try:
            result = await client.command(self.vin, command.name, command.body)
        except VehicleAsleep:
            self.planner.failed(command)
            self.state.observe_online_state(self.clock.time(), "asleep")
            return False
        except FleetError as exc:
            self.planner.failed(command)
            await self._fleet_problem(exc, "command", self.setpoint_topic, command=command.name)
            return False
        now = self.clock.time()
        self.ctx.problems.resolved(self.vin, "command")
        log.info(
            f"tesla_command vin={self.vin} name={command.name} amps={command.charging_amps} "
            f"result={result.result} reason={result.reason!r}"
        )
        if command.name in (CHARGE_START, CHARGE_STOP):
            self.policy.record_start_stop(now)
            self.state.observe_start_stop()
        if not result.result:
            self.planner.refused(now, command.name, result.reason, facts.charging_state)
            if result.reason not in _BENIGN_REFUSALS:
                await self.ctx.problems.report(
                    self.vin,
                    f"refused-{command.name}",
                    self.setpoint_topic,
                    f"car {self.vin} refused {command.name}: {result.reason or 'no reason given'}",
                )
            return result.reason in _BENIGN_REFUSALS
        self.ctx.problems.resolved(self.vin, f"refused-{command.name}")
        if command.name == SET_CHARGING_AMPS and command.charging_amps is not None:
            self.offered_a = float(command.charging_amps)
            if not self.state.observe_command(now, command.charging_amps):
                # Not trusted yet (no report since the last surprise showed the car following): look once.
                self.policy.record_untrusted_command(now)
        elif command.name == CHARGE_STOP:
            self.offered_a = 0.0
        return True

    async def _fleet_problem(self, exc: FleetError, key: str, topic: str, *, command: str | None = None) -> None:
        what = f"{command} to car {self.vin}" if command else f"polling car {self.vin}"
        if isinstance(exc, BleUnavailable):
            # One failed BLE call is no news (BLE is flaky); an outage opens the breaker and `_check_ble` reports
            # it once. The call itself is retried as the schedule and the planner say.
            log.info(f"tesla_ble_unavailable vin={self.vin} call={command or key} detail={exc.detail!r}")
        problems = self.ctx.problems
        report = problem_for(
            exc,
            vin=self.vin,
            key=key,
            what=what,
            now=self.clock.time(),
            storm_reported=problems.has("*", RATE_LIMITED),
        )
        if report is not None:
            await problems.report(report.scope, report.key, topic, report.message)

    # -- user commands -----------------------------------------------------------------------------------------

    async def _run_user_actions(self) -> None:
        actions, self.actions = self.actions, []
        for action in actions:
            if action.kind == "charge_limit":
                await self._set_charge_limit(action)
            else:
                await self._refresh(action)

    async def _user_error(self, action: UserAction, error: str) -> None:
        await self.ctx.bus.report_error(action.topic, action.payload, error, action.transaction)

    async def _set_charge_limit(self, action: UserAction) -> None:
        now = self.clock.time()
        snap = self.snapshot(now)
        if snap.online_state != "online":
            await self._user_error(
                action,
                f"car {self.vin} is {snap.online_state}: a charge limit is sent only to an online car "
                "(it is not woken for it); nothing was sent",
            )
            return
        if snap.report.charge_limit_pct == action.percent:
            log.info(f"tesla_charge_limit vin={self.vin} percent={action.percent} result=already_set calls=0")
            return
        self.attribute("set_charge_limit", now)
        try:
            result = await self.ctx.client.set_charge_limit(self.vin, action.percent)
        except VehicleAsleep:
            self.state.observe_online_state(self.clock.time(), "asleep")
            await self._user_error(action, f"car {self.vin} is asleep: the charge limit was not set")
            return
        except FleetError as exc:
            await self._user_error(action, f"set_charge_limit to car {self.vin} failed: {exc}")
            return
        log.info(f"tesla_charge_limit vin={self.vin} percent={action.percent} result={result.result}")
        if result.result or result.reason == "already_set":
            self.state.observe_charge_limit(self.clock.time(), action.percent)
        else:
            await self._user_error(action, f"car {self.vin} refused set_charge_limit: {result.reason}")

    async def _refresh(self, action: UserAction) -> None:
        now = self.clock.time()
        snap = self.snapshot(now)
        client = self.ctx.client
        self.attribute("refresh", now)
        try:
            if snap.online_state == "online":
                endpoints = CHARGE_AND_LOCATION_ENDPOINTS if self.vehicle.home is not None else CHARGE_ENDPOINTS
                data = await client.vehicle_data(self.vin, endpoints)
                self.policy.record_data_call(now)
                self.state.observe_report(self.clock.time(), parse_vehicle_data(data))
            else:
                # Asleep, offline or unknown: the state call is the one call, and it never wakes the car.
                state = await client.vehicle_state(self.vin)
                self.policy.record_state_call(now)
                self.state.observe_online_state(self.clock.time(), state)
            self.api_source = client.via(self.vin)
        except VehicleAsleep:
            self.policy.record_data_call(now)
            self.state.observe_online_state(self.clock.time(), "asleep")
        except FleetError as exc:
            await self._user_error(action, f"refresh of car {self.vin} failed: {exc}")
        log.info(f"tesla_refresh vin={self.vin} online_state={self.state.api_online}")

    # -- publishing --------------------------------------------------------------------------------------------

    def _link(self) -> LinkFacts:
        client = self.ctx.client
        failure = client.tokens.failure if client.uses_fleet(self.vin) else None
        return LinkFacts(
            login_failure=failure, rate_limited_until=self.rate_limited_until(), ble_outage=client.ble_outage(self.vin)
        )

    def _wake_facts(self, now: float, snap: Snapshot) -> WakeFacts:
        target = self.target(now, snap) if self._controls(snap) else None
        return WakeFacts(
            controllable=self.vehicle.controllable,
            wants_start=target is not None and target.charge is True,
            budget=self.ctx.tesla.max_wakes_per_day,
            used_today=self.policy.wakes_today(now),
        )

    async def publish(self, now: float, snap: Snapshot, *, force: bool = False) -> None:
        link, wake = self._link(), self._wake_facts(now, snap)
        facts = EvseFacts(
            online=evse_online(snap, link, wake),
            offered_a=self.offered_a,
            min_amps=self.ctx.tesla.min_amps,
            max_amps_override=self.ctx.overrides.max_current.get(self.vin),
            status_text=status_text(snap, link, wake),
        )
        evse = car_state.evse_state(self.vehicle, snap, self.state.basis, facts, now)
        vehicle = car_state.vehicle_state(self.vehicle, snap, now)
        await self._publish_if_changed(self.state_topic, evse, {"updated_at"}, now, force=force)
        await self._publish_if_changed(self.vehicle_topic, vehicle, {"updated_at", "data_age_s"}, now, force=force)

    async def _publish_if_changed(
        self, topic: str, model: BaseModel, volatile: set[str], now: float, *, force: bool
    ) -> None:
        content = model.model_dump_json(exclude=volatile).encode()
        previous = self._published.get(topic)
        if not force and previous is not None and previous[0] == content and now - previous[1] < STATE_REPUBLISH_S:
            return
        self._published[topic] = (content, now)
        await self.ctx.bus.publish_retained(topic, model.model_dump_json(by_alias=True).encode())
