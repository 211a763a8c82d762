"""Codec: the golden frames of docs/twc-gen2-protocol.md §8, framing edge cases, and round-trip / resync properties."""

from __future__ import annotations

import pytest
from chargebus_twc.codec import (
    FRAME_LENGTHS,
    EnergyReport,
    EnergyRequest,
    FrameDecoder,
    MasterHeartbeat,
    MasterLinkready1,
    MasterLinkready2,
    Message,
    SlaveHeartbeat,
    SlaveLinkready,
    StartCharging,
    StopCharging,
    UnknownMessage,
    VinReport,
    VinRequest,
    checksum,
    decode,
    encode,
    escape,
    format_twc_id,
    frame,
    pack,
    padding,
    parse,
    parse_twc_id,
    sender_id,
    unescape,
)
from hypothesis import given
from hypothesis import strategies as st

M, S = 0x7777, 0x032E


def _hex(text: str) -> bytes:
    return bytes.fromhex(text)


# (docs/twc-gen2-protocol.md §8 row, wire bytes, the typed message they carry)
GOLDEN: list[tuple[str, str, Message]] = [
    ("1 idle", "C0 FC 1D 00 00 00 00 00 00 00 00 00 00 00 1D C0", UnknownMessage(_hex("FC1D" + "00" * 11))),
    (
        "2 energy US",
        "C0 FD EB 77 77 00 00 00 14 00 F6 00 00 00 00 00 E3 C0",
        EnergyReport(M, 0x14, 0xF6, 0, 0, bytes(1)),
    ),
    (
        "3 energy EU",
        "C0 FD EB 77 77 00 00 00 38 00 E6 00 F1 00 E8 00 D0 C0",
        EnergyReport(M, 0x38, 0xE6, 0xF1, 0xE8, bytes(1)),
    ),
    ("4 energy request 16", "C0 FB EB 77 77 03 2E 00 00 00 00 00 00 00 00 00 0A C0", EnergyRequest(M, S, bytes(9))),
    ("5 energy request 15", "C0 FB EB 77 77 03 2E 00 00 00 00 00 00 00 00 0A C0", EnergyRequest(M, S, bytes(8))),
    ("6 firmware P1", "C0 FB 1B 00 00 00 00 00 00 00 00 00 00 00 1B C0", UnknownMessage(_hex("FB1B" + "00" * 11))),
    ("6 firmware P2", "C0 FB 1B" + " 00" * 13 + " 1B C0", UnknownMessage(_hex("FB1B" + "00" * 13))),
    ("7 linkready1 66", "C0 FC E1 77 77 66 00 00 00 00 00 00 00 00 35 C0", MasterLinkready1(M, 0x66)),
    ("8 linkready2 66", "C0 FB E2 77 77 66 00 00 00 00 00 00 00 00 36 C0", MasterLinkready2(M, 0x66)),
    ("9 linkready1 77", "C0 FC E1 77 77 77 00 00 00 00 00 00 00 00 46 C0", MasterLinkready1(M, 0x77)),
    ("9 linkready2 77", "C0 FB E2 77 77 77 00 00 00 00 00 00 00 00 47 C0", MasterLinkready2(M, 0x77)),
    (
        "10 slave heartbeat P1",
        "C0 FD E0 03 2E 77 77 04 00 00 00 19 00 00 1C C0",
        SlaveHeartbeat(S, M, 0x04, 0, 0x19, bytes(2)),
    ),
    (
        "11 escaped data P1",
        "C0 FB E0 77 77 03 2E 05 12 DB DC 00 00 00 00 D6 C0",
        MasterHeartbeat(M, S, 0x05, 0x12C0, tail=bytes(3)),
    ),
    (
        "11 escaped data P2",
        "C0 FB E0 77 77 03 2E 05 12 DB DC 00 00 00 00 00 00 D6 C0",
        MasterHeartbeat(M, S, 0x05, 0x12C0, tail=bytes(5)),
    ),
    (
        "12 slave state 03",
        "C0 FD E0 03 2E 77 77 03 02 58 00 19 00 00 75 C0",
        SlaveHeartbeat(S, M, 0x03, 600, 0x19, bytes(2)),
    ),
    (
        "12 master 0 A",
        "C0 FB E0 77 77 03 2E 05 00 00 00 00 00 00 04 C0",
        MasterHeartbeat(M, S, 0x05, 0, tail=bytes(3)),
    ),
    (
        "13 slave linkready P2",
        "C0 FD E2 77 77 77 1F 40 00 00 00 00 00 00 00 00 A6 C0",
        SlaveLinkready(M, 0x77, 8000, bytes(8)),
    ),
    (
        "14 dummy slave AB",
        "C0 FD E2 41 42 77 1F 40 00 00 00 00 00 00 00 00 3B C0",
        SlaveLinkready(0x4142, 0x77, 8000, bytes(8)),
    ),
    ("15 stop", "C0 FC B2 77 77 03 2E 00 00 00 00 00 00 00 00 00 D1 C0", StopCharging(M, S)),
    ("15 start", "C0 FC B1 77 77 03 2E 00 00 00 00 00 00 00 00 00 D0 C0", StartCharging(M, S)),
    ("16 VIN 1", "C0 FB EE 77 77 03 2E 00 00 00 00 00 00 00 00 0D C0", VinRequest(1, M, S, bytes(8))),
    ("16 VIN 2", "C0 FB EF 77 77 03 2E 00 00 00 00 00 00 00 00 0E C0", VinRequest(2, M, S, bytes(8))),
    ("16 VIN 3", "C0 FB F1 77 77 03 2E 00 00 00 00 00 00 00 00 10 C0", VinRequest(3, M, S, bytes(8))),
    ("17 16 A P2", "C0 FB E0 77 77 03 2E 09 06 40 00 00 00 00 00 00 4E C0", MasterHeartbeat(M, S, 0x09, 1600)),
    ("17 21 A P2", "C0 FB E0 77 77 03 2E 09 08 34 00 00 00 00 00 00 44 C0", MasterHeartbeat(M, S, 0x09, 2100)),
    ("18 no change P2", "C0 FB E0 77 77 03 2E 00 00 00 00 00 00 00 00 00 FF C0", MasterHeartbeat(M, S, 0x00, 0)),
    ("19 escaped checksum", "C0 FB E0 77 77 03 2E 09 02 B6 00 00 00 00 00 00 DB DC C0", MasterHeartbeat(M, S, 9, 694)),
    ("20 6 A P1", "C0 FB E0 77 77 03 2E 05 02 58 00 00 00 00 5E C0", MasterHeartbeat(M, S, 5, 600, tail=bytes(3))),
    ("20 21 A P1", "C0 FB E0 77 77 03 2E 05 08 34 00 00 00 00 40 C0", MasterHeartbeat(M, S, 5, 2100, tail=bytes(3))),
    ("20 40 A P1", "C0 FB E0 77 77 03 2E 05 0F A0 00 00 00 00 B3 C0", MasterHeartbeat(M, S, 5, 4000, tail=bytes(3))),
    (
        "20 error bit0",
        "C0 FB E0 77 77 03 2E 02 01 00 00 00 00 00 02 C0",
        MasterHeartbeat(M, S, 0x02, 0x0100, tail=bytes(3)),
    ),
    (
        "21 fake slave charging",
        "C0 FD E0 77 77 03 2E 01 0F A0 0F A0 00 00 00 00 5E C0",
        SlaveHeartbeat(M, S, 0x01, 4000, 4000, bytes(4)),
    ),
    (
        "22 fake slave energy",
        "C0 FD EB 77 77 00 00 00 77 00 F0 00 00 00 00 00 40 C0",
        EnergyReport(M, 119, 240, 0, 0, bytes(1)),
    ),
    ("23 test vector E2", "C0 FB E2 12 34 00 00 00 00 00 00 00 00 00 28 C0", MasterLinkready2(0x1234, 0)),
    (
        "23 test vector E0",
        "C0 FB E0 12 34 56 78 00 00 00 00 00 00 00 F4 C0",
        MasterHeartbeat(0x1234, 0x5678, 0, 0, tail=bytes(3)),
    ),
    (
        "24 energy 20 bytes",
        "C0 FD EB 03 2E 00 00 03 9C 00 EE 00 EE 00 F1 00 00 00 00 00 88 C0",
        EnergyReport(S, 924, 238, 238, 241, bytes(5)),
    ),
    (
        "master plugged in",
        "C0 FB E0 77 77 03 2E 05 07 D0 01 00 00 00 DC C0",
        MasterHeartbeat(M, S, 5, 2000, master_plugged_in=True, tail=bytes(3)),
    ),
]


