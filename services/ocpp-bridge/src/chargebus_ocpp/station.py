"""One charge point as the bridge keeps it across connections: connectors, probed capabilities, what was sent.

The version adapters (`v16.py`, `v201.py`) turn OCPP messages into calls on a `Station` and carry out its
`Link` requests on the wire. `Station.reconcile()` brings every connector's charging profile to its target: the
target comes from the pure `profile.target_for`; a profile is sent only when it differs from the last one the
charger accepted (or refused: a refused one is not sent again until the target changes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from chargebus.clock import Clock, iso_utc
from chargebus.config import OcppChargePointConfig
from chargebus.schema import EvseState, Setpoint

from chargebus_ocpp.evse import MAX_CONNECTORS, Connector, View, build_state, evse_id_for, parse_sampled_values
from chargebus_ocpp.profile import (
    IgnoredLimitWatch,
    OcppVersion,
    Purpose,
    RateUnit,
    RateUnits,
    Target,
    charging_profile,
    max_amps,
    stack_level_for,
    target_for,
)

log = logging.getLogger("chargebus_ocpp")

ProfileAnswer = Literal["Accepted", "Rejected", "NotSupported", "failed"]


class LinkError(Exception):
    """A call the charger answered with a CALLERROR, or did not answer in time."""


class Link(Protocol):
    """What a station asks of the live connection (one per OCPP version)."""

    version: OcppVersion

    async def set_profile(self, connector_id: int, profile: dict[str, object]) -> str: ...

    async def clear_tx_profiles(self, connector_id: int) -> None: ...

    async def remote_start(self, connector_id: int, id_tag: str) -> str: ...

    async def remote_stop(self, transaction_id: int | str) -> str: ...

    async def close(self) -> None: ...

    async def configure(self) -> None: ...


Reporter = Callable[[str, str], Awaitable[None]]


@dataclass(slots=True)
class Capabilities:
    """What the charger said about itself at boot (None: not said)."""

    feature_profiles: frozenset[str] | None = None
    allowed_units: tuple[RateUnit, ...] = ("A", "W")
    max_stack_level: int | None = None
    measurands: tuple[str, ...] = ()
    vendor: str | None = None
    model: str | None = None

    @property
    def smart_charging(self) -> bool:
        return self.feature_profiles is None or "SmartCharging" in self.feature_profiles


@dataclass(slots=True)
class Sent:
    """The last profile of one purpose on one connector, and what the charger answered."""

    key: tuple[object, ...]
    answer: ProfileAnswer
    amps: int
    at: float


@dataclass(slots=True)
class Station:
    cp: OcppChargePointConfig
    controllable: bool
    clock: Clock
    heartbeat_s: float
    meter_interval_s: float
    report: Reporter
    topic_of_setpoint: Callable[[str], str]
    #: The ErrorEvent topic of conditions about the charger as a whole (`ws://<listen>/<ocpp_id>`).
    source_topic: str
    connectors: dict[int, Connector] = field(default_factory=dict)
    link: Link | None = None
    last_frame_at: float | None = None
    capabilities: Capabilities = field(default_factory=Capabilities)
    booted: bool = False
    configured: bool = False
    units: RateUnits = field(init=False)
    setpoints: dict[int, tuple[Setpoint, float]] = field(default_factory=dict)
    targets: dict[int, Target] = field(default_factory=dict)
    sent: dict[tuple[Purpose, int], Sent] = field(default_factory=dict)
    watches: dict[int, IgnoredLimitWatch] = field(default_factory=dict)
    remote_sent: dict[int, tuple[bool, object]] = field(default_factory=dict)
    #: `max_current` overrides by evse_id (the bridge's, shared).
    overrides: dict[str, int] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    next_transaction_id: int = 1
    #: Measurands whose mislabelled unit was already reported (at most the four the bridge reads).
    corrected: set[str] = field(default_factory=set)
    #: Called when a connector's state may have changed (the bridge publishes).
    on_change: Callable[[Station], Awaitable[None]] | None = None

    def __post_init__(self) -> None:
        self.units = RateUnits(self.cp.rate_unit)
        self.connector(1)
        # Transaction ids the charger may still remember from before a restart are not handed out again.
        self.next_transaction_id = int(self.clock.time()) % 1_000_000_000 + 1

    # -- connectors and state --------------------------------------------------------------------------------

    def connector(self, connector_id: int) -> Connector:
        """The connector, created on first mention; ValueError beyond the bridge's bound."""
        if not 1 <= connector_id <= MAX_CONNECTORS:
            raise ValueError(f"connector {connector_id} is outside 1-{MAX_CONNECTORS}")
        found = self.connectors.get(connector_id)
        if found is None:
            found = self.connectors[connector_id] = Connector(connector_id)
        return found

    def override_of(self, connector_id: int) -> int | None:
        return self.overrides.get(evse_id_for(self.cp.name, connector_id))

    def evse_ids(self) -> list[str]:
        return [evse_id_for(self.cp.name, n) for n in sorted(self.connectors)]

    def connector_of(self, evse_id: str) -> int | None:
        for n in self.connectors:
            if evse_id_for(self.cp.name, n) == evse_id:
                return n
        return None

    @property
    def online(self) -> bool:
        if self.link is None or self.last_frame_at is None:
            return False
        return self.clock.monotonic() - self.last_frame_at <= 2 * self.heartbeat_s

    def heard(self) -> None:
        self.last_frame_at = self.clock.monotonic()

    def states(self) -> list[EvseState]:
        now = self.clock.time()
        return [
            build_state(
                connector,
                View(
                    cp=self.cp,
                    controllable=self.controllable,
                    online=self.online,
                    now=now,
                    meter_interval_s=self.meter_interval_s,
                    max_amps=max_amps(self.cp, self.override_of(n)),
                ),
            )
            for n, connector in sorted(self.connectors.items())
        ]

    # -- setpoints and targets -------------------------------------------------------------------------------

    def take_setpoint(self, connector_id: int, setpoint: Setpoint | None) -> None:
        if setpoint is None:
            self.setpoints.pop(connector_id, None)
        else:
            self.setpoints[connector_id] = (setpoint, self.clock.time())
        self.wake.set()

    def target(self, connector_id: int) -> Target:
        found = self.setpoints.get(connector_id)
        now = self.clock.time()
        setpoint, received_at = found if found is not None else (None, 0.0)
        live = setpoint is not None and now < setpoint.expires_at_epoch(received_at)
        return target_for(
            setpoint,
            self.cp,
            live=live,
            override_a=self.override_of(connector_id),
            previous=self.targets.get(connector_id),
        )

    def _default_connector(self, connector_id: int) -> int:
        """TxDefaultProfiles go to connector 0 on a one-connector charger, else to the connector itself."""
        return 0 if len(self.connectors) == 1 else connector_id

    async def reconcile(self) -> None:
        """Send every profile (and remote start/stop) that differs from what the charger has."""
        if self.link is None or not self.booted or not self.configured or not self.controllable:
            return
        for connector_id in sorted(self.connectors):
            target = self.target(connector_id)
            self.targets[connector_id] = target
            connector = self.connectors[connector_id]
            connector.failsafe = target.failsafe
            if not self.capabilities.smart_charging:
                connector.offered_a = None
                continue
            tx = connector.transaction_id
            if tx is not None:
                await self._send(connector_id, connector_id, "TxProfile", target, tx)
            await self._send(connector_id, self._default_connector(connector_id), "TxDefaultProfile", target, None)
            await self._remote(connector_id, connector)

    async def _send(
        self, connector_id: int, wire_connector: int, purpose: Purpose, target: Target, tx: int | str | None
    ) -> None:
        link = self.link
        if link is None:
            return
        key: tuple[object, ...] = (wire_connector, target.amps, target.basis, tx, self.units.first())
        previous = self.sent.get((purpose, wire_connector))
        # A refused profile waits for a new target; one that failed (time-out, CALLERROR) is tried again later.
        if (
            previous is not None
            and previous.key == key
            and (previous.answer != "failed" or self.clock.monotonic() - previous.at < RETRY_FAILED_S)
        ):
            return
        unit = self.units.first()
        answer = await self._try(link, wire_connector, purpose=purpose, target=target, tx=tx, unit=unit)
        if self.link is not link:
            return  # the connection changed meanwhile: the new one starts afresh
        evse_id = evse_id_for(self.cp.name, connector_id)
        if answer in {"Rejected", "NotSupported"}:
            await self.report(
                self.topic_of_setpoint(evse_id),
                f"{evse_id}: the charger refused a {purpose} of {target.amps} A in unit {unit} ({answer})",
            )
            retry = self.units.retry_after_rejection(unit)
            if retry is not None:
                answer = await self._try(link, wire_connector, purpose=purpose, target=target, tx=tx, unit=retry)
                if self.link is not link:
                    return
                if answer == "Accepted":
                    self.units.accepted(retry)
                    log.info(f"event=rate_unit ocpp_id={self.cp.ocpp_id} unit={retry} after={unit} refused")
                else:
                    await self.report(
                        self.topic_of_setpoint(evse_id),
                        f"{evse_id}: the charger refused the {purpose} in unit {retry} too ({answer}); "
                        "not sent again until the setpoint changes",
                    )
        elif answer == "failed":
            pass  # reported by _try
        else:
            self.units.accepted(unit)
        self.sent[(purpose, wire_connector)] = Sent(
            (wire_connector, target.amps, target.basis, tx, self.units.first()),
            answer,
            target.amps,
            self.clock.monotonic(),
        )
        if answer == "Accepted":
            self.connectors[connector_id].offered_a = target.amps

    async def _try(
        self,
        link: Link,
        wire_connector: int,
        *,
        purpose: Purpose,
        target: Target,
        tx: int | str | None,
        unit: RateUnit,
    ) -> ProfileAnswer:
        profile = charging_profile(
            link.version,
            purpose=purpose,
            connector_id=wire_connector,
            amps=target.amps,
            unit=unit,
            basis=target.basis,
            stack_level=stack_level_for(self.capabilities.max_stack_level),
            start_schedule=iso_utc(self.clock.time() - 60),
            transaction_id=tx,
        )
        try:
            answer = await link.set_profile(wire_connector, dict(profile))
        except LinkError as exc:
            evse_id = evse_id_for(self.cp.name, max(wire_connector, 1))
            await self.report(self.topic_of_setpoint(evse_id), f"{evse_id}: SetChargingProfile failed: {exc}")
            return "failed"
        log.info(
            f"event=profile ocpp_id={self.cp.ocpp_id} connector={wire_connector} purpose={purpose} "
            f"amps={target.amps} unit={unit} answer={answer}"
        )
        if answer in {"Accepted", "Rejected", "NotSupported"}:
            return answer  # type: ignore[return-value]
        return "Rejected"

    async def _remote(self, connector_id: int, connector: Connector) -> None:
        """RemoteStart/RemoteStopTransaction from a live setpoint's `charge`, with `start_stop` on."""
        link = self.link
        found = self.setpoints.get(connector_id)
        if link is None or not self.cp.start_stop or found is None:
            return
        setpoint, received_at = found
        if setpoint.charge is None or self.clock.time() >= setpoint.expires_at_epoch(received_at):
            return
        tx = connector.transaction_id
        if setpoint.charge and tx is None and connector.status in {"Preparing", "SuspendedEV", "Occupied"}:
            key: tuple[bool, object] = (True, connector.plugged_in_at)
            if self.remote_sent.get(connector_id) != key:
                self.remote_sent[connector_id] = key
                await self._remote_call(connector_id, link.remote_start(connector_id, REMOTE_ID_TAG), "start")
        elif setpoint.charge is False and tx is not None:
            key = (False, tx)
            if self.remote_sent.get(connector_id) != key:
                self.remote_sent[connector_id] = key
                await self._remote_call(connector_id, link.remote_stop(tx), "stop")

    async def _remote_call(self, connector_id: int, call: Awaitable[str], what: str) -> None:
        evse_id = evse_id_for(self.cp.name, connector_id)
        try:
            answer = await call
        except LinkError as exc:
            answer = f"failed: {exc}"
        log.info(f"event=remote_{what} evse_id={evse_id} answer={answer}")
        if answer != "Accepted":
            await self.report(self.topic_of_setpoint(evse_id), f"{evse_id}: remote {what} of the charge: {answer}")

    # -- events from the charger ------------------------------------------------------------------------------

    def connected(self, link: Link) -> None:
        self.link = link
        self.booted = False
        self.configured = False
        self.sent.clear()  # a charger that rebooted may have lost its profiles: send them again
        self.heard()
        self.wake.set()

    def disconnected(self, link: Link) -> None:
        if self.link is link:
            self.link = None

    def on_boot(self, vendor: str | None, model: str | None) -> None:
        self.capabilities.vendor, self.capabilities.model = vendor, model
        self.booted = True
        self.sent.clear()
        self.wake.set()

    def on_status(self, connector_id: int, status: str, error_code: str | None) -> None:
        connector = self.connector(connector_id)
        connector.set_status(status, error_code, self.clock.time())
        self.wake.set()

    def start_transaction(
        self, connector_id: int, id_tag: str | None, meter_start_wh: float | None, transaction_id: int | str | None
    ) -> int | str:
        connector = self.connector(connector_id)
        if transaction_id is None:
            transaction_id = self.next_transaction_id
            self.next_transaction_id += 1
        connector.start(transaction_id, id_tag, meter_start_wh)
        self.remote_sent.pop(connector_id, None)
        self.wake.set()
        return transaction_id

    def stop_transaction(self, transaction_id: int | str, meter_stop_wh: float | None) -> None:
        for connector in self.connectors.values():
            if connector.transaction_id == transaction_id:
                connector.stop(meter_stop_wh)
                self.sent.pop(("TxProfile", connector.connector_id), None)
        self.wake.set()

    async def changed(self) -> None:
        if self.on_change is not None:
            await self.on_change(self)

    async def on_meter_values(
        self, connector_id: int, meter_values: list[dict[str, Any]], transaction_id: int | str | None = None
    ) -> None:
        connector = self.connector(connector_id)
        if transaction_id is not None and connector.transaction_id is None:
            # A session that began before this bridge started (or while it was away): adopt it, so its TxProfile
            # is ours to set. Its tag and start value are unknown.
            self.start_transaction(connector_id, None, None, transaction_id)
            log.info(f"event=transaction_adopted ocpp_id={self.cp.ocpp_id} connector={connector_id}")
        reading = parse_sampled_values(meter_values)
        for measurand, note in reading.corrections.items():
            if measurand not in self.corrected:
                self.corrected.add(measurand)
                await self.report(self.source_topic, f"{self.cp.ocpp_id}: {measurand} {note}")
        for problem in reading.problems[:3]:
            await self.report(self.source_topic, f"{self.cp.ocpp_id}: meter value refused: {problem}")
        self.connector(connector_id).apply(reading, self.clock.time())
        await self.check_obeyed(connector_id)
        await self.changed()

    async def check_obeyed(self, connector_id: int) -> None:
        """After meter values: report once a charger drawing above an accepted limit for more than 30 s."""
        connector = self.connectors[connector_id]
        watch = self.watches.setdefault(connector_id, IgnoredLimitWatch())
        measured = max(connector.currents_a.values()) if connector.currents_a else None
        if measured is None and connector.power_w is not None:
            target = self.targets.get(connector_id)
            if target is not None:
                measured = connector.power_w / (target.basis.voltage_v * target.basis.phases)
        accepted = connector.offered_a if self.controllable else None
        if watch.observe(accepted, measured, self.clock.monotonic()):
            evse_id = evse_id_for(self.cp.name, connector_id)
            await self.report(
                self.topic_of_setpoint(evse_id),
                f"{evse_id}: the charger accepted a limit of {accepted} A but has drawn {measured:.1f} A for more "
                f"than {watch.grace_s:.0f} s: it ignores charging profiles",
            )


#: A failed (timed out, CALLERROR) profile is sent again after this long.
RETRY_FAILED_S = 30.0
#: The idTag of a RemoteStartTransaction.
REMOTE_ID_TAG = "chargebus"
