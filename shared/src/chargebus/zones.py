"""A `timezone` setting as a tzinfo: an IANA name, or "" for the system's zone.

A fixed UTC offset (what `datetime.now().astimezone()` gives) would be wrong for half the year, so the system's
zone is looked up by its IANA name: $TZ, else the zone /etc/localtime links to (or the file itself when it is a
copy), else UTC. The allocator's `[allocator] timezone`, history's `[history] timezone` and a fixed tariff's
`timezone` all read it here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

LOCALTIME = Path("/etc/localtime")


def resolve_timezone(name: str, *, environ: Mapping[str, str] | None = None, localtime: Path = LOCALTIME) -> ZoneInfo:
    """An IANA zone by name (ValueError for an unknown one); "" means the system's zone."""
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"timezone={name!r}: not an IANA time zone name") from error
    return system_zone(environ=environ, localtime=localtime)


def system_zone(*, environ: Mapping[str, str] | None = None, localtime: Path = LOCALTIME) -> ZoneInfo:
    """The system's zone: $TZ when it is an IANA key, else /etc/localtime's, else UTC."""
    env_tz = (os.environ if environ is None else environ).get("TZ", "").lstrip(":")
    if env_tz:
        try:
            return ZoneInfo(env_tz)
        except (ZoneInfoNotFoundError, ValueError):
            pass  # a POSIX TZ string such as "CET-1CEST" is no IANA key; fall through to the system file
    try:
        target = str(localtime.resolve())
        if "zoneinfo/" in target:
            try:
                return ZoneInfo(target.split("zoneinfo/", 1)[1])
            except (ZoneInfoNotFoundError, ValueError):
                pass
        with localtime.open("rb") as handle:
            return ZoneInfo.from_file(handle, key="localtime")
    except (OSError, ValueError):
        return ZoneInfo("UTC")