@pytest.mark.parametrize(("wire_hex", "message"), [(w, m) for _, w, m in GOLDEN], ids=[n for n, _, _ in GOLDEN])
def test_golden_frame_decodes_and_re_encodes_byte_for_byte(wire_hex: str, message: Message) -> None:
    wire = _hex(wire_hex)
    assert decode(wire) == [message]
    assert encode(message) == wire


def test_golden_values_read_as_the_notes_say() -> None:
    linkready = parse(_hex("FDE2777777 1F40" + "00" * 8))
    assert isinstance(linkready, SlaveLinkready)
    assert linkready.protocol == 2
    p1_linkready = SlaveLinkready(S, 0x77, 3200, padding(SlaveLinkready.FIXED, 1))
    assert p1_linkready.protocol == 1
    assert len(pack(p1_linkready)) + 1 == 14
    heartbeat = decode(_hex("C0 FD E0 03 2E 77 77 04 00 00 00 19 00 00 1C C0"))[0]
    assert isinstance(heartbeat, SlaveHeartbeat)
    assert heartbeat.protocol == 1
    assert heartbeat.actual_centiamps == 25  # the 0.25 A calibration offset of an idle slave


def test_checksum_skips_the_class_byte_and_wraps() -> None:
    assert checksum(b"\xfc\x1d" + bytes(11)) == 0x1D
    assert checksum(b"\x00\xff\x02") == 0x01


