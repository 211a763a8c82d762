"""Which received states become rows: changes, plus a keepalive.

* A state re-published unchanged (a retained replay at reconnect, a bridge's periodic re-publish) adds no row.
  "Unchanged" means every field except the volatile timestamps is equal, so a heartbeat with a new power value,
  a new offered current or a new status text is a row.
* A keepalive row is written when the stream's last row is `keepalive_s` old, even without change. Together with
  the runtime re-offering the states it holds, this tells "quiet but listening" from "not listening" on read:
  silences longer than `gap_limit_s` are unknown. `keepalive_s` plus the re-offer period must stay below it.
* Meters change on nearly every reading and no query reads them at full rate, so a meter change is stored at most
  every `meter_min_interval_s`; the next reading after that interval stores the then-current value.
"""

from __future__ import annotations

from collections.abc import Iterable

from chargebus_history.records import MeterRecord, Record

DEFAULT_KEEPALIVE_S = 600.0
DEFAULT_METER_MIN_INTERVAL_S = 10.0


class ChangeFilter:
    def __init__(
        self,
        keepalive_s: float = DEFAULT_KEEPALIVE_S,
        meter_min_interval_s: float = DEFAULT_METER_MIN_INTERVAL_S,
    ) -> None:
        self.keepalive_s = keepalive_s
        self.meter_min_interval_s = meter_min_interval_s
        self._last: dict[tuple[str, str], tuple[float, str]] = {}

    def seed(self, records: Iterable[Record]) -> None:
        """Start from the last stored row of each stream (after a restart)."""
        for record in records:
            self.remember(record)

    def admit(self, record: Record) -> bool:
        """Whether this record should be stored. Call `remember` once it is committed or queued for a commit."""
        last = self._last.get(record.stream)
        if last is None:
            return True
        last_ts, last_key = last
        age = record.ts - last_ts
        if age >= self.keepalive_s:
            return True
        if record.change_key() == last_key:
            return False
        return not isinstance(record, MeterRecord) or age >= self.meter_min_interval_s

    def remember(self, record: Record) -> None:
        self._last[record.stream] = (record.ts, record.change_key())
