"""`[mqtt]`: the broker connection every service shares."""

from __future__ import annotations

from typing import Annotated, Literal, Self
from urllib.parse import unquote, urlsplit

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from chargebus.config.common import OptionalPath, OptionalStr, Section
from chargebus.config.secrets import redact_url
from chargebus.topics import DEFAULT_PREFIX, validate_prefix


class MqttConfig(Section):
    url: str = "mqtt://127.0.0.1:1883"
    username: OptionalStr = None
    password: SecretStr | None = None
    password_file: OptionalPath = None
    ca_file: OptionalPath = None
    prefix: str = DEFAULT_PREFIX
    ha_discovery: bool = True
    ha_prefix: str = "homeassistant"
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    protocol: Literal["auto", "5", "3.1.1"] = "auto"

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"mqtt", "mqtts"}:
            raise ValueError("must start with mqtt:// or mqtts://")
        if not parts.hostname:
            raise ValueError("has no host")
        try:
            _ = parts.port
        except ValueError:
            raise ValueError("has an invalid port") from None
        return value

    @field_validator("prefix", "ha_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        return validate_prefix(value)

    @model_validator(mode="after")
    def _one_password(self) -> Self:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        return self

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"

    def credentials(self) -> tuple[str | None, str | None]:
        """Username and password from the keys, else from the URL; a password_file is read now."""
        parts = urlsplit(self.url)
        username = self.username or (unquote(parts.username) if parts.username else None)
        password: str | None = None
        if self.password is not None:
            password = self.password.get_secret_value()
        elif self.password_file is not None:
            password = self.password_file.read_text(encoding="utf-8").strip()
        elif parts.password:
            password = unquote(parts.password)
        return username, password

    @property
    def redacted_url(self) -> str:
        """The URL fit for logs: any password replaced by ***."""
        return redact_url(self.url)
