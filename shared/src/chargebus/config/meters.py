"""`[[meters]]`: any MQTT topic as a power meter."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    Field,
    field_validator,
)

from chargebus.config.common import OptionalStr, Section


class MeterConfig(Section):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    topic: Annotated[str, Field(min_length=1)]
    json_path: OptionalStr = None
    scale: Annotated[float, Field(allow_inf_nan=False)] = 1.0
    invert: bool = False
    stale_after_s: Annotated[float, Field(gt=0)] = 30

    @field_validator("topic")
    @classmethod
    def _no_wildcards(cls, value: str) -> str:
        if "#" in value or "+" in value:
            raise ValueError("a meter reads one topic: no wildcards")
        return value
