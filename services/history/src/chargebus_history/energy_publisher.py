"""The energy publisher: all-time energy per EVSE and vehicle on `<p>/history/energy/<evse_id|vin>` (topic
`history_energy`, docs/contract.md §5), with HA discovery.

Every `interval_s` the totals are advanced on the query worker (`totals.update_totals`: the figure never goes down)
and each figure that changed is published, retained; a subject's first figure also publishes its Home Assistant
sensor, on the charger's or the car's own device.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from chargebus.ha import Discovery, availability, device_ref, entity, evse_device_id, vehicle_device_id
from chargebus.mqtt import Service
from chargebus.topics import Topics

from chargebus_history.database import describe_error
from chargebus_history.store import HistoryStore
from chargebus_history.totals import EVSE_KIND, topic_id, update_totals
from chargebus_history.worker import QueryWorker

log = logging.getLogger("chargebus.history")


def energy_topics_prefix(topics: Topics) -> str:
    """What every `history_energy` topic starts with (`<p>/history/energy/`): no answer may be sent below it."""
    return topics.filter("history_energy").removesuffix("+")


class EnergyPublisher:
    def __init__(
        self,
        service: Service,
        worker: QueryWorker,
        discovery: Discovery,
        *,
        service_name: str,
        database: str,
        store_ready: asyncio.Event,
        names: Mapping[str, str],
        gap_limit_s: float,
        interval_s: float,
    ) -> None:
        self.service = service
        self.topics = service.topics
        self.worker = worker
        self.discovery = discovery
        self.service_name = service_name
        self.database = database
        self.store_ready = store_ready
        self.names = names  # display names by subject key, as the recorder learns them
        self.gap_limit_s = gap_limit_s
        self.interval_s = interval_s
        self.published: dict[str, float] = {}

    async def run(self) -> None:
        await self.store_ready.wait()
        while True:
            now = self.service.clock.time()

            async def job(store: HistoryStore, now: float = now) -> dict[str, float]:
                return await update_totals(store, now=now, gap_limit_s=self.gap_limit_s)

            try:
                figures = await self.worker.submit(job)
            except Exception as error:  # noqa: BLE001 - retried on the next round
                log.warning(
                    f"service=history event=energy_update_failed error={describe_error(error, self.database)!r}"
                )
            else:
                for key, value in figures.items():
                    await self.publish(key, value)
            await self.service.clock.sleep(self.interval_s)

    async def publish(self, key: str, value_wh: float) -> None:
        if self.published.get(key) == value_wh:
            return
        subject_id = topic_id(key)
        topic = self.topics.build("history_energy", subject_id=subject_id)
        if key not in self.published:
            is_evse = key.startswith(f"{EVSE_KIND}:")
            name = self.names.get(key, subject_id)
            await self.discovery.publish(
                entity(
                    "sensor",
                    f"history_energy_{subject_id}",
                    f"{name} energy",
                    # on the charger's or the car's own device, which its bridge describes
                    device_block=device_ref(evse_device_id(subject_id) if is_evse else vehicle_device_id(subject_id)),
                    availability_list=availability(self.topics, self.service_name),
                    state_topic=topic,
                    unit_of_measurement="Wh",
                    device_class="energy",
                    state_class="total_increasing",
                    suggested_display_precision=0,
                )
            )
        self.published[key] = value_wh
        await self.service.publish_retained(topic, f"{value_wh:.1f}")
