"""What each service reads: the sections it validates, and the environment on top of the file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

from pydantic import (
    Field,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from chargebus.config.allocator import AllocatorConfig
from chargebus.config.common import repeated
from chargebus.config.forecast import ForecastConfig
from chargebus.config.history import HistoryConfig
from chargebus.config.meters import MeterConfig
from chargebus.config.mqtt import MqttConfig
from chargebus.config.ocpp import OcppConfig
from chargebus.config.tesla import TeslaConfig
from chargebus.config.twc import TwcConfig


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "chargebus"


KNOWN_TOP_LEVEL = frozenset({"state_dir", "mqtt", "twc", "tesla", "allocator", "meters", "history", "ocpp", "forecast"})


class _ShortcutEnv(PydanticBaseSettingsSource):
    """CHARGEBUS_MQTT_URL and CHARGEBUS_TOPIC_PREFIX, the two shortcuts of docs/contract.md §2."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        del field
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        mqtt: dict[str, str] = {}
        if url := os.environ.get("CHARGEBUS_MQTT_URL"):
            mqtt["url"] = url
        if prefix := os.environ.get("CHARGEBUS_TOPIC_PREFIX"):
            mqtt["prefix"] = prefix
        return {"mqtt": mqtt} if mqtt else {}


class CommonConfig(BaseSettings):
    """What every service reads: state_dir and [mqtt]."""

    model_config = SettingsConfigDict(
        env_prefix="CHARGEBUS_",
        env_nested_delimiter="__",
        extra="ignore",
        frozen=True,
        case_sensitive=False,
    )
    #: The sections this service validates; the rest of the file is another service's business.
    SECTIONS: ClassVar[frozenset[str]] = frozenset({"state_dir", "mqtt"})

    state_dir: Path = Field(default_factory=default_state_dir)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier sources win: environment over the file (passed as init values).
        del dotenv_settings, file_secret_settings
        return (_ShortcutEnv(settings_cls), env_settings, init_settings)


class TwcBridgeConfig(CommonConfig):
    SECTIONS: ClassVar[frozenset[str]] = CommonConfig.SECTIONS | {"twc"}
    twc: TwcConfig = Field(default_factory=TwcConfig)


class TeslaBridgeConfig(CommonConfig):
    SECTIONS: ClassVar[frozenset[str]] = CommonConfig.SECTIONS | {"tesla"}
    tesla: TeslaConfig = Field(default_factory=TeslaConfig)


class OcppBridgeConfig(CommonConfig):
    SECTIONS: ClassVar[frozenset[str]] = CommonConfig.SECTIONS | {"ocpp"}
    ocpp: OcppConfig = Field(default_factory=OcppConfig)


class AllocatorServiceConfig(CommonConfig):
    SECTIONS: ClassVar[frozenset[str]] = CommonConfig.SECTIONS | {"allocator", "meters"}
    allocator: AllocatorConfig = Field(default_factory=AllocatorConfig)
    meters: list[MeterConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_meters(self) -> Self:
        if duplicates := repeated([m.name for m in self.meters]):
            raise ValueError(f"meter name {', '.join(duplicates)} is defined more than once")
        return self


class HistoryServiceConfig(CommonConfig):
    SECTIONS: ClassVar[frozenset[str]] = CommonConfig.SECTIONS | {"history", "meters"}
    history: HistoryConfig = Field(default_factory=HistoryConfig)
    meters: list[MeterConfig] = Field(default_factory=list)

    @property
    def database_url(self) -> str:
        return self.history.database or f"sqlite:///{(self.state_dir / 'history.sqlite').absolute()}"


class ForecastServiceConfig(CommonConfig):
    SECTIONS: ClassVar[frozenset[str]] = CommonConfig.SECTIONS | {"forecast"}
    forecast: ForecastConfig = Field(default_factory=ForecastConfig)


class FullConfig(
    TwcBridgeConfig,
    TeslaBridgeConfig,
    OcppBridgeConfig,
    AllocatorServiceConfig,
    HistoryServiceConfig,
    ForecastServiceConfig,
):
    """Every section at once: `chargebus config check` and the example file's test."""

    SECTIONS: ClassVar[frozenset[str]] = KNOWN_TOP_LEVEL


#: `chargebus config check` without --service validates every section.
FULL_CONFIG_SERVICE: type[CommonConfig] = FullConfig

#: Config class of each service, by service name.
SERVICE_CONFIGS: dict[str, type[CommonConfig]] = {
    "twc-bridge": TwcBridgeConfig,
    "tesla-bridge": TeslaBridgeConfig,
    "allocator": AllocatorServiceConfig,
    "history": HistoryServiceConfig,
    "ocpp-bridge": OcppBridgeConfig,
    "forecast": ForecastServiceConfig,
}

ConfigT = TypeVar("ConfigT", bound=CommonConfig)