def test_escape_and_unescape_are_inverse_and_reject_broken_sequences() -> None:
    data = bytes([0xC0, 0xDB, 0x01, 0xDB, 0xDC])
    assert escape(data) == bytes([0xDB, 0xDC, 0xDB, 0xDD, 0x01, 0xDB, 0xDD, 0xDC])
    assert unescape(escape(data)) == data
    assert unescape(b"\xdb\x01") is None
    assert unescape(b"\x01\xdb") is None


def test_decoder_tolerates_trailing_fe_noise_and_truncated_frames() -> None:
    good = _hex("C0 FD E0 03 2E 77 77 04 00 00 00 19 00 00 1C C0")
    truncated = good[:9]
    corrupted = good[:5] + b"\x55" + good[6:]
    decoder = FrameDecoder()
    stream = b"\x13\x37" + good + b"\xfe" + truncated + good + b"\xfe" + corrupted + good + b"\xfe"
    messages = decoder.feed(stream)
    assert [parse(m) for m in messages] == [SlaveHeartbeat(S, M, 4, 0, 0x19, bytes(2))] * 3
    assert decoder.dropped == 4  # FE, truncated+FE, FE, corrupted


def test_decoder_waits_for_a_delimiter_before_the_first_frame() -> None:
    good = encode(MasterHeartbeat(M, S, 9, 1600))
    assert FrameDecoder().feed(good[1:]) == []  # joined mid-frame: the closing C0 only opens the next one


def test_decoder_gives_up_on_endless_garbage_and_recovers() -> None:
    decoder = FrameDecoder()
    message = MasterLinkready2(M, 0x77)
    assert decoder.feed(b"\xc0" + b"\x11" * 500) == []
    assert decoder.dropped == 1
    assert [parse(m) for m in decoder.feed(encode(message))] == [message]


def test_decoder_reset_forgets_a_partial_frame() -> None:
    decoder = FrameDecoder()
    wire = encode(MasterLinkready2(M, 0x77))
    decoder.feed(wire[:6])
    decoder.reset()
    assert decoder.feed(wire[6:]) == []
    assert decoder.feed(wire) != []


def test_pack_refuses_impossible_messages() -> None:
    with pytest.raises(ValueError, match="limit_centiamps"):
        pack(MasterHeartbeat(M, S, 9, 70_000))
    with pytest.raises(ValueError, match="ID"):
        pack(EnergyRequest(0x1_0000, S))
    with pytest.raises(ValueError, match="bytes"):
        pack(MasterHeartbeat(M, S, 9, 600, tail=bytes(1)))


def test_unknown_codes_and_odd_layouts_stay_verbatim() -> None:
    odd_heartbeat = _hex("FBE0 7777 032E 09 0640 07 0000000000")  # D3 is neither 0 nor 1
    assert parse(odd_heartbeat) == UnknownMessage(odd_heartbeat)
    assert parse(b"") == UnknownMessage(b"")
    assert parse(b"\xfd\xe0\x01") == UnknownMessage(b"\xfd\xe0\x01")
    assert UnknownMessage(_hex("FD19 4A1B")).code == b"\xfd\x19"


