"""A minimal service on the shared runtime, for the runtime's own process-level tests.

It owns one command topic, `<p>/probe/value/set` (an integer 0-100), and one retained state, `<p>/probe/state`
(`{"v": 1, "value": n}`), which is exactly the shape of every real service's command/state pair.
"""

from __future__ import annotations

import json
import sys

from chargebus.config import CommonConfig
from chargebus.mqtt import Incoming, Service
from chargebus.runner import run_service
from chargebus.schema import CommandEnvelope

NAME = "probe"


async def setup(service: Service, config: CommonConfig) -> None:
    del config
    state_topic = f"{service.topics.prefix}/{NAME}/state"
    value = 0

    async def publish_state() -> None:
        await service.publish_retained(state_topic, json.dumps({"v": 1, "value": value}))

    async def set_value(message: Incoming, command: CommandEnvelope) -> None:
        nonlocal value
        del message
        new = command.value
        if isinstance(new, bool) or not isinstance(new, int):
            raise ValueError(f"value must be an integer, got {type(new).__name__}")  # noqa: TRY004 - input error
        if not 0 <= new <= 100:
            raise ValueError(f"value {new} is out of range 0..100")
        value = new
        await publish_state()

    service.on_command(f"{service.topics.prefix}/{NAME}/value/set", set_value)
    await publish_state()


if __name__ == "__main__":
    sys.exit(run_service(NAME, CommonConfig, setup))
