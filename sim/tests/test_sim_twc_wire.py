"""The simulator's own reading of the Gen2 wire: published example frames, resynchronisation after noise, the deny
list, and agreement with the twc-bridge's codec (two independent readings of one protocol)."""

from __future__ import annotations

import pytest
from chargebus_sim import twc_wire as wire
from chargebus_twc import codec
from hypothesis import given
from hypothesis import strategies as st

#: (message without checksum, the bytes on the line), as the protocol's published examples give them.
EXAMPLES = [
    # master idle broadcast
    ("FC1D 00000000000000000000 00", "C0 FC 1D 00 00 00 00 00 00 00 00 00 00 00 1D C0"),
    # protocol 1 slave heartbeat: state 04, limit 0, 0.25 A
    ("FDE0 032E 7777 04 0000 0019 0000", "C0 FD E0 03 2E 77 77 04 00 00 00 19 00 00 1C C0"),
    # protocol 1 master heartbeat, 48.00 A: the data byte C0 escaped
    ("FBE0 7777 032E 05 12C0 00000000", "C0 FB E0 77 77 03 2E 05 12 DB DC 00 00 00 00 D6 C0"),
    # protocol 2 slave linkready, 80.00 A
    ("FDE2 7777 77 1F40 0000000000000000", "C0 FD E2 77 77 77 1F 40 00 00 00 00 00 00 00 00 A6 C0"),
    # protocol 2 master heartbeat, 16.00 A
    ("FBE0 7777 032E 09 0640 000000000000", "C0 FB E0 77 77 03 2E 09 06 40 00 00 00 00 00 00 4E C0"),
    # 6.94 A: the checksum is C0 and escaped
    ("FBE0 7777 032E 09 02B6 000000000000", "C0 FB E0 77 77 03 2E 09 02 B6 00 00 00 00 00 00 DB DC C0"),
    # the newest firmware's 20-byte energy reply
    (
        "FDEB 032E 0000039C 00EE 00EE 00F1 0000000000",
        "C0 FD EB 03 2E 00 00 03 9C 00 EE 00 EE 00 F1 00 00 00 00 00 88 C0",
    ),
]


def hexbytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


@pytest.mark.parametrize(("message", "line"), EXAMPLES)
def test_the_published_examples_frame_and_unframe_byte_for_byte(message: str, line: str) -> None:
    assert wire.to_wire(hexbytes(message)) == hexbytes(line)
    assert wire.Deframer().feed(hexbytes(line)) == [wire.Heard(hexbytes(message))]


def test_noise_stray_bytes_and_cut_frames_do_not_lose_the_next_frame() -> None:
    heartbeat = hexbytes(EXAMPLES[1][1])
    cut = heartbeat[:9]
    deframer = wire.Deframer()
    heard = deframer.feed(b"\x55\xaa" + heartbeat[4:] + cut + b"\xfe\x00" + heartbeat + b"\xfe" + heartbeat)
    assert heard == [wire.Heard(hexbytes(EXAMPLES[1][0]))] * 2
    assert deframer.feed(b"\xc0" + b"\x11" * 100 + heartbeat) == [wire.Heard(hexbytes(EXAMPLES[1][0]))]


def test_a_bad_checksum_a_bad_length_and_a_bad_escape_are_named() -> None:
    good = hexbytes(EXAMPLES[1][1])
    (checksum,) = wire.Deframer().feed(good[:-2] + b"\x1d" + good[-1:])
    assert checksum.problem == "checksum 1D, expected 1C"
    fifteen = wire.to_wire(hexbytes("FBEB 7777 032E") + bytes(8))
    assert wire.Deframer().feed(fifteen)[0].problem == "15-byte frame (a TWC accepts 14, 16 or 20)"
    (escape,) = wire.Deframer().feed(good[:5] + b"\xdb\x01" + good[6:])
    assert escape.problem == "DB followed by 01 is not an escape"


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("FC19 7777 032E" + "00" * 9, "FC 19 may disable a TWC for good"),
        ("FC1A 7777 032E" + "00" * 9, "FC 1A may disable a TWC for good"),
        ("FBE8 7777 032E" + "00" * 9, "FB E8 may crash a TWC"),
        ("FC02 7777 032E" + "00" * 9, "an 02 command: some error states clear only with a power cycle"),
        (
            "FBE0 7777 032E 02 0100" + "00" * 6,
            "heartbeat command 02 (error): some bitmaps clear only with a power cycle",
        ),
        ("FBE0 7777 032E 09 1F41" + "00" * 6, "a limit of 80.01 A, above the largest Gen2 rating (80 A)"),
        ("FBE0 7777 032E 05 FFFF" + "00" * 4, "a limit of 655.35 A, above the largest Gen2 rating (80 A)"),
    ],
)
def test_the_deny_list(message: str, reason: str) -> None:
    assert wire.damage(hexbytes(message)) == reason


@pytest.mark.parametrize(
    "message",
    ["FBE0 7777 032E 09 1F40" + "00" * 6, "FBE0 7777 032E 00 0000" + "00" * 6, "FC B2 7777 032E" + "00" * 11],
)
def test_what_a_master_may_send(message: str) -> None:
    assert wire.damage(hexbytes(message)) is None


bodies = st.sampled_from([13, 15, 19]).flatmap(lambda size: st.binary(min_size=size, max_size=size))


@given(bodies.map(lambda body: bytes([0xFB]) + body[1:]))
def test_the_simulator_and_the_bridge_codec_agree_on_every_frame(message: bytes) -> None:
    """Both readings of the protocol frame any message alike and take back what the other framed."""
    assert wire.to_wire(message) == codec.frame(message)
    assert wire.Deframer().feed(codec.frame(message)) == [wire.Heard(message)]
    assert codec.FrameDecoder().feed(wire.to_wire(message)) == [message]


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFF), st.integers(0, 0xFFFF))
def test_a_heartbeat_from_the_bridge_means_the_same_to_the_simulator(
    master: int, slave: int, command: int, centiamps: int
) -> None:
    sent = codec.MasterHeartbeat(master, slave, command, centiamps, tail=bytes(5))
    understood = wire.understand(codec.pack(sent))
    assert isinstance(understood, wire.MasterHeartbeat)
    assert understood == wire.MasterHeartbeat(master, slave, codec.pack(sent)[6:])
    assert (understood.command, understood.limit_centiamps) == (command, centiamps)
    assert (wire.damage(codec.pack(sent)) is None) == (command != 0x02 and centiamps <= 8000)
