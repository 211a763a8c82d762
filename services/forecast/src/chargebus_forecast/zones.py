"""The `timezone` of a fixed tariff as a tzinfo: an IANA name, or "" for the system's zone.

A fixed UTC offset (what `datetime.now().astimezone()` gives) would be wrong for half the year, so the system's zone
is looked up by its IANA name: $TZ, else /etc/localtime, else UTC (the same rule as the history service's
`[history] timezone`).
"""

from __future__ import annotations

import os
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_LOCALTIME = Path("/etc/localtime")


def system_zone(environ: dict[str, str] | None = None) -> ZoneInfo:
    env_tz = (environ if environ is not None else dict(os.environ)).get("TZ", "").lstrip(":")
    if env_tz:
        try:
            return ZoneInfo(env_tz)
        except (ZoneInfoNotFoundError, ValueError):
            pass  # a POSIX TZ string such as "CET-1CEST" is no IANA key; fall through to the system file
    if _LOCALTIME.exists():
        target = str(_LOCALTIME.resolve())
        if "zoneinfo/" in target:
            try:
                return ZoneInfo(target.split("zoneinfo/", 1)[1])
            except (ZoneInfoNotFoundError, ValueError):
                pass
        with _LOCALTIME.open("rb") as handle:
            return ZoneInfo.from_file(handle, key="localtime")
    return ZoneInfo("UTC")
