"""Problems reported once each: one ErrorEvent per condition until it is resolved."""

from __future__ import annotations

from chargebus_tesla.bus import Bus

#: The problem key of a 429 storm: one for the whole account, as the deadline is.
RATE_LIMITED = "rate-limited"


class Problems:
    """The conditions reported so far, per (VIN or "*", key), with the message that was sent."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._reported: dict[tuple[str, str], str] = {}

    async def report(
        self,
        vin: str,
        key: str,
        topic: str,
        error: str,
        *,
        payload: bytes | None = None,
        transaction: str | int | None = None,
        repeat: bool = False,
    ) -> None:
        """One ErrorEvent for a condition; the same condition again is silent until `resolved` (unless `repeat`)."""
        if not repeat and self._reported.get((vin, key)) == error:
            return
        self._reported[(vin, key)] = error
        await self._bus.report_error(topic, payload, error, transaction)

    def resolved(self, vin: str, key: str) -> None:
        self._reported.pop((vin, key), None)

    def has(self, vin: str, key: str) -> bool:
        return (vin, key) in self._reported
