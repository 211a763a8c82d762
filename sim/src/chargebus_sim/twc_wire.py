"""The Gen2 TWC wire as a slave hears and speaks it: the simulator's own framing, messages and deny list.

Written for the simulator from the protocol's facts, on purpose apart from the twc-bridge's codec: a test that runs
the bridge against the simulated slaves then checks the bridge's bytes against a second reading of the protocol, so
a framing, checksum or guard mistake in the bridge shows up as a frame the slaves refuse or flag.

The facts:

* A message is a class byte (FB master to one slave, FC master broadcast or command, FD slave), a function byte, the
  sender's 2-byte ID, for addressed messages the receiver's ID, then payload; 13 bytes for protocol 1 slaves and 15
  for protocol 2, plus one checksum byte: the low 8 bits of the sum of every byte after the class byte.
* On the line the message and its checksum are escaped (C0 → DB DC, DB → DB DD) and wrapped in C0 … C0. Slaves send
  a stray byte (FE) after a frame, and an unterminated bus carries noise between frames.
* Unescaped lengths, checksum included: 14 (protocol 1), 16 (protocol 2), 20 (the newest firmware's energy reply).
* Amps are big-endian 16-bit hundredths of an amp. A master heartbeat's data block starts with the command (00 no
  change, 05/08/09 a limit in the next two bytes, 06/07 ±2 A, 02 error with a bitmap).
* What can damage a slave, so a master must never send it: FC 19 and FC 1A (may disable it for good), FB E8 (may
  crash it), any 02 command (some error bitmaps only clear with a power cycle), and a limit above 80 A, the largest
  Gen2 rating (a slave obeys whatever it is told, even 655.35 A).
"""

from __future__ import annotations

from dataclasses import dataclass

END = 0xC0
ESC = 0xDB
ESC_END = 0xDC
ESC_ESC = 0xDD
#: Unescaped frame lengths, checksum included, that a TWC accepts.
LENGTHS = frozenset({14, 16, 20})
#: Heartbeat length (checksum included) by protocol version.
HEARTBEAT_LENGTH = {1: 14, 2: 16}
#: Fewer raw bytes than this between two C0s cannot be a frame (noise, a cut frame, the stray FE).
SHORTEST_RAW = 14
#: A frame never grows beyond this many raw bytes (20, every byte escaped): more is noise, dropped.
LONGEST_RAW = 40
#: 80.00 A, the largest Gen2 rating, in hundredths of an amp.
MAX_CENTIAMPS = 8000
LIMIT_COMMANDS = frozenset({0x05, 0x08, 0x09})

FB, FC, FD = 0xFB, 0xFC, 0xFD
HEARTBEAT, LINKREADY1, LINKREADY2, ENERGY = 0xE0, 0xE1, 0xE2, 0xEB
VIN_PARTS = {0xEE: 1, 0xEF: 2, 0xF1: 3}
START, STOP = 0xB1, 0xB2


def twc_id(text: str) -> int:
    """`"4a1b"` → 0x4A1B: four hex digits."""
    if len(text) != 4 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise ValueError(f"a TWC ID is 4 hex digits, got {text!r}")
    return int(text, 16)


def id_text(value: int) -> str:
    return f"{value:04x}"


def checksum(message: bytes) -> int:
    """Sum of every byte after the class byte, mod 256."""
    return sum(message[1:]) & 0xFF


def to_wire(message: bytes) -> bytes:
    """Checksum appended, C0 and DB escaped, wrapped in C0 … C0."""
    out = bytearray([END])
    for byte in (*message, checksum(message)):
        if byte == END:
            out += bytes([ESC, ESC_END])
        elif byte == ESC:
            out += bytes([ESC, ESC_ESC])
        else:
            out.append(byte)
    out.append(END)
    return bytes(out)


@dataclass(frozen=True, slots=True)
class Heard:
    """One frame off the line: the message without its checksum, or why it is not a valid frame."""

    message: bytes
    problem: str | None = None


