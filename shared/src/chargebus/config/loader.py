"""Finding, reading and validating the file: one line per problem, exit code 2."""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path
from typing import Any

from pydantic import (
    ValidationError,
)

from chargebus.config.common import CONFIG_ENV, DEFAULT_CONFIG_FILE, EXIT_CONFIG_ERROR
from chargebus.config.secrets import SECRET_WORDS, redact_url, warn_if_secrets_readable
from chargebus.config.services import KNOWN_TOP_LEVEL, ConfigT


class ConfigError(Exception):
    """An invalid configuration: one human-readable line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def resolve_config_path(explicit: str | Path | None) -> tuple[Path, bool]:
    """The config file to read, and whether the user asked for it (then it must exist)."""
    if explicit:
        return Path(explicit), True
    if env := os.environ.get(CONFIG_ENV):
        return Path(env), True
    return Path(DEFAULT_CONFIG_FILE), False


def _read_toml(path: Path, required: bool) -> dict[str, Any]:
    if not path.exists():
        if required:
            raise ConfigError([f"config: file {path} does not exist"])
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"config: {path} is not valid TOML: {exc}"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"config: cannot read {path}: {exc}"]) from None


def _show_value(value: Any, key: str) -> str:
    if any(word in key for word in SECRET_WORDS) and "file" not in key and "url" not in key:
        return "***"
    if isinstance(value, str) and "@" in value:
        value = redact_url(value)
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _describe(error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors(include_url=False):
        key = ".".join(str(part) for part in item["loc"])
        why = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            why = "unknown key (misspelt?)"
        if item["type"] == "missing":
            lines.append(f"config: {key}: missing")
        elif item["type"] in {"model_type", "model_attributes_type"} or not key:
            lines.append(f"config: {key or '(top level)'}: {why}")
        else:
            lines.append(f"config: {key} = {_show_value(item.get('input'), key)}: {why}")
    return lines


def load_config(
    config_cls: type[ConfigT],
    path: str | Path | None = None,
) -> ConfigT:
    """Read and validate the sections `config_cls` needs. Raises ConfigError with one line per problem."""
    config_path, required = resolve_config_path(path)
    raw = _read_toml(config_path, required)
    unknown = sorted(set(raw) - KNOWN_TOP_LEVEL)
    problems = [
        f"config: {key}: unknown section or key (known: {', '.join(sorted(KNOWN_TOP_LEVEL))})" for key in unknown
    ]
    relevant = {key: value for key, value in raw.items() if key in config_cls.SECTIONS}
    try:
        config = config_cls(**relevant)
    except ValidationError as exc:
        problems += _describe(exc)
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    # Only a config that starts a service is worth the warning; an invalid one gets its problem lines alone.
    warn_if_secrets_readable(config_path, raw)
    return config


def load_or_exit(config_cls: type[ConfigT], path: str | Path | None = None) -> ConfigT:
    """`load_config`, but print the problems to stderr and exit 2: what a service does at start."""
    try:
        return load_config(config_cls, path)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)  # noqa: T201 - the user's terminal is the audience
        sys.exit(EXIT_CONFIG_ERROR)
