"""`chargebus.toml` + environment, per docs/contract.md §2: one module per section, plus the loader and secrets.

One file (``--config``, else ``$CHARGEBUS_CONFIG``, else ``./chargebus.toml``), any scalar key overridable by
``CHARGEBUS_<SECTION>__<KEY>``, plus the shortcuts ``CHARGEBUS_MQTT_URL``, ``CHARGEBUS_TOPIC_PREFIX`` and
``CHARGEBUS_STATE_DIR``. Each service validates only its own sections (plus ``[mqtt]``, ``state_dir`` and, for the
allocator and history, ``[[meters]]``), so a typo in ``[tesla]`` never stops the twc-bridge. Problems are
collected and reported one line each (key, value, why); callers exit 2.

Safety limits are errors, never silent clamps: a 100 A wiring limit on a Gen2 TWC is a mistake to fix, not a
value to quietly reduce.
"""

from chargebus.config.allocator import (
    DAY_S,
    AllocatorConfig,
    CircuitConfig,
    EvseSettings,
    ImportAverage,
    Percent,
    ScheduleConfig,
    VehicleSettings,
)
from chargebus.config.common import (
    CONFIG_ENV,
    DEFAULT_CONFIG_FILE,
    EXIT_CONFIG_ERROR,
    GEN2_MAX_AMPS,
    HHMM_PATTERN,
    HOST_PATTERN,
    TWC3_NAME_PATTERN,
    WEEKDAYS,
    EvseId,
    OptionalPath,
    OptionalStr,
    PhaseName,
    Priority,
    Seconds,
    Section,
    Timezone,
    Vin,
    Wiring,
    repeated,
)
from chargebus.config.history import HistoryConfig
from chargebus.config.loader import (
    ConfigError,
    load_config,
    load_or_exit,
    resolve_config_path,
)
from chargebus.config.meters import MeterConfig
from chargebus.config.mqtt import MqttConfig
from chargebus.config.ocpp import (
    IEC_MIN_AMPS,
    OCPP_MAX_AMPS,
    OcppChargePointConfig,
    OcppConfig,
)
from chargebus.config.secrets import (
    redact_url,
    warn_if_secrets_readable,
)
from chargebus.config.services import (
    FULL_CONFIG_SERVICE,
    KNOWN_TOP_LEVEL,
    SERVICE_CONFIGS,
    AllocatorServiceConfig,
    CommonConfig,
    ConfigT,
    FullConfig,
    HistoryServiceConfig,
    OcppBridgeConfig,
    TeslaBridgeConfig,
    TwcBridgeConfig,
    default_state_dir,
)
from chargebus.config.tesla import HomeLocation, Prices, TeslaConfig, TeslaVehicleConfig, WallConnectorConfig
from chargebus.config.twc import TwcConfig

__all__ = [
    "CONFIG_ENV",
    "DAY_S",
    "DEFAULT_CONFIG_FILE",
    "EXIT_CONFIG_ERROR",
    "FULL_CONFIG_SERVICE",
    "GEN2_MAX_AMPS",
    "HHMM_PATTERN",
    "HOST_PATTERN",
    "IEC_MIN_AMPS",
    "KNOWN_TOP_LEVEL",
    "OCPP_MAX_AMPS",
    "SERVICE_CONFIGS",
    "TWC3_NAME_PATTERN",
    "WEEKDAYS",
    "AllocatorConfig",
    "AllocatorServiceConfig",
    "CircuitConfig",
    "CommonConfig",
    "ConfigError",
    "ConfigT",
    "EvseId",
    "EvseSettings",
    "FullConfig",
    "HistoryConfig",
    "HistoryServiceConfig",
    "HomeLocation",
    "ImportAverage",
    "MeterConfig",
    "MqttConfig",
    "OcppBridgeConfig",
    "OcppChargePointConfig",
    "OcppConfig",
    "OptionalPath",
    "OptionalStr",
    "Percent",
    "PhaseName",
    "Prices",
    "Priority",
    "ScheduleConfig",
    "Seconds",
    "Section",
    "TeslaBridgeConfig",
    "TeslaConfig",
    "TeslaVehicleConfig",
    "Timezone",
    "TwcBridgeConfig",
    "TwcConfig",
    "VehicleSettings",
    "Vin",
    "WallConnectorConfig",
    "Wiring",
    "default_state_dir",
    "load_config",
    "load_or_exit",
    "redact_url",
    "repeated",
    "resolve_config_path",
    "warn_if_secrets_readable",
]
