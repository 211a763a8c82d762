"""TWC Gen2 frame parsing throughput: wire bytes → checked, typed messages.

The stream mixes every message kind a master receives (heartbeats of both protocols, linkready, energy and VIN
answers), each followed by the stray FE real TWCs send, with a little line noise between frames — what the
FrameDecoder sees on a real bus. Prints `name value unit` lines; the median of `--repeat` rounds, and the same
rounds through the plain SLIP split (no checksum, no typing) as a baseline.

    uv run python bench/twc_codec.py [--frames N] [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import time

from chargebus_twc.codec import (
    EnergyReport,
    FrameDecoder,
    Message,
    SlaveHeartbeat,
    SlaveLinkready,
    VinReport,
    encode,
    padding,
    parse,
)

SAMPLES: list[Message] = [
    SlaveHeartbeat(0x4A1B, 0x7777, 0x01, 1600, 1590, padding(SlaveHeartbeat.FIXED, 2)),
    SlaveHeartbeat(0x5C2D, 0x7777, 0x04, 0, 25, padding(SlaveHeartbeat.FIXED, 1)),
    SlaveHeartbeat(0x6E3F, 0x7777, 0x01, 0x12C0, 0x12C0, padding(SlaveHeartbeat.FIXED, 2)),  # escaped C0 byte
    SlaveLinkready(0x4A1B, 0x42, 3200, padding(SlaveLinkready.FIXED, 2)),
    EnergyReport(0x4A1B, 924, 238, 238, 241, bytes(5)),
    VinReport(1, 0x4A1B, b"5YJ3E1E" + bytes(4)),
]
NOISE = b"\x00\x13\xfe"
#: 9600 baud 8N1 carries 960 bytes/s: at most ~53 frames of 16 bytes + 2 delimiters, back to back.
LINE_FRAMES_PER_S = 960 / 18


def stream(frames: int) -> bytes:
    parts = []
    for index in range(frames):
        parts.append(encode(SAMPLES[index % len(SAMPLES)]) + b"\xfe")
        if index % 50 == 0:
            parts.append(NOISE)
    return b"".join(parts)


def parse_all(wire: bytes) -> int:
    decoder = FrameDecoder()
    count = 0
    for start in range(0, len(wire), 64):  # the port delivers chunks, not whole streams
        for body in decoder.feed(wire[start : start + 64]):
            parse(body)
            count += 1
    return count


def split_only(wire: bytes) -> int:
    return sum(1 for chunk in wire.split(b"\xc0") if len(chunk) > 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    wire = stream(args.frames)
    rates, baseline = [], []
    for _ in range(args.repeat):
        started = time.perf_counter()
        count = parse_all(wire)
        rates.append(count / (time.perf_counter() - started))
        assert count == args.frames, count
        started = time.perf_counter()
        split_only(wire)
        baseline.append(args.frames / (time.perf_counter() - started))
    median = statistics.median(rates)
    print(f"codec_parse_frames_per_s {median:.0f} frames/s")
    print(f"codec_parse_us_per_frame {1e6 / median:.2f} us")
    print(f"codec_cpu_pct_at_full_line_rate {100 * LINE_FRAMES_PER_S / median:.4f} %")
    print(f"baseline_slip_split_frames_per_s {statistics.median(baseline):.0f} frames/s")


if __name__ == "__main__":
    main()
