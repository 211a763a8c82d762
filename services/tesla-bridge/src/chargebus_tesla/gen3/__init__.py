"""Gen3 Wall Connectors over their local HTTP API (read-only `twc3-<name>` EVSEs).

`api` parses the local API's answers (pure), `state` decides what to publish (pure), `poller` moves bytes: HTTP in,
MQTT out. `register_wall_connectors(service, config)` is the entry point the tesla-bridge calls.
"""

from chargebus_tesla.gen3.api import Lifetime, Version, Vitals, parse_lifetime, parse_version, parse_vitals
from chargebus_tesla.gen3.poller import (
    HTTP_TIMEOUT_S,
    LIFETIME_S,
    POLL_S,
    WallConnectorPoller,
    register_wall_connectors,
)
from chargebus_tesla.gen3.state import OFFLINE_AFTER_FAILURES, REPUBLISH_S, build_evse_state

__all__ = [
    "HTTP_TIMEOUT_S",
    "LIFETIME_S",
    "OFFLINE_AFTER_FAILURES",
    "POLL_S",
    "REPUBLISH_S",
    "Lifetime",
    "Version",
    "Vitals",
    "WallConnectorPoller",
    "build_evse_state",
    "parse_lifetime",
    "parse_version",
    "parse_vitals",
    "register_wall_connectors",
]
