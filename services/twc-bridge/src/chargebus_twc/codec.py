"""TWC Gen2 RS-485 frames: SLIP-style framing, checksum and typed messages (docs/twc-gen2-protocol.md §2 and §4).

Words used throughout the package:

* a *message* is the logical bytes — class byte (FB/FC/FD), function byte, IDs, payload — without the checksum;
* a *frame* is what travels on the wire: message + checksum, escaped, between two C0 delimiters.

Frame lengths (`FRAME_LENGTHS`) count the unescaped message plus its checksum, as docs/twc-gen2-protocol.md §2.4 does.
Every typed message keeps the bytes after its known fields as `tail` (zero padding on a healthy bus), so any frame of a
known kind re-encodes byte for byte; anything else decodes as `UnknownMessage`, never as an exception.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

END = 0xC0
ESC = 0xDB
ESC_END = 0xDC
ESC_ESC = 0xDD

#: 14 = protocol 1, 16 = protocol 2, 20 = the newest firmware's energy reply, 15 = the short requests other
#: masters send (docs/twc-gen2-protocol.md §2.4). Anything else between two delimiters is noise.
FRAME_LENGTHS = frozenset({14, 15, 16, 20})
PROTOCOL_FRAME_LENGTH = {1: 14, 2: 16}

# The longest frame escapes to twice its length; more raw bytes without a delimiter cannot be a frame.
_MAX_RAW_BYTES = 2 * max(FRAME_LENGTHS)

MAX_U16 = 0xFFFF


def checksum(message: bytes) -> int:
    """Sum of every byte after the class byte, modulo 256 (docs/twc-gen2-protocol.md §2.2)."""
    return sum(message[1:]) & 0xFF


def escape(data: bytes) -> bytes:
    # DB first, so the DBs introduced for C0 are not escaped a second time.
    return data.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc")


def unescape(data: bytes) -> bytes | None:
    """The raw bytes between two delimiters, un-escaped; None when an escape sequence is broken."""
    out = bytearray()
    escaped = False
    for byte in data:
        if escaped:
            if byte == ESC_END:
                out.append(END)
            elif byte == ESC_ESC:
                out.append(ESC)
            else:
                return None
            escaped = False
        elif byte == ESC:
            escaped = True
        else:
            out.append(byte)
    return None if escaped else bytes(out)


def frame(message: bytes) -> bytes:
    """Wire bytes of a message: checksum appended, escaped, wrapped in C0 … C0."""
    return bytes([END]) + escape(message + bytes([checksum(message)])) + bytes([END])


def _verified_message(raw: bytes) -> bytes | None:
    unescaped = unescape(raw)
    if unescaped is None or len(unescaped) not in FRAME_LENGTHS:
        return None
    message, received = unescaped[:-1], unescaped[-1]
    return message if checksum(message) == received else None


class FrameDecoder:
    """Turns a byte stream into checked messages, skipping noise.

    Every C0 both closes the candidate before it and opens the next one, so the `FE` real TWCs send after a
    frame, truncated frames and garbage all fall between delimiters and are dropped (wrong length or checksum).
    Before the first delimiter the decoder may be in the middle of someone else's frame, so it waits for one.
    """

    def __init__(self) -> None:
        self._raw: bytearray | None = None
        self.dropped = 0

    def feed(self, data: bytes) -> list[bytes]:
        messages: list[bytes] = []
        for byte in data:
            if byte == END:
                if self._raw:
                    message = _verified_message(bytes(self._raw))
                    if message is None:
                        self.dropped += 1
                    else:
                        messages.append(message)
                self._raw = bytearray()
            elif self._raw is not None:
                self._raw.append(byte)
                if len(self._raw) > _MAX_RAW_BYTES:
                    # Too long to be a frame: give it up and wait for the next delimiter.
                    self._raw = None
                    self.dropped += 1
        return messages

    def reset(self) -> None:
        """Forget a partial frame, e.g. after a silence on the line (docs/twc-gen2-protocol.md §2.5: 2 s)."""
        self._raw = None


# ---------------------------------------------------------------------------------------------------------------
# Typed messages. IDs are 2-byte integers (0x4A1B is "4a1b"); currents are in 0.01 A as on the wire.


def format_twc_id(twc_id: int) -> str:
    return f"{twc_id:04x}"


def parse_twc_id(text: str) -> int:
    """`"4a1b"` → 0x4A1B; exactly four hex digits."""
    if len(text) != 4 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise ValueError(f"a TWC ID is 4 hex digits, got {text!r}")
    return int(text, 16)


def padding(fixed_length: int, protocol: int) -> bytes:
    """Zero tail that brings a message with `fixed_length` known bytes to the frame length of `protocol` (1|2)."""
    return bytes(PROTOCOL_FRAME_LENGTH[protocol] - 1 - fixed_length)


def _check(value: int, limit: int, name: str) -> None:
    if not 0 <= value <= limit:
        raise ValueError(f"{name} {value} out of range 0..{limit}")


def _ids(first: int, second: int) -> bytes:
    _check(first, MAX_U16, "ID")
    _check(second, MAX_U16, "ID")
    return struct.pack(">HH", first, second)


@dataclass(frozen=True, slots=True)
class _MasterLinkready:
    """The layout both master linkready messages share: master ID, sign byte, padding."""

    CODE: ClassVar[bytes] = b""
    FIXED: ClassVar[int] = 5
    master_id: int
    sign: int
    tail: bytes = bytes(8)

    def pack(self) -> bytes:
        _check(self.master_id, MAX_U16, "master_id")
        _check(self.sign, 0xFF, "sign")
        return self.CODE + struct.pack(">HB", self.master_id, self.sign) + self.tail


@dataclass(frozen=True, slots=True)
class MasterLinkready1(_MasterLinkready):
    """FC E1: a master announces itself; a slave with the same ID picks a new one."""

    CODE: ClassVar[bytes] = b"\xfc\xe1"


@dataclass(frozen=True, slots=True)
class MasterLinkready2(_MasterLinkready):
    """FB E2: slaves answer it with their linkready."""

    CODE: ClassVar[bytes] = b"\xfb\xe2"


@dataclass(frozen=True, slots=True)
class SlaveLinkready:
    """FD E2: a slave offers itself, advertising its maximum; the frame length tells its protocol version."""

    CODE: ClassVar[bytes] = b"\xfd\xe2"
    FIXED: ClassVar[int] = 7
    slave_id: int
    sign: int
    max_centiamps: int
    tail: bytes = bytes(8)

    @property
    def protocol(self) -> int:
        return 1 if len(self.tail) + self.FIXED + 1 <= PROTOCOL_FRAME_LENGTH[1] else 2

    def pack(self) -> bytes:
        _check(self.slave_id, MAX_U16, "slave_id")
        _check(self.sign, 0xFF, "sign")
        _check(self.max_centiamps, MAX_U16, "max_centiamps")
        return self.CODE + struct.pack(">HBH", self.slave_id, self.sign, self.max_centiamps) + self.tail


@dataclass(frozen=True, slots=True)
class MasterHeartbeat:
    """FB E0: command (00 no change, 05/09 limit, …) and a limit for one slave."""

    CODE: ClassVar[bytes] = b"\xfb\xe0"
    FIXED: ClassVar[int] = 10
    master_id: int
    slave_id: int
    command: int
    limit_centiamps: int
    master_plugged_in: bool = False
    tail: bytes = bytes(5)

    def pack(self) -> bytes:
        _check(self.command, 0xFF, "command")
        _check(self.limit_centiamps, MAX_U16, "limit_centiamps")
        data = struct.pack(">BHB", self.command, self.limit_centiamps, int(self.master_plugged_in))
        return self.CODE + _ids(self.master_id, self.slave_id) + data + self.tail


@dataclass(frozen=True, slots=True)
class SlaveHeartbeat:
    """FD E0: the slave's state, the limit it applies (0 = asking for one) and the current drawn."""

    CODE: ClassVar[bytes] = b"\xfd\xe0"
    FIXED: ClassVar[int] = 11
    slave_id: int
    master_id: int
    state: int
    limit_centiamps: int
    actual_centiamps: int
    tail: bytes = bytes(4)

    @property
    def protocol(self) -> int:
        return 1 if len(self.tail) + self.FIXED + 1 <= PROTOCOL_FRAME_LENGTH[1] else 2

    def pack(self) -> bytes:
        _check(self.state, 0xFF, "state")
        _check(self.limit_centiamps, MAX_U16, "limit_centiamps")
        _check(self.actual_centiamps, MAX_U16, "actual_centiamps")
        data = struct.pack(">BHH", self.state, self.limit_centiamps, self.actual_centiamps)
        return self.CODE + _ids(self.slave_id, self.master_id) + data + self.tail


