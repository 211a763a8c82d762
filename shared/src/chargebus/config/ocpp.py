"""`[ocpp]`: the OCPP central system and its charge points."""

from __future__ import annotations

import re
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    Field,
    field_validator,
    model_validator,
)

from chargebus.config.common import HOST_PATTERN, OptionalPath, Section, Vin, repeated

#: A charge point's name becomes `ocpp-<name>`, and `ocpp-<name>-<n>` for its connectors 2…9.
_OCPP_NAME = re.compile(r"^[a-z0-9-]{1,30}$")
#: The lowest current IEC 61851 lets a charger signal to a car.
IEC_MIN_AMPS = 6
#: Type 2 / IEC 62196 stops at 63 A per phase; 80 A is the largest North-American AC rating.
OCPP_MAX_AMPS = 80


def _listen_address(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError('must be "host:port" (e.g. "0.0.0.0:9000")')
    host = host.strip("[]")
    if host and not (HOST_PATTERN.fullmatch(host) or ":" in host):
        raise ValueError('must be "host:port" with a host name or IP address')
    return value


class OcppChargePointConfig(Section):
    ocpp_id: Annotated[str, Field(pattern=r"^[\x21-\x7e]{1,48}$")]
    name: str
    password_file: OptionalPath = None
    max_current_a: Annotated[int, Field(ge=IEC_MIN_AMPS, le=OCPP_MAX_AMPS)] = 16
    min_current_a: Annotated[int, Field(ge=IEC_MIN_AMPS, le=OCPP_MAX_AMPS)] = 6
    phases: Literal[1, 3] = 3
    voltage_v: Annotated[float, Field(ge=90, le=260)] = 230
    rate_unit: Literal["A", "W"] = "A"
    failsafe_current_a: Annotated[int, Field(ge=0, le=OCPP_MAX_AMPS)] = 6
    start_stop: bool = False
    id_tags: dict[Annotated[str, Field(min_length=1, max_length=20)], Vin] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _OCPP_NAME.fullmatch(value):
            raise ValueError("must be 1-30 characters of a-z, 0-9 and '-' (it becomes the id ocpp-<name>)")
        return value

    @field_validator("ocpp_id")
    @classmethod
    def _url_safe(cls, value: str) -> str:
        if any(c in value for c in "/?#%"):
            raise ValueError("must not contain '/', '?', '#' or '%' (it is the last part of the charger's URL)")
        return value

    @model_validator(mode="after")
    def _limits(self) -> Self:
        if self.min_current_a > self.max_current_a:
            raise ValueError(f"min_current_a {self.min_current_a} is above max_current_a {self.max_current_a}")
        if 0 < self.failsafe_current_a < self.min_current_a:
            raise ValueError(
                f"failsafe_current_a {self.failsafe_current_a} is between 0 and min_current_a {self.min_current_a}"
            )
        if self.failsafe_current_a > self.max_current_a:
            raise ValueError(
                f"failsafe_current_a {self.failsafe_current_a} is above max_current_a {self.max_current_a}"
            )
        return self

    def password(self) -> str | None:
        """The HTTP Basic password: the file's content without its trailing newline; None when none is set."""
        if self.password_file is None:
            return None
        return self.password_file.read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")


class OcppConfig(Section):
    listen: Annotated[str, AfterValidator(_listen_address)] = "0.0.0.0:9000"
    cert_file: OptionalPath = None
    key_file: OptionalPath = None
    meter_interval_s: Annotated[int, Field(ge=1, le=3600)] = 10
    heartbeat_s: Annotated[int, Field(ge=5, le=86_400)] = 60
    allow_unknown: bool = False
    charge_points: list[OcppChargePointConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Self:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give both cert_file and key_file (wss://), or neither (ws://)")
        if duplicates := repeated([cp.ocpp_id for cp in self.charge_points]):
            raise ValueError(f"charge_points list ocpp_id {', '.join(duplicates)} more than once")
        names = [cp.name for cp in self.charge_points]
        if duplicates := repeated(names):
            raise ValueError(f"charge_points name {', '.join(duplicates)} is defined more than once")
        taken = set(names)
        for name in names:
            base, _, connector = name.rpartition("-")
            if connector.isdigit() and base in taken:
                raise ValueError(f"charge point name {name!r} is also the id of connector {connector} of {base!r}")
        return self

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def tls(self) -> bool:
        return self.cert_file is not None
