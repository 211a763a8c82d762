"""What the recorder holds between receiving a state and committing it. Pure: no I/O, no asyncio.

* `SampleBuffer`: records admitted by the change filter wait here until a transaction commits them. It is bounded:
  while the database cannot be written (locked, disk full, server down) the oldest records are dropped first, so
  memory stays flat and the newest state survives.
* `HeldStates`: the last state of every EVSE and vehicle, re-offered to the change filter every `reoffer_s` while
  we listen and its bridge is not known to be offline. A retained state that does not change reaches us once;
  these re-offers let the filter write the keepalive row that tells "quiet but listening" from "not listening"
  (see `dedup.py`: a keepalive row repeats the previous row's payload, `updated_at` included, at a later `ts`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace
from itertools import islice

from chargebus_history.dedup import DEFAULT_KEEPALIVE_S
from chargebus_history.records import EvseRecord, Record, VehicleRecord

#: How often held states are re-offered (at most; a quarter of the gap limit when that is shorter).
DEFAULT_REOFFER_S = 300.0
TWC_BRIDGE = "twc-bridge"
TESLA_BRIDGE = "tesla-bridge"


@dataclass(frozen=True, slots=True)
class Cadence:
    """Re-offer period and keepalive age for a gap limit: together they stay well below it."""

    reoffer_s: float
    keepalive_s: float

    @classmethod
    def for_gap_limit(cls, gap_limit_s: float) -> Cadence:
        # The longest silence between rows while listening is keepalive_s + reoffer_s (<= 3/4 of the limit).
        return cls(min(DEFAULT_REOFFER_S, gap_limit_s / 4), min(DEFAULT_KEEPALIVE_S, gap_limit_s / 2))


class SampleBuffer:
    """Records waiting for a commit, oldest first, at most `limit` of them."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a buffer holds at least one record")
        self.limit = limit
        self._items: deque[tuple[int, Record]] = deque()
        self._next_seq = 0
        self.committed_through = -1  # the highest sequence number committed so far
        self.dropped = 0  # since the last `reset_dropped`

    def __len__(self) -> int:
        return len(self._items)

    @property
    def newest_seq(self) -> int:
        """The sequence number of the last record added (-1 before the first)."""
        return self._next_seq - 1

    def add(self, record: Record) -> bool:
        """Queue a record; False when the buffer was full and its oldest record was dropped for it."""
        full = len(self._items) >= self.limit
        if full:
            self._items.popleft()
            self.dropped += 1
        self._items.append((self._next_seq, record))
        self._next_seq += 1
        return not full

    def peek(self, count: int) -> list[tuple[int, Record]]:
        """The oldest `count` records with their sequence numbers; they stay queued until `commit`."""
        return list(islice(self._items, count))

    def commit(self, last_seq: int) -> int:
        """Forget every record up to `last_seq` (committed). Records dropped meanwhile are simply gone."""
        removed = 0
        while self._items and self._items[0][0] <= last_seq:
            self._items.popleft()
            removed += 1
        self.committed_through = max(self.committed_through, last_seq)
        return removed

    def reset_dropped(self) -> int:
        dropped, self.dropped = self.dropped, 0
        return dropped


def owner_of(record: EvseRecord | VehicleRecord) -> str:
    """The bridge that publishes a state: RS-485 (Gen2 TWC) states come from the twc-bridge, the rest from the
    tesla-bridge (docs/contract.md §1, §6 `source`)."""
    if isinstance(record, EvseRecord) and record.raw.get("source") == "rs485":
        return TWC_BRIDGE
    return TESLA_BRIDGE


class HeldStates:
    """The last state per stream and the presence of the bridges that publish them."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, str], EvseRecord | VehicleRecord] = {}
        self._status: dict[str, str] = {}

    def hold(self, record: EvseRecord | VehicleRecord) -> None:
        self._held[record.stream] = record

    def set_status(self, service: str, status: str) -> None:
        self._status[service] = status

    def listening_to(self, record: EvseRecord | VehicleRecord) -> bool:
        """A bridge whose status says `offline` (its LWT) publishes nothing: its last state is not re-offered.
        A bridge never heard of gets the benefit of the doubt (its status may simply not have arrived yet)."""
        return self._status.get(owner_of(record)) != "offline"

    def reoffers(self, now: float) -> list[Record]:
        """The held states of listened-to bridges, stamped `now`, for the change filter."""
        return [replace(record, ts=now) for record in self._held.values() if self.listening_to(record)]

    def streams(self) -> Iterable[tuple[str, str]]:
        return self._held.keys()
