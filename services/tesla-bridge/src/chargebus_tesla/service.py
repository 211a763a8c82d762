"""`chargebus-tesla-bridge`: Tesla cars as `car-<VIN>` EVSEs, from TeslaMate and the Fleet API.

Topics and payloads: docs/contract.md §5–§6.
"""

from __future__ import annotations

import logging
import sys

from chargebus.config import TeslaBridgeConfig
from chargebus.ha import Discovery
from chargebus.mqtt import Service
from chargebus.runner import ServiceEntry

from chargebus_tesla.bridge import SERVICE_NAME, TeslaBridge
from chargebus_tesla.fleet import fleet_client_from_config
from chargebus_tesla.gen3 import register_wall_connectors
from chargebus_tesla.overrides import OVERRIDES_FILE

log = logging.getLogger(__name__)


async def setup(service: Service, config: TeslaBridgeConfig, *, run_loops: bool = True) -> TeslaBridge:
    """Register everything the tesla-bridge does on `service`; returns the bridge.

    `run_loops=False` leaves the per-car loops out: tests and the benchmark step the cars on a fake clock.
    """
    clock = service.clock
    client = fleet_client_from_config(config.tesla, state_dir=config.state_dir, clock=clock)
    bridge = TeslaBridge(config, client, service, clock, overrides_file=config.state_dir / OVERRIDES_FILE)
    bridge.install(service, run_loops=run_loops)
    discovery = Discovery(service, enabled=config.mqtt.ha_discovery, ha_prefix=config.mqtt.ha_prefix)
    await bridge.publish_discovery(discovery)
    await bridge.publish_initial()

    # Gen3 Wall Connectors: read-only `twc3-<name>` EVSEs from the local API, carrying the VIN of the car that
    # names them while it reports being plugged in at home (docs/contract.md §7; read from its retained VehicleState).
    register_wall_connectors(service, config)

    log.info(
        f"tesla_bridge_ready cars={len(bridge.cars)} teslamate_prefix={bridge.teslamate_prefix or '-'} "
        f"max_wakes_per_day={config.tesla.max_wakes_per_day} failsafe_amps={config.tesla.failsafe_amps} "
        f"wall_connectors={len(config.tesla.wall_connectors)}"
    )
    return bridge


async def _setup(service: Service, config: TeslaBridgeConfig) -> None:
    await setup(service, config)


#: The service's `main()` (its own process) and what `chargebus run` starts in one process with others.
main = ServiceEntry(SERVICE_NAME, TeslaBridgeConfig, _setup)


if __name__ == "__main__":
    sys.exit(main())
