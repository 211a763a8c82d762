"""The forecast service on MQTT: fetch each configured source, publish it retained every `refresh_s`
(docs/contract.md §10).

One task per source: fetch through the provider's library (`providers`), publish the normalised message retained on
its topic, sleep `refresh_s`. A failed fetch publishes nothing (the last good retained message stays on the broker),
is retried after a capped exponential backoff (`health`), and is reported on `<p>/forecast/error` twice per
episode: when it starts and when it ends. `<p>/forecast/state` summarises now and the next hour for dashboards and
Home Assistant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from datetime import datetime
from typing import Any

from chargebus.clock import utc_datetime
from chargebus.config import ForecastServiceConfig, SourceConfig
from chargebus.ha import Discovery, Entity, availability, device, entity
from chargebus.mqtt import Service
from chargebus.runner import ServiceEntry
from chargebus.schema import ForecastState, SolarForecast, Tariff, to_json
from chargebus.topics import TopicKey

from chargebus_forecast.health import SourceHealth
from chargebus_forecast.providers import SessionFactory, default_session, fetch
from chargebus_forecast.summary import summarise

NAME = "forecast"
log = logging.getLogger("chargebus.forecast")

#: How often `<p>/forecast/state` is recomputed (it is published only when it changes).
STATE_INTERVAL_S = 30.0
#: An ErrorEvent waits this long at most for the broker connection.
REPORT_WAIT_S = 10.0
ERROR_CHARS = 300


def describe_error(error: BaseException, secrets: list[str]) -> str:
    """An error fit for logs and MQTT: its type and text, cut short, with every secret (an API key in a URL) hidden."""
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    status = getattr(error, "status", None)
    if isinstance(status, int) and hasattr(error, "request_info"):
        text = f"{type(error).__name__}: HTTP {status} {getattr(error, 'message', '')}".rstrip()
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text[:ERROR_CHARS]


def _secrets(config: SourceConfig) -> list[str]:
    """The secrets a source's errors must never show: its API key or access token, read from their files."""
    found = []
    for name in ("api_key", "token"):
        reader = getattr(config, name, None)
        if reader is None:
            continue
        try:
            secret = reader()
        except OSError:
            continue
        if secret:
            found.append(secret)
    return found


