"""The write path refuses dangerous commands whatever asks for them, and listen mode never writes a byte."""

from __future__ import annotations

import pytest
from chargebus_twc.codec import (
    EnergyRequest,
    MasterHeartbeat,
    MasterLinkready1,
    MasterLinkready2,
    Message,
    StartCharging,
    StopCharging,
    UnknownMessage,
    VinRequest,
    decode,
)
from chargebus_twc.guard import RefusedWriteError, WriteGate, is_dangerous, refusal
from hypothesis import given
from hypothesis import strategies as st

M, S = 0x7777, 0x032E

DANGEROUS: list[tuple[str, Message]] = [
    ("FC 19", UnknownMessage(bytes.fromhex("FC19 7777 032E") + bytes(9))),
    ("FC 1A", UnknownMessage(bytes.fromhex("FC1A 7777 032E") + bytes(9))),
    ("FB E8", UnknownMessage(bytes.fromhex("FBE8 7777 032E") + bytes(9))),
    ("FC 19 short", UnknownMessage(bytes.fromhex("FC19"))),
    ("heartbeat error 02", MasterHeartbeat(M, S, 0x02, 0x0100, tail=bytes(3))),
    ("heartbeat error 02 P2", MasterHeartbeat(M, S, 0x02, 0xF800)),
    ("function 02", UnknownMessage(bytes.fromhex("FB02 7777 032E") + bytes(9))),
    ("655.35 A", MasterHeartbeat(M, S, 0x09, 0xFFFF)),
    ("80.01 A", MasterHeartbeat(M, S, 0x05, 8001, tail=bytes(3))),
    ("bad length", UnknownMessage(bytes.fromhex("FBE0 7777"))),
]

SAFE: list[Message] = [
    MasterLinkready1(M, 0x77),
    MasterLinkready2(M, 0x77),
    MasterHeartbeat(M, S, 0x09, 1600),
    MasterHeartbeat(M, S, 0x05, 0, tail=bytes(3)),
    MasterHeartbeat(M, S, 0x00, 0),
    MasterHeartbeat(M, S, 0x09, 8000),
    EnergyRequest(M, S),
    VinRequest(2, M, S),
    StartCharging(M, S),
    StopCharging(M, S),
]


@pytest.mark.parametrize("message", [m for _, m in DANGEROUS], ids=[n for n, _ in DANGEROUS])
def test_master_mode_refuses_dangerous_commands(message: Message) -> None:
    assert is_dangerous(message)
    with pytest.raises(RefusedWriteError):
        WriteGate("master").frame(message)


@pytest.mark.parametrize("message", SAFE, ids=lambda m: type(m).__name__)
def test_master_mode_frames_what_the_bridge_sends(message: Message) -> None:
    wire = WriteGate("master").frame(message)
    assert decode(wire) == [message]
    assert not is_dangerous(message)


@pytest.mark.parametrize("message", SAFE, ids=lambda m: type(m).__name__)
def test_listen_mode_never_writes_a_byte(message: Message) -> None:
    with pytest.raises(RefusedWriteError, match="never transmits"):
        WriteGate("listen").frame(message)


def test_out_of_range_fields_are_refused_not_raised_as_value_errors() -> None:
    with pytest.raises(RefusedWriteError, match="out of range"):
        WriteGate("master").frame(MasterHeartbeat(M, S, 0x09, 70_000))


def test_refusal_explains_why() -> None:
    reason = refusal(bytes.fromhex("FC19 7777 032E") + bytes(9))
    assert reason is not None
    assert "disable" in reason


@given(st.binary(min_size=0, max_size=25))
def test_no_arbitrary_message_passes_the_gate_with_a_denied_code(body: bytes) -> None:
    try:
        wire = WriteGate("master").frame(UnknownMessage(body))
    except RefusedWriteError:
        return
    assert body[:2] not in {b"\xfc\x19", b"\xfc\x1a", b"\xfb\xe8"}
    assert body[1] != 0x02
    (sent,) = decode(wire)
    if isinstance(sent, MasterHeartbeat):
        assert sent.command != 0x02
        assert sent.limit_centiamps <= 8000