@dataclass(frozen=True, slots=True)
class _AddressedRequest:
    """The layout master requests share: master ID, slave ID, padding."""

    CODE: ClassVar[bytes] = b""
    FIXED: ClassVar[int] = 6
    master_id: int
    slave_id: int
    tail: bytes = bytes(9)

    def pack(self) -> bytes:
        return self.CODE + _ids(self.master_id, self.slave_id) + self.tail


@dataclass(frozen=True, slots=True)
class EnergyRequest(_AddressedRequest):
    """FB EB: ask a slave for its lifetime energy and phase voltages."""

    CODE: ClassVar[bytes] = b"\xfb\xeb"


@dataclass(frozen=True, slots=True)
class EnergyReport:
    """FD EB: lifetime kWh (whole) and phase voltages A/B/C (whole volts, 0 = phase not present)."""

    CODE: ClassVar[bytes] = b"\xfd\xeb"
    FIXED: ClassVar[int] = 14
    slave_id: int
    lifetime_kwh: int
    voltage_a: int
    voltage_b: int
    voltage_c: int
    tail: bytes = bytes(1)

    def pack(self) -> bytes:
        _check(self.slave_id, MAX_U16, "slave_id")
        _check(self.lifetime_kwh, 0xFFFF_FFFF, "lifetime_kwh")
        for volts in (self.voltage_a, self.voltage_b, self.voltage_c):
            _check(volts, MAX_U16, "voltage")
        body = struct.pack(">HIHHH", self.slave_id, self.lifetime_kwh, self.voltage_a, self.voltage_b, self.voltage_c)
        return self.CODE + body + self.tail


