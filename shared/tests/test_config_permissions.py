"""A config file holding secrets, or a secret file it names, that every user can read is warned about (issue 9.4).

One warning line per file and process, naming the file and the fix (`chmod 600`), never the secret itself. Only
"others" count: a file shared with a group (0640, e.g. root:chargebus in a container) is a deliberate choice.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from chargebus.config import AllocatorServiceConfig, ConfigError, FullConfig, TeslaBridgeConfig, load_config
from chargebus.config import secrets as config_module

SECRET = "s3cr3t-Pa55word-never-logged"


@pytest.fixture(autouse=True)
def fresh_memory() -> Iterator[None]:
    """Each test starts as a new process would: no file warned about yet."""
    config_module._warned_readable.clear()
    yield
    config_module._warned_readable.clear()


def write(path: Path, text: str, mode: int) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "chargebus.config" and r.levelno == logging.WARNING]


@pytest.mark.parametrize(
    "text",
    [
        f'[mqtt]\npassword = "{SECRET}"\n',
        f'[mqtt]\nurl = "mqtts://chargebus:{SECRET}@broker.example:8883"\n',
        f'[tesla]\nclient_secret = "{SECRET}"\n',
        f'[tesla]\naccess_token = "{SECRET}"\n',
    ],
    ids=["mqtt-password", "password-in-url", "client-secret", "any-token-key"],
)
def test_a_world_readable_file_with_a_secret_is_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    path = write(tmp_path / "chargebus.toml", text, 0o644)
    caplog.set_level(logging.WARNING, logger="chargebus.config")
    for _ in range(3):
        config_module.warn_if_secrets_readable(path, tomllib.loads(text))
    (line,) = warnings(caplog)
    assert f"file={path} " in line
    assert f"chmod 600 {path}" in line
    assert "0644" in line
    assert SECRET not in line


def test_load_config_warns_and_still_loads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path / "chargebus.toml", f'[mqtt]\nusername = "u"\npassword = "{SECRET}"\n', 0o604)
    caplog.set_level(logging.WARNING, logger="chargebus.config")
    config = load_config(AllocatorServiceConfig, path)
    load_config(AllocatorServiceConfig, path)
    assert config.mqtt.credentials() == ("u", SECRET)
    (line,) = warnings(caplog)
    assert "holds secrets (mqtt.password)" in line
    assert SECRET not in caplog.text


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o400])
def test_a_private_or_group_only_file_is_not_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    path = write(tmp_path / "chargebus.toml", f'[mqtt]\npassword = "{SECRET}"\n', mode)
    caplog.set_level(logging.WARNING, logger="chargebus.config")
    load_config(AllocatorServiceConfig, path)
    assert warnings(caplog) == []


@pytest.mark.parametrize(
    "text",
    [
        '[mqtt]\nurl = "mqtt://broker.example:1883"\nusername = "chargebus"\n',
        '[mqtt]\npassword = ""\n',
        '[tesla]\ntoken_url = "https://auth.example/oauth2/v3/token"\n',
        '[mqtt]\nurl = "mqtt://chargebus@broker.example:1883"\n',
    ],
    ids=["no-secret", "empty-password", "token-url-is-not-a-token", "user-without-password"],
)
def test_a_readable_file_without_secrets_is_fine(tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str) -> None:
    path = write(tmp_path / "chargebus.toml", text, 0o644)
    caplog.set_level(logging.WARNING, logger="chargebus.config")
    load_config(FullConfig, path)
    assert warnings(caplog) == []


def test_a_readable_password_file_is_warned_about_not_the_config(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret_file = write(tmp_path / "mqtt-password", SECRET, 0o644)
    path = write(tmp_path / "chargebus.toml", f'[mqtt]\npassword_file = "{secret_file}"\n', 0o644)
    caplog.set_level(logging.WARNING, logger="chargebus.config")
    load_config(AllocatorServiceConfig, path)
    (line,) = warnings(caplog)
    assert f"file={secret_file} is a secret file (named by mqtt.password_file in {path})" in line
    assert f"chmod 600 {secret_file}" in line
    assert SECRET not in caplog.text


def test_a_readable_tesla_token_file_is_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    token_file = write(tmp_path / "tesla-token.json", '{"access_token": "a", "refresh_token": "r"}', 0o664)
    path = write(tmp_path / "chargebus.toml", f'[tesla]\ntoken_file = "{token_file}"\n', 0o600)
    caplog.set_level(logging.WARNING, logger="chargebus.config")
    load_config(TeslaBridgeConfig, path)
    (line,) = warnings(caplog)
    assert f"file={token_file} " in line
    assert "tesla.token_file" in line


def test_a_missing_secret_file_is_not_a_permission_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path / "chargebus.toml", f'[mqtt]\npassword_file = "{tmp_path / "nope"}"\n', 0o644)
    caplog.set_level(logging.WARNING, logger="chargebus.config")
    config_module.warn_if_secrets_readable(path, {"mqtt": {"password_file": str(tmp_path / "nope")}})
    assert warnings(caplog) == []


def test_the_service_prints_the_warning_at_start(tmp_path: Path) -> None:
    """As a user sees it: `chargebus config check` (the same loader the services use) prints one line on stderr."""
    path = write(tmp_path / "chargebus.toml", f'[mqtt]\npassword = "{SECRET}"\n', 0o644)
    result = subprocess.run(
        [sys.executable, "-m", "chargebus.cli", "config", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    lines = [line for line in result.stderr.splitlines() if "chmod 600" in line]
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0]
    assert SECRET not in result.stdout + result.stderr


def test_an_invalid_config_gets_its_problem_lines_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The service will not start: one line per problem (docs/contract.md §2), no warning in between."""
    path = write(tmp_path / "chargebus.toml", f'[mqtt]\npassword = "{SECRET}"\nkeepalive_s = 1\n', 0o644)
    caplog.set_level(logging.WARNING, logger="chargebus.config")
    with pytest.raises(ConfigError):
        load_config(AllocatorServiceConfig, path)
    assert warnings(caplog) == []
