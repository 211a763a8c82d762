"""A committed sample survives kill -9 of the process that wrote it (SQLite, WAL, synchronous=NORMAL)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from chargebus_history.store import HistoryStore

T0 = 1_800_000_000.0

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from chargebus_history.records import MeterRecord
    from chargebus_history.store import HistoryStore

    async def main() -> None:
        store = await HistoryStore.open(sys.argv[1])
        await store.insert([MeterRecord(float(sys.argv[2]), "grid", 1234.5, raw=1234.5)])
        print("committed", flush=True)
        await asyncio.Event().wait()  # keep the connection open: the kill must find it mid-life

    asyncio.run(main())
    """
)


async def test_a_committed_sample_survives_kill_9(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'history.sqlite'}"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, url, str(T0)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(writer.stdout.readline), timeout=60)
        assert line.strip() == "committed"
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        if writer.stdout is not None:
            writer.stdout.close()
    assert writer.returncode == -signal.SIGKILL
    async with await HistoryStore.open(url) as store:
        (survivor,) = await store.meter_records("grid", T0 - 1, T0 + 1)
    assert survivor.power_w == 1234.5
