"""What the tesla-bridge needs from MQTT: retained publishing and ErrorEvents (the bench uses a silent stand-in)."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel


class Bus(Protocol):
    """What the runtime needs from the MQTT service (the bench uses a silent stand-in)."""

    async def publish_retained(self, topic: str, payload: bytes | str | BaseModel) -> None: ...

    async def report_error(
        self, topic: str, payload: bytes | None, error: str, transaction: str | int | None = None
    ) -> None: ...


class NullBus:
    """A Bus that publishes nothing and remembers the errors (the cost benchmark)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    async def publish_retained(self, topic: str, payload: bytes | str | BaseModel) -> None:
        del topic, payload

    async def report_error(
        self, topic: str, payload: bytes | None, error: str, transaction: str | int | None = None
    ) -> None:
        del topic, payload, transaction
        self.errors.append(error)
