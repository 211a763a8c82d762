"""`python -m chargebus_history.export`: JSON and CSV from a real SQLite database, errors as one line."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from chargebus_history.export import main
from chargebus_history.records import EvseRecord
from chargebus_history.store import HistoryStore

T0 = 1_767_254_400.0  # 2026-01-01T08:00:00Z = 09:00 in Berlin; in the past, so nothing is "after now"
VIN = "5YJ3E1EA8KF000001"


@pytest.fixture
async def config(tmp_path: Path, evse_payload: Callable[..., dict[str, Any]]) -> Path:
    database = tmp_path / "history.sqlite"
    on = {"vin": VIN, "plugged_in": True, "charging": True}
    async with await HistoryStore.open(f"sqlite:///{database}") as store:
        await store.insert(
            [
                EvseRecord.from_payload(T0, evse_payload(power_w=7200.0, **on)),
                EvseRecord.from_payload(T0 + 1800, evse_payload(power_w=3600.0, **on)),
                EvseRecord.from_payload(T0 + 3600, evse_payload(vin=VIN, plugged_in=False)),
            ]
        )
    path = tmp_path / "chargebus.toml"
    path.write_text(f'[history]\ndatabase = "sqlite:///{database}"\ntimezone = "Europe/Berlin"\n', encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_gives_power_and_energy_per_subject(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--config", str(config), "--from", "2026-01-01T09:00", "--to", "2026-01-01T11:00")
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert document["from"] == "2026-01-01T08:00:00.000Z"  # local (Berlin) input, UTC output
    assert document["timezone"] == "Europe/Berlin"
    by_subject = {s.get("evse_id") or s.get("vin"): s for s in document["subjects"]}
    assert set(by_subject) == {"twc-4a1b", VIN}
    twc = by_subject["twc-4a1b"]
    assert len(twc["power"]) == 120
    assert twc["power"][0] == {"ts": "2026-01-01T08:00:00.000Z", "power_w": 7200.0}
    assert twc["power"][30]["power_w"] == 3600.0
    assert twc["power"][60]["power_w"] is None  # the last row holds longer than the gap limit: unknown
    assert twc["energy"]["energy_wh"] == pytest.approx(3600 + 1800)
    assert by_subject[VIN]["energy"]["energy_wh"] == pytest.approx(3600 + 1800)  # the TWC serves the car


def test_csv_power_series_and_daily_energy(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ("--config", str(config), "--from", "2026-01-01T08:00:00Z", "--to", "2026-01-01T09:00:00Z", "--csv")
    code, out, _ = run(capsys, *args, "--evse", "twc-4a1b", "--step", "900")
    assert code == 0
    assert out.splitlines() == [
        "subject,ts,power_w",
        "twc-4a1b,2026-01-01T08:00:00.000Z,7200.0",
        "twc-4a1b,2026-01-01T08:15:00.000Z,7200.0",
        "twc-4a1b,2026-01-01T08:30:00.000Z,3600.0",
        "twc-4a1b,2026-01-01T08:45:00.000Z,3600.0",
    ]
    code, out, _ = run(capsys, *args[:-2], "2026-01-03", "--csv", "--daily", "--vin", VIN)
    assert code == 0
    assert out.splitlines() == ["subject,date,energy_wh", f"{VIN},2026-01-01,5400.0", f"{VIN},2026-01-02,"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--from", "yesterday", "--to", "2026-01-02"), "not an ISO 8601"),
        (("--from", "2026-01-02", "--to", "2026-01-01"), "after --from"),
        (("--from", "2026-01-01", "--to", "2026-01-02", "--evse", "garage"), "not an evse_id"),
        (("--from", "2026-01-01", "--to", "2026-01-02", "--vin", "abc"), "not a VIN"),
        (("--from", "2020-01-01", "--to", "2026-01-02", "--step", "1"), "larger --step"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    config: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...], message: str
) -> None:
    code, out, err = run(capsys, "--config", str(config), *extra)
    assert code == 2
    assert out == ""
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_a_missing_database_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "chargebus.toml"
    path.write_text(f'[history]\ndatabase = "sqlite:///{tmp_path / "none.sqlite"}"\n', encoding="utf-8")
    code, _, err = run(capsys, "--config", str(path), "--from", "2026-01-01", "--to", "2026-01-02")
    assert code == 1
    assert "no history database" in err
    assert not (tmp_path / "none.sqlite").exists()


def export_process(*command: str, config: Path) -> subprocess.CompletedProcess[str]:
    """The export run as a user runs it, for one hour of the fixture's day as daily CSV."""
    return subprocess.run(
        [
            *(sys.executable, "-m", *command, "--config", str(config)),
            *("--from", "2026-01-01T08:00Z", "--to", "2026-01-01T09:00Z", "--csv", "--daily"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_runs_as_a_module(config: Path) -> None:
    done = export_process("chargebus_history.export", config=config)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "subject,date,energy_wh"


def test_runs_as_chargebus_history_export(config: Path) -> None:
    """The umbrella command finds the export through the package's `chargebus.commands` entry point."""
    done = export_process("chargebus", "history", "export", config=config)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "subject,date,energy_wh"
    unknown = subprocess.run(
        [sys.executable, "-m", "chargebus", "history", "purge"], capture_output=True, text=True, timeout=60, check=False
    )
    assert unknown.returncode == 2
    assert "chargebus history export" in unknown.stderr
