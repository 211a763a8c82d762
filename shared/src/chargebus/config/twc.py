"""`[twc]`: the Gen2 Wall Connector bus."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from chargebus.config.common import GEN2_MAX_AMPS, Section, Vin


class TwcConfig(Section):
    port: str = "/dev/ttyUSB0"
    mode: Literal["master", "listen"] = "master"
    master_id: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{4}$")] = "7777"
    voltage_v: Annotated[float, Field(ge=90, le=260)] = 240
    phases: Literal[1, 3] = 1
    wiring_max_amps: Annotated[int, Field(ge=5)] = 32
    bus_max_amps: Annotated[int, Field(ge=5)] = 32
    min_amps: int = 6
    failsafe_amps: Annotated[int, Field(ge=0)] = 6
    start_stop: bool = False
    vin_hints: dict[Annotated[str, Field(pattern=r"^[0-9a-f]{4}$")], Vin] = Field(default_factory=dict)

    @field_validator("wiring_max_amps")
    @classmethod
    def _wiring_rated(cls, value: int) -> int:
        if value > GEN2_MAX_AMPS:
            raise ValueError(f"above {GEN2_MAX_AMPS} A, the largest Gen2 TWC rating")
        return value

    @field_validator("min_amps")
    @classmethod
    def _min_amps(cls, value: int) -> int:
        if value < 5:
            raise ValueError("below 5 A, which cars do not charge at reliably")
        return value

    @model_validator(mode="after")
    def _consistent_limits(self) -> Self:
        if self.min_amps > self.wiring_max_amps:
            raise ValueError(f"min_amps {self.min_amps} is above wiring_max_amps {self.wiring_max_amps}")
        if self.bus_max_amps < self.min_amps:
            raise ValueError(f"bus_max_amps {self.bus_max_amps} is below min_amps {self.min_amps}")
        if 0 < self.failsafe_amps < self.min_amps:
            raise ValueError(f"failsafe_amps {self.failsafe_amps} is between 0 and min_amps {self.min_amps}")
        if self.failsafe_amps > self.wiring_max_amps:
            raise ValueError(f"failsafe_amps {self.failsafe_amps} is above wiring_max_amps {self.wiring_max_amps}")
        return self
