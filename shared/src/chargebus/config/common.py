"""Shared building blocks of every section: field types, `Section`, time zones, unique ids."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)

from chargebus.schema import CLOCK_TIME_PATTERN, EVSE_ID_PATTERN, VIN_PATTERN

log = logging.getLogger("chargebus.config")

CONFIG_ENV = "CHARGEBUS_CONFIG"
DEFAULT_CONFIG_FILE = "chargebus.toml"
EXIT_CONFIG_ERROR = 2

#: The largest current any Gen2 TWC is rated for.
GEN2_MAX_AMPS = 80


def _empty_is_none(value: Any) -> Any:
    """The contract writes "not set" as "" in TOML (`ca_file = ""`): read it as None."""
    return None if value == "" else value


OptionalPath = Annotated[Path | None, BeforeValidator(_empty_is_none)]
OptionalStr = Annotated[str | None, BeforeValidator(_empty_is_none)]
Vin = Annotated[str, Field(pattern=VIN_PATTERN)]
EvseId = Annotated[str, Field(pattern=EVSE_ID_PATTERN)]
Priority = Annotated[int, Field(ge=-1000, le=1000)]
PhaseName = Literal["L1", "L2", "L3"]
Wiring = Literal["L1", "L2", "L3", "L1L2L3"]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HHMM_PATTERN = re.compile(CLOCK_TIME_PATTERN)
TWC3_NAME_PATTERN = re.compile(r"^[a-z0-9-]{1,32}$")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_PATTERN = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")  # a DNS name or an IPv4 address


def repeated(items: list[str]) -> list[str]:
    """The values that occur more than once, sorted: ids and names must be unique."""
    return sorted({item for item in items if items.count(item) > 1})


class Section(BaseModel):
    """A config table: unknown keys are errors (they are usually misspellings)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_timezone(value: str) -> str:
    if value:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. 'Europe/Berlin')") from None
    return value


#: An IANA time zone name, or "" for the system's.
Timezone = Annotated[str, AfterValidator(_check_timezone)]