class Deframer:
    """Bytes off the line → frames. A C0 with too few bytes before it starts the frame over (what preceded was noise
    or a cut frame), so the reader falls into step again after any garbage; bytes before the first C0 are dropped."""

    def __init__(self) -> None:
        self._raw = bytearray()
        self._inside = False

    def feed(self, data: bytes) -> list[Heard]:
        heard: list[Heard] = []
        for byte in data:
            if byte != END:
                if self._inside:
                    self._raw.append(byte)
                    if len(self._raw) > LONGEST_RAW:  # no C0 for too long: noise, start over at the next one
                        self._raw.clear()
                        self._inside = False
                continue
            if len(self._raw) >= SHORTEST_RAW:
                heard.append(_unwrap(bytes(self._raw)))
                self._raw.clear()
                self._inside = False  # the next C0 opens the next frame
            else:
                self._raw.clear()
                self._inside = True
        return heard


def _unwrap(raw: bytes) -> Heard:
    out = bytearray()
    escaped = False
    for byte in raw:
        if escaped:
            if byte not in (ESC_END, ESC_ESC):
                return Heard(raw, f"DB followed by {byte:02X} is not an escape")
            out.append(END if byte == ESC_END else ESC)
            escaped = False
        elif byte == ESC:
            escaped = True
        else:
            out.append(byte)
    if escaped:
        return Heard(raw, "frame ends inside an escape")
    if len(out) not in LENGTHS:
        return Heard(bytes(out[:-1]), f"{len(out)}-byte frame (a TWC accepts 14, 16 or 20)")
    message, received = bytes(out[:-1]), out[-1]
    if checksum(message) != received:
        return Heard(message, f"checksum {received:02X}, expected {checksum(message):02X}")
    return Heard(message)


# ----- what a slave understands ---------------------------------------------------------------------------------


def _id(message: bytes, at: int) -> int:
    return int.from_bytes(message[at : at + 2], "big")


@dataclass(frozen=True, slots=True)
class MasterLinkready1:
    master_id: int
    sign: int


@dataclass(frozen=True, slots=True)
class MasterLinkready2:
    master_id: int
    sign: int


@dataclass(frozen=True, slots=True)
class MasterHeartbeat:
    master_id: int
    slave_id: int
    data: bytes

    @property
    def command(self) -> int:
        return self.data[0]

    @property
    def limit_centiamps(self) -> int:
        return int.from_bytes(self.data[1:3], "big")


@dataclass(frozen=True, slots=True)
class EnergyRequest:
    master_id: int
    slave_id: int


@dataclass(frozen=True, slots=True)
class VinRequest:
    part: int
    master_id: int
    slave_id: int


@dataclass(frozen=True, slots=True)
class StartCharging:
    master_id: int
    slave_id: int


@dataclass(frozen=True, slots=True)
class StopCharging:
    master_id: int
    slave_id: int


@dataclass(frozen=True, slots=True)
class OtherMessage:
    """Anything else: another slave's frames, commands a slave ignores."""

    message: bytes

    @property
    def code(self) -> bytes:
        return self.message[:2]


Heading = (
    MasterLinkready1
    | MasterLinkready2
    | MasterHeartbeat
    | EnergyRequest
    | VinRequest
    | StartCharging
    | StopCharging
    | OtherMessage
)


def understand(message: bytes) -> Heading:  # noqa: PLR0911 - one case per message kind
    """What a message (checksum removed) asks of a slave."""
    kind, function = message[0], message[1]
    if kind == FC and function == LINKREADY1:
        return MasterLinkready1(_id(message, 2), message[4])
    if kind == FB and function == LINKREADY2:
        return MasterLinkready2(_id(message, 2), message[4])
    if kind == FB and function == HEARTBEAT:
        return MasterHeartbeat(_id(message, 2), _id(message, 4), message[6:])
    if kind == FB and function == ENERGY:
        return EnergyRequest(_id(message, 2), _id(message, 4))
    if kind == FB and function in VIN_PARTS:
        return VinRequest(VIN_PARTS[function], _id(message, 2), _id(message, 4))
    if kind == FC and function in (START, STOP):
        kind_of = StartCharging if function == START else StopCharging
        return kind_of(_id(message, 2), _id(message, 4))
    return OtherMessage(message)


