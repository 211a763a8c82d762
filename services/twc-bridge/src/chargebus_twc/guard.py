"""The last check before a byte reaches the bus.

Whatever builds a message — the scheduler today, a debug tool tomorrow — every transmission goes through
`WriteGate.frame()`. It refuses:

* anything at all in listen mode (a listener must never disturb a real master's bus);
* the commands known to damage a TWC (docs/twc-gen2-protocol.md §4.8): FC 19 and FC 1A may disable it for good,
  FB E8 may crash it;
* error commands (heartbeat command 02, and any 02 function code): some bitmaps need a power cycle to clear;
* a heartbeat limit above 80 A, the largest Gen2 rating — a slave obeys even 655.35 A
  (docs/twc-gen2-protocol.md §4.2, §7);
* a message whose length no TWC would accept.
"""

from __future__ import annotations

from typing import Literal

from chargebus_twc.codec import FRAME_LENGTHS, Message, frame, pack

Mode = Literal["master", "listen"]

DENIED_CODES: dict[bytes, str] = {
    b"\xfc\x19": "FC 19 may permanently disable the TWC",
    b"\xfc\x1a": "FC 1A may permanently disable the TWC",
    b"\xfb\xe8": "FB E8 may crash the TWC",
}
HEARTBEAT_FUNCTION = 0xE0
ERROR_COMMAND = 0x02
#: 80.00 A, the largest Gen2 rating, in the wire's 0.01 A.
MAX_LIMIT_CENTIAMPS = 8000


class RefusedWriteError(Exception):
    """A transmission the bridge must never make."""


def refusal(message: bytes) -> str | None:
    """Why `message` (logical bytes, no checksum) must not be sent, or None when it may."""
    reason = DENIED_CODES.get(message[:2])
    if reason is not None:
        return reason
    if len(message) + 1 not in FRAME_LENGTHS:
        return f"a {len(message) + 1}-byte frame is not a valid TWC frame"
    if message[1] == ERROR_COMMAND:
        return "02 commands are error signals that may need a power cycle to clear"
    if message[1] == HEARTBEAT_FUNCTION:
        command = message[6]
        limit = int.from_bytes(message[7:9], "big")
        if command == ERROR_COMMAND:
            return "heartbeat command 02 (error) may need a power cycle to clear"
        if limit > MAX_LIMIT_CENTIAMPS:
            return f"heartbeat limit {limit / 100:.2f} A is above the largest Gen2 rating (80 A)"
    return None


def is_dangerous(message: Message | bytes) -> bool:
    """True for a message `WriteGate` would refuse in master mode (used by tests and the simulator)."""
    body = message if isinstance(message, bytes) else message.pack()
    return refusal(body) is not None


class WriteGate:
    """Turns messages into wire bytes for the serial port, refusing everything it must not send."""

    def __init__(self, mode: Mode) -> None:
        self.mode = mode

    def frame(self, message: Message) -> bytes:
        if self.mode != "master":
            raise RefusedWriteError(f"mode {self.mode!r} never transmits")
        try:
            body = pack(message)
        except ValueError as exc:
            raise RefusedWriteError(str(exc)) from None
        reason = refusal(body)
        if reason is not None:
            raise RefusedWriteError(reason)
        return frame(body)