VIN_PART_CODES = {1: 0xEE, 2: 0xEF, 3: 0xF1}


@dataclass(frozen=True, slots=True)
class VinRequest:
    """FB EE / EF / F1: ask for VIN characters 1–7, 8–14 or 15–17 (`part` 1, 2 or 3)."""

    FIXED: ClassVar[int] = 6
    part: int
    master_id: int
    slave_id: int
    tail: bytes = bytes(9)

    def pack(self) -> bytes:
        return bytes([0xFB, VIN_PART_CODES[self.part]]) + _ids(self.master_id, self.slave_id) + self.tail


@dataclass(frozen=True, slots=True)
class VinReport:
    """FD EE / EF / F1: up to 7 ASCII characters of the VIN, zero padded (all zero: nothing to report)."""

    FIXED: ClassVar[int] = 4
    part: int
    slave_id: int
    data: bytes = bytes(11)

    @property
    def text(self) -> str:
        """The characters of this part; non-ASCII bytes become U+FFFD, so a bad read fails VIN validation."""
        return self.data.rstrip(b"\x00").decode("ascii", errors="replace")

    def pack(self) -> bytes:
        _check(self.slave_id, MAX_U16, "slave_id")
        return bytes([0xFD, VIN_PART_CODES[self.part]]) + struct.pack(">H", self.slave_id) + self.data


@dataclass(frozen=True, slots=True)
class StartCharging(_AddressedRequest):
    """FC B1: close the relay of one slave (firmware ≥ 4.5.3)."""

    CODE: ClassVar[bytes] = b"\xfc\xb1"


@dataclass(frozen=True, slots=True)
class StopCharging(_AddressedRequest):
    """FC B2: open the relay of one slave; a Tesla on CAN then needs a re-plug (docs/twc-gen2-protocol.md §4.7)."""

    CODE: ClassVar[bytes] = b"\xfc\xb2"


@dataclass(frozen=True, slots=True)
class UnknownMessage:
    """Any message this codec does not model (or a known code with an impossible layout), kept verbatim."""

    body: bytes

    @property
    def code(self) -> bytes:
        return self.body[:2]

    def pack(self) -> bytes:
        return self.body