#: Message codes (class and function byte) that must never reach a slave.
DENIED = {
    bytes([FC, 0x19]): "FC 19 may disable a TWC for good",
    bytes([FC, 0x1A]): "FC 1A may disable a TWC for good",
    bytes([FB, 0xE8]): "FB E8 may crash a TWC",
}


def damage(message: bytes) -> str | None:
    """Why a message could damage a slave (the deny list), or None."""
    code = message[:2]
    if code in DENIED:
        return DENIED[code]
    if message[1] == 0x02:
        return "an 02 command: some error states clear only with a power cycle"
    if code == bytes([FB, HEARTBEAT]) and len(message) > 8:
        if message[6] == 0x02:
            return "heartbeat command 02 (error): some bitmaps clear only with a power cycle"
        limit = int.from_bytes(message[7:9], "big")
        if limit > MAX_CENTIAMPS:
            return f"a limit of {limit / 100:.2f} A, above the largest Gen2 rating (80 A)"
    return None


# ----- what a slave says ----------------------------------------------------------------------------------------


def _padded(head: bytes, protocol: int) -> bytes:
    """A slave's message of `head` and zeros: 13 bytes (protocol 1) or 15 (protocol 2), before the checksum."""
    size = HEARTBEAT_LENGTH[protocol] - 1
    if len(head) > size:
        raise ValueError(f"{len(head)} bytes do not fit a protocol {protocol} frame")
    return head + bytes(size - len(head))


def slave_linkready(slave_id: int, sign: int, max_centiamps: int, protocol: int) -> bytes:
    head = bytes([FD, LINKREADY2]) + slave_id.to_bytes(2, "big") + bytes([sign])
    return _padded(head + _amps(max_centiamps), protocol)


def slave_heartbeat(
    slave_id: int, master_id: int, state: int, limit_centiamps: int, actual_centiamps: int, *, protocol: int
) -> bytes:
    head = bytes([FD, HEARTBEAT]) + slave_id.to_bytes(2, "big") + master_id.to_bytes(2, "big")
    return _padded(head + bytes([state]) + _amps(limit_centiamps) + _amps(actual_centiamps), protocol)


def energy_report(slave_id: int, lifetime_kwh: int, volts: tuple[int, int, int]) -> bytes:
    """Lifetime kWh and the three phase voltages: 16 bytes on the line (only protocol 2 firmware answers it)."""
    head = bytes([FD, ENERGY]) + slave_id.to_bytes(2, "big") + lifetime_kwh.to_bytes(4, "big")
    return _padded(head + b"".join(v.to_bytes(2, "big") for v in volts), 2)


def vin_report(part: int, slave_id: int, text: bytes, protocol: int) -> bytes:
    function = next(code for code, number in VIN_PARTS.items() if number == part)
    return _padded(bytes([FD, function]) + slave_id.to_bytes(2, "big") + text[:7], protocol)


def acknowledge(function: int, slave_id: int, protocol: int) -> bytes:
    """A slave's answer to a start or stop command."""
    return _padded(bytes([FD, function]) + slave_id.to_bytes(2, "big"), protocol)


def master_heartbeat(master_id: int, slave_id: int, command: int, limit_centiamps: int, *, protocol: int) -> bytes:
    """What a real master on the same bus sends (the simulator can put one there)."""
    head = bytes([FB, HEARTBEAT]) + master_id.to_bytes(2, "big") + slave_id.to_bytes(2, "big")
    return _padded(head + bytes([command]) + _amps(limit_centiamps), protocol)


def _amps(centiamps: int) -> bytes:
    return max(0, min(0xFFFF, centiamps)).to_bytes(2, "big")
