"""Secrets: URLs fit for logs, and a warning when a file holding secrets is readable by others."""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("chargebus.config")


def redact_url(url: str) -> str:
    """A URL fit for logs and messages: any password replaced by ***."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return "***"
    return parts._replace(netloc=netloc).geturl()


SECRET_WORDS = ("password", "secret", "token", "api_key")
#: Files already warned about in this process: one warning each, however often the config is read.
_warned_readable: set[Path] = set()


def _leaves(table: dict[str, Any], where: str = "") -> Iterator[tuple[str, str, Any]]:
    """(dotted key, key, value) of every scalar in a TOML tree, arrays of tables included."""
    for key, value in table.items():
        dotted = f"{where}{key}"
        if isinstance(value, dict):
            yield from _leaves(value, f"{dotted}.")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, dict):
                    yield from _leaves(item, f"{dotted}.{index}.")
        else:
            yield dotted, key.lower(), value


def _has_password(url: str) -> bool:
    try:
        return urlsplit(url).password is not None
    except ValueError:
        return False


def _secret_keys(raw: dict[str, Any]) -> tuple[list[str], list[tuple[str, str]]]:
    """Dotted keys holding a secret value, and (key, path) of the files named as holding one (`*password_file`,
    `token_file`). A URL counts when it carries a password (`mqtt://u:p@host`)."""
    keys: list[str] = []
    files: list[tuple[str, str]] = []
    for dotted, key, value in _leaves(raw):
        if not isinstance(value, str) or not value:
            continue
        if key.endswith("url"):
            if _has_password(value):
                keys.append(dotted)
        elif any(word in key for word in SECRET_WORDS):
            if key.endswith("_file"):
                files.append((dotted, value))
            else:
                keys.append(dotted)
    return keys, files


def _readable_by_others(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & stat.S_IROTH)
    except OSError:
        return False


def warn_if_secrets_readable(config_path: Path, raw: dict[str, Any]) -> list[str]:
    """Warn (once per file) when the config file holds a secret, or names a secret file, that other users of the
    machine can read. Returns the warnings given now (for tests)."""
    keys, files = _secret_keys(raw)
    found: list[tuple[Path, str]] = []
    if keys and _readable_by_others(config_path):
        found.append((config_path, f"holds secrets ({', '.join(keys)})"))
    for key, name in files:
        secret_file = Path(name)
        if _readable_by_others(secret_file):
            found.append((secret_file, f"is a secret file (named by {key} in {config_path})"))
    warnings = []
    for path, why in found:
        if path.absolute() in _warned_readable:
            continue
        _warned_readable.add(path.absolute())
        line = (
            f"config: warning: file={path} {why} and can be read by every user of this machine "
            f"(mode {stat.S_IMODE(path.stat().st_mode):04o}); fix: chmod 600 {path}"
        )
        log.warning(line)
        warnings.append(line)
    return warnings