class ForecastRuntime:
    def __init__(
        self, service: Service, config: ForecastServiceConfig, session_factory: SessionFactory = default_session
    ) -> None:
        self.service = service
        self.settings = config.forecast
        self.topics = service.topics
        self.sources = config.forecast.sources
        self.session_factory = session_factory
        self.health = {
            key: SourceHealth(config.forecast.retry_initial_s, config.forecast.retry_max_s) for key in self.sources
        }
        self.latest: dict[str, Tariff | SolarForecast] = {}
        self.refreshed_at: datetime | None = None
        self.state_topic = self.topics.build("forecast_state")
        self.published_state: bytes | None = None
        self.discovery = Discovery(service, enabled=config.mqtt.ha_discovery, ha_prefix=config.mqtt.ha_prefix)

    def register(self) -> None:
        if not self.sources:
            log.warning(
                "service=forecast event=idle reason='no source configured: set [forecast] grid_tariff, "
                "feedin_tariff or solar'"
            )
        for key in self.sources:
            self.service.add_task(f"fetch-{key}", lambda key=key: self.source_loop(key))  # type: ignore[misc]
        self.service.add_task("state", self.state_loop)
        self.service.on_connect(self.publish_discovery)

    # -- fetching -------------------------------------------------------------------------------------------------

    async def source_loop(self, key: TopicKey) -> None:
        while True:
            delay = await self.refresh(key)
            log.info(f"service=forecast event=next_fetch topic={self.topics.build(key)} in_s={delay:g}")
            await self.service.clock.sleep(delay)

    async def refresh(self, key: TopicKey) -> float:
        """Fetch and publish one source; the seconds until its next fetch."""
        config = self.sources[key]
        topic = self.topics.build(key)
        health = self.health[key]
        log.info(f"service=forecast event=fetching topic={topic} source={config.source}")
        try:
            payload = await fetch(config, utc_datetime(self.service.clock), self.session_factory)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - every provider failure is reported and retried
            text = describe_error(error, _secrets(config))
            starts = health.failed(text)
            delay = health.retry_delay()
            log.warning(
                f"service=forecast event=fetch_failed topic={topic} source={config.source} "
                f"attempt={health.failures} retry_in_s={delay:g} error={text!r}"
            )
            if starts:
                await self.report(
                    topic, f"{config.source}: fetch failed: {text}; retrying with backoff, the last good message stays"
                )
            await self.publish_state()
            return delay
        await self.service.publish_retained(topic, payload)
        self.latest[key] = payload
        self.refreshed_at = utc_datetime(self.service.clock)
        slots = payload.slots
        log.info(
            f"service=forecast event=published topic={topic} source={config.source} slots={len(slots)} "
            f"from={slots[0].start.isoformat()} to={slots[-1].end.isoformat()}"
        )
        if ended := health.succeeded():
            log.info(f"service=forecast event=recovered topic={topic} source={config.source} failed_attempts={ended}")
            await self.report(topic, f"{config.source}: recovered after {ended} failed attempts")
        await self.publish_state()
        return self.settings.refresh_s

    async def report(self, topic: str, text: str) -> None:
        """An ErrorEvent for a condition, not an input: topic naming what could not be refreshed, payload null."""
        if not self.service.connected.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.service.connected.wait(), REPORT_WAIT_S)
        await self.service.report_error(topic, None, text)

    # -- state and discovery --------------------------------------------------------------------------------------

    def state(self) -> ForecastState:
        grid = self.latest.get("tariff_grid")
        feedin = self.latest.get("tariff_feedin")
        solar = self.latest.get("forecast_solar")
        return summarise(
            utc_datetime(self.service.clock),
            grid=grid if isinstance(grid, Tariff) else None,
            feedin=feedin if isinstance(feedin, Tariff) else None,
            solar=solar if isinstance(solar, SolarForecast) else None,
            refreshed_at=self.refreshed_at,
            failing=[self.topics.build(key) for key, health in self.health.items() if health.failing],
        )

    async def publish_state(self) -> None:
        data = to_json(self.state())
        if data != self.published_state:
            self.published_state = data
            await self.service.publish_retained(self.state_topic, data)

    async def state_loop(self) -> None:
        while True:
            await self.publish_state()
            await self.service.clock.sleep(STATE_INTERVAL_S)

    def entities(self) -> list[Entity]:
        common: dict[str, Any] = {
            "device_block": device(NAME, "chargebus forecast", "forecast"),
            "availability_list": availability(self.topics, NAME),
            "state_topic": self.state_topic,
        }
        found = []
        grid = self.sources.get("tariff_grid")
        if grid is not None:
            unit = f"{getattr(grid, 'currency', 'EUR')}/kWh"
            found += [
                entity(
                    "sensor",
                    "forecast_grid_price",
                    "Grid price",
                    value_template="{{ value_json.grid_price }}",
                    unit_of_measurement=unit,
                    state_class="measurement",
                    icon="mdi:cash",
                    **common,
                ),
                entity(
                    "sensor",
                    "forecast_grid_price_next_hour",
                    "Grid price in an hour",
                    value_template="{{ value_json.grid_price_next_hour }}",
                    unit_of_measurement=unit,
                    state_class="measurement",
                    icon="mdi:cash-clock",
                    **common,
                ),
            ]
        feedin = self.sources.get("tariff_feedin")
        if feedin is not None:
            found.append(
                entity(
                    "sensor",
                    "forecast_feedin_price",
                    "Feed-in price",
                    value_template="{{ value_json.feedin_price }}",
                    unit_of_measurement=f"{getattr(feedin, 'currency', 'EUR')}/kWh",
                    state_class="measurement",
                    icon="mdi:cash-plus",
                    **common,
                )
            )
        if "forecast_solar" in self.sources:
            found.append(
                entity(
                    "sensor",
                    "forecast_solar_now",
                    "Solar expected now",
                    value_template="{{ value_json.solar_w }}",
                    unit_of_measurement="W",
                    device_class="power",
                    state_class="measurement",
                    **common,
                )
            )
        found.append(
            entity(
                "sensor",
                "forecast_last_refresh",
                "Last refresh",
                value_template="{{ value_json.refreshed_at }}",
                device_class="timestamp",
                entity_category="diagnostic",
                **common,
            )
        )
        return found

    async def publish_discovery(self) -> None:
        for item in self.entities():
            await self.discovery.publish(item)


async def build(
    service: Service, config: ForecastServiceConfig, session_factory: SessionFactory = default_session
) -> ForecastRuntime:
    runtime = ForecastRuntime(service, config, session_factory)
    runtime.register()
    sources = " ".join(f"{key}={source.source}" for key, source in runtime.sources.items()) or "none"
    log.info(f"service=forecast event=configured refresh_s={config.forecast.refresh_s:g} {sources}")
    return runtime


async def setup(service: Service, config: ForecastServiceConfig) -> None:
    await build(service, config)


#: The service's `main()` (its own process) and what `chargebus run` starts in one process with others.
main = ServiceEntry(NAME, ForecastServiceConfig, setup)

__all__ = ["ForecastRuntime", "build", "describe_error", "main", "setup"]

if __name__ == "__main__":
    sys.exit(main())