def test_vin_report_text_strips_padding() -> None:
    report = VinReport(1, S, b"5YJ3E1E" + bytes(4))
    assert report.text == "5YJ3E1E"
    assert parse(pack(report)) == report
    assert VinReport(3, S, bytes(11)).text == ""


def test_sender_id_names_the_slave_of_slave_frames_only() -> None:
    assert sender_id(SlaveHeartbeat(S, M, 1, 0, 0)) == S
    assert sender_id(EnergyReport(S, 1, 230, 0, 0)) == S
    assert sender_id(UnknownMessage(_hex("FDB1 032E 0000"))) == S
    assert sender_id(MasterHeartbeat(M, S, 0, 0)) is None


def test_twc_ids_are_four_hex_digits() -> None:
    assert parse_twc_id("4a1b") == 0x4A1B
    assert format_twc_id(0x032E) == "032e"
    for bad in ("4a1", "4a1bc", "xyzw"):
        with pytest.raises(ValueError, match="4 hex digits"):
            parse_twc_id(bad)


# ----- properties -----------------------------------------------------------------------------------------------

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)


def _tails(fixed: int) -> st.SearchStrategy[bytes]:
    lengths = [n - 1 - fixed for n in sorted(FRAME_LENGTHS) if n - 1 - fixed >= 0]
    return st.sampled_from(lengths).flatmap(lambda n: st.binary(min_size=n, max_size=n))


parts = st.integers(1, 3)
messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(MasterLinkready1, u16, u8, _tails(MasterLinkready1.FIXED)),
    st.builds(MasterLinkready2, u16, u8, _tails(MasterLinkready2.FIXED)),
    st.builds(SlaveLinkready, u16, u8, u16, _tails(SlaveLinkready.FIXED)),
    st.builds(MasterHeartbeat, u16, u16, u8, u16, st.booleans(), _tails(MasterHeartbeat.FIXED)),
    st.builds(SlaveHeartbeat, u16, u16, u8, u16, u16, _tails(SlaveHeartbeat.FIXED)),
    st.builds(EnergyRequest, u16, u16, _tails(EnergyRequest.FIXED)),
    st.builds(EnergyReport, u16, st.integers(0, 0xFFFF_FFFF), u16, u16, u16, _tails(EnergyReport.FIXED)),
    st.builds(VinRequest, parts, u16, u16, _tails(VinRequest.FIXED)),
    st.builds(VinReport, parts, u16, _tails(VinReport.FIXED)),
    st.builds(StartCharging, u16, u16, _tails(StartCharging.FIXED)),
    st.builds(StopCharging, u16, u16, _tails(StopCharging.FIXED)),
)


@given(messages)
def test_every_typed_message_round_trips(message: Message) -> None:
    wire = encode(message)
    assert decode(wire) == [message]
    assert wire.count(0xC0) == 2  # only the delimiters: the content is always escaped


@given(st.binary(max_size=40))
def test_parse_never_raises_and_loses_nothing(body: bytes) -> None:
    assert parse(body).pack() == body


@given(st.binary(max_size=80), st.lists(messages, min_size=1, max_size=4))
def test_decoder_resynchronises_after_garbage(garbage: bytes, sent: list[Message]) -> None:
    received = decode(garbage + b"".join(encode(m) for m in sent))
    # Garbage may by chance contain a valid frame; the real frames always come out, in order, at the end.
    assert received[-len(sent) :] == sent


@given(st.lists(messages, min_size=1, max_size=4), st.binary(max_size=30), st.data())
def test_chunking_does_not_change_what_is_decoded(sent: list[Message], noise: bytes, data: st.DataObject) -> None:
    stream = b"\xc0" + noise + b"".join(encode(m) + b"\xfe" for m in sent)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    decoder = FrameDecoder()
    chunked: list[bytes] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        chunked += decoder.feed(stream[start:end])
    assert chunked == FrameDecoder().feed(stream)


def test_frame_wraps_in_delimiters() -> None:
    assert frame(b"\xfc\x1d" + bytes(11)) == _hex("C0 FC 1D 00 00 00 00 00 00 00 00 00 00 00 1D C0")
