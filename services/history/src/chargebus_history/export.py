"""`python -m chargebus_history.export`: the power series and energy per day, read from the database directly.

    python -m chargebus_history.export --from 2027-01-01 --to 2027-02-01 [--evse ID | --vin VIN]
        [--csv [--daily]] [--step 60] [--config PATH]

Without `--evse`/`--vin` every EVSE and vehicle in the database is exported. JSON (the default) gives, per subject,
`power` (`[{ts, power_w}]`, as a `power` answer) and `energy` (`{energy_wh, days}`, as an `energy` answer). CSV gives
`subject,ts,power_w` rows, or with `--daily` `subject,date,energy_wh` rows; unknown values are empty cells.
`--from`/`--to` take ISO 8601 dates or times; without an offset they are local times in `[history] timezone`.
The service need not run: this reads the configured `[history] database` on its own (read-only use).
Exit status: 0 done, 2 bad arguments or config, 1 database problem.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import re
import sys
import time
from collections.abc import Sequence
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from chargebus.clock import iso_utc
from chargebus.config import ConfigError, HistoryServiceConfig, load_config
from chargebus.schema import EVSE_ID_PATTERN, VIN_PATTERN
from chargebus.zones import resolve_timezone

from chargebus_history.answering import chunked_energy
from chargebus_history.database import describe_error, parse_url, shown_url
from chargebus_history.queries import EvseTarget, Target, VehicleTarget, power_query
from chargebus_history.store import HistoryStore

EXIT_OK = 0
EXIT_DATABASE = 1
EXIT_USAGE = 2
#: Points per subject at most (a year at one minute is 525 600).
MAX_EXPORT_POINTS = 1_100_000
SECONDS_PER_DAY = 86400


class UsageError(ValueError):
    pass


def parse_time(text: str, zone: tzinfo) -> float:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{text!r} is not an ISO 8601 date or time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.timestamp()


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(
        prog="chargebus history export", description="Export power series and energy per day from the history."
    )
    parse.add_argument("--from", dest="start", required=True, help="start (ISO 8601 date or time)")
    parse.add_argument("--to", dest="end", required=True, help="end (ISO 8601 date or time)")
    subject = parse.add_mutually_exclusive_group()
    subject.add_argument("--evse", help="one evse_id (default: every EVSE and vehicle)")
    subject.add_argument("--vin", help="one vehicle, counted once over all its EVSEs")
    parse.add_argument("--csv", action="store_true", help="CSV instead of JSON")
    parse.add_argument("--daily", action="store_true", help="with --csv: energy per day instead of the power series")
    parse.add_argument("--step", type=int, default=60, help="seconds per power point (default 60)")
    parse.add_argument("--config", help="path of chargebus.toml (default: $CHARGEBUS_CONFIG, else ./chargebus.toml)")
    return parse


def subject_fields(target: Target) -> dict[str, str]:
    return {"evse_id": target.evse_id} if isinstance(target, EvseTarget) else {"vin": target.vin}


def subject_label(target: Target) -> str:
    return target.evse_id if isinstance(target, EvseTarget) else target.vin


async def power_series(
    store: HistoryStore, target: Target, start: float, end: float, step: int, *, now: float, gap_limit_s: float
) -> list[dict[str, Any]]:
    """The series read about a day at a time (whole steps per piece), so memory stays bounded."""
    piece = max(1, SECONDS_PER_DAY // step) * step
    points: list[dict[str, Any]] = []
    a = start
    while a < end:
        b = min(a + piece, end)
        points += await power_query(store, target, a, b, step, now=now, gap_limit_s=gap_limit_s, max_points=piece)
        a = b
    return points


def checked_range(args: argparse.Namespace, zone: tzinfo) -> tuple[float, float]:
    start, end = parse_time(args.start, zone), parse_time(args.end, zone)
    if end <= start:
        raise UsageError("--to must be after --from")
    if args.evse is not None and not re.fullmatch(EVSE_ID_PATTERN, args.evse):
        raise UsageError(f"--evse {args.evse!r} is not an evse_id (twc-<hex4>, car-<VIN>, twc3-<name>)")
    if args.vin is not None and not re.fullmatch(VIN_PATTERN, args.vin):
        raise UsageError(f"--vin {args.vin!r} is not a VIN (17 characters, upper case)")
    if args.step < 1:
        raise UsageError("--step must be at least 1 second")
    if (end - start) / args.step > MAX_EXPORT_POINTS:
        raise UsageError(f"more than {MAX_EXPORT_POINTS} points per subject: use a larger --step")
    return start, end


async def chosen_targets(store: HistoryStore, args: argparse.Namespace) -> list[Target]:
    if args.evse:
        return [EvseTarget(args.evse)]
    if args.vin:
        return [VehicleTarget(args.vin)]
    evse_ids, vins = await store.subjects()
    return [*(EvseTarget(e) for e in evse_ids), *(VehicleTarget(v) for v in vins)]


async def export(args: argparse.Namespace, config: HistoryServiceConfig, zone: tzinfo) -> str:
    start, end = checked_range(args, zone)
    now = time.time()
    gap = config.history.gap_limit_s
    async with await HistoryStore.open(config.database_url) as store:
        subjects: list[dict[str, Any]] = []
        for target in await chosen_targets(store, args):
            entry: dict[str, Any] = dict(subject_fields(target))
            if not (args.csv and args.daily):
                entry["power"] = await power_series(store, target, start, end, args.step, now=now, gap_limit_s=gap)
            if not args.csv or args.daily:
                entry["energy"] = await chunked_energy(store, target, start, end, zone, now=now, gap_limit_s=gap)
            entry["label"] = subject_label(target)
            subjects.append(entry)
    if args.csv:
        return to_csv(subjects, daily=args.daily)
    document = {
        "from": iso_utc(start),
        "to": iso_utc(end),
        "step_s": args.step,
        "timezone": str(zone),
        "subjects": [{k: v for k, v in s.items() if k != "label"} for s in subjects],
    }
    return json.dumps(document, indent=1) + "\n"


def to_csv(subjects: Sequence[dict[str, Any]], *, daily: bool) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")

    def cell(value: Any) -> Any:
        return "" if value is None else value

    if daily:
        writer.writerow(["subject", "date", "energy_wh"])
        for s in subjects:
            writer.writerows([s["label"], d["date"], cell(d["energy_wh"])] for d in s["energy"]["days"])
    else:
        writer.writerow(["subject", "ts", "power_w"])
        for s in subjects:
            writer.writerows([s["label"], p["ts"], cell(p["power_w"])] for p in s["power"])
    return out.getvalue()


def sqlite_file_missing(database: str) -> Path | None:
    try:
        url = parse_url(database)
    except ValueError:
        return None  # opening it says what is wrong
    if url.dialect == "sqlite" and not Path(url.target).exists():
        return Path(url.target)
    return None


def load(args: argparse.Namespace) -> tuple[HistoryServiceConfig, tzinfo]:
    """The config and zone, or UsageError with the lines to print."""
    try:
        config = load_config(HistoryServiceConfig, args.config)
        return config, resolve_timezone(config.history.timezone)
    except ConfigError as error:
        raise UsageError("\n".join(error.problems)) from None
    except ValueError as error:
        raise UsageError(f"config: history.timezone: {error}") from None


def run(args: argparse.Namespace) -> int:
    try:
        config, zone = load(args)
    except UsageError as error:
        sys.stderr.write(f"{error}\n")
        return EXIT_USAGE
    missing = sqlite_file_missing(config.database_url)
    if missing is not None:
        sys.stderr.write(f"export: no history database at {missing}\n")
        return EXIT_DATABASE
    try:
        text = asyncio.run(export(args, config, zone))
    except UsageError as error:
        sys.stderr.write(f"export: {error}\n")
        return EXIT_USAGE
    except Exception as error:  # noqa: BLE001 - one clear line, never a traceback with the URL in it
        where = shown_url(config.database_url)
        sys.stderr.write(f"export: database {where}: {describe_error(error, config.database_url)}\n")
        return EXIT_DATABASE
    sys.stdout.write(text)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2), already printed by argparse
        return EXIT_USAGE if exit_.code else EXIT_OK
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