Message = (
    MasterLinkready1
    | MasterLinkready2
    | SlaveLinkready
    | MasterHeartbeat
    | SlaveHeartbeat
    | EnergyRequest
    | EnergyReport
    | VinRequest
    | VinReport
    | StartCharging
    | StopCharging
    | UnknownMessage
)


def _u16(body: bytes, at: int) -> int:
    return int.from_bytes(body[at : at + 2], "big")


def _master_heartbeat(body: bytes) -> Message | None:
    if body[9] > 1:
        return None  # D3 is a plugged-in flag: anything else is not a heartbeat we understand
    return MasterHeartbeat(_u16(body, 2), _u16(body, 4), body[6], _u16(body, 7), body[9] == 1, body[10:])


def _energy_report(body: bytes) -> Message:
    volts = (_u16(body, 8), _u16(body, 10), _u16(body, 12))
    return EnergyReport(_u16(body, 2), int.from_bytes(body[4:8], "big"), *volts, body[14:])


Parser = Callable[[bytes], Message | None]


def _linkready_parser(cls: type[MasterLinkready1 | MasterLinkready2]) -> Parser:
    return lambda b: cls(_u16(b, 2), b[4], b[5:])


def _request_parser(cls: type[EnergyRequest | StartCharging | StopCharging]) -> Parser:
    return lambda b: cls(_u16(b, 2), _u16(b, 4), b[6:])


#: Per code: the bytes a message needs before its tail, and how to read it.
_PARSERS: dict[bytes, tuple[int, Parser]] = {
    **{cls.CODE: (cls.FIXED, _linkready_parser(cls)) for cls in (MasterLinkready1, MasterLinkready2)},
    SlaveLinkready.CODE: (SlaveLinkready.FIXED, lambda b: SlaveLinkready(_u16(b, 2), b[4], _u16(b, 5), b[7:])),
    MasterHeartbeat.CODE: (MasterHeartbeat.FIXED, _master_heartbeat),
    SlaveHeartbeat.CODE: (
        SlaveHeartbeat.FIXED,
        lambda b: SlaveHeartbeat(_u16(b, 2), _u16(b, 4), b[6], _u16(b, 7), _u16(b, 9), b[11:]),
    ),
    EnergyReport.CODE: (EnergyReport.FIXED, _energy_report),
    **{cls.CODE: (cls.FIXED, _request_parser(cls)) for cls in (EnergyRequest, StartCharging, StopCharging)},
}


def _vin_request_parser(part: int) -> Parser:
    return lambda b: VinRequest(part, _u16(b, 2), _u16(b, 4), b[6:])


def _vin_report_parser(part: int) -> Parser:
    return lambda b: VinReport(part, _u16(b, 2), b[4:])


for _part, _code in VIN_PART_CODES.items():
    _PARSERS[bytes([0xFB, _code])] = (VinRequest.FIXED, _vin_request_parser(_part))
    _PARSERS[bytes([0xFD, _code])] = (VinReport.FIXED, _vin_report_parser(_part))


def parse(message: bytes) -> Message:
    """The typed form of a message (checksum already stripped); never raises."""
    known = _PARSERS.get(message[:2])
    if known is None or len(message) < known[0]:
        return UnknownMessage(message)
    return known[1](message) or UnknownMessage(message)


def pack(message: Message) -> bytes:
    """The logical bytes of a message; ValueError for a field out of range or an impossible frame length."""
    body = message.pack()
    if len(body) + 1 not in FRAME_LENGTHS:
        raise ValueError(f"{type(message).__name__} would be {len(body) + 1} bytes, not one of {sorted(FRAME_LENGTHS)}")
    return body


def encode(message: Message) -> bytes:
    """Wire bytes of one typed message."""
    return frame(pack(message))


def decode(wire: bytes) -> list[Message]:
    """Every checked message in a chunk of wire bytes that starts at a delimiter (noise is skipped)."""
    return [parse(message) for message in FrameDecoder().feed(wire)]


def sender_id(message: Message) -> int | None:
    """The ID of the slave that sent a slave → master (FD) message, else None."""
    match message:
        case SlaveLinkready() | SlaveHeartbeat() | EnergyReport() | VinReport():
            return message.slave_id
        case UnknownMessage(body) if body[:1] == b"\xfd" and len(body) >= 4:
            return _u16(body, 2)
    return None
