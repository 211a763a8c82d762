"""Small JSON state files (runtime overrides, tokens, rate-limit deadlines) that a crash never leaves half written.

Every write goes to a temporary file in the same directory, created 0600 (a token file is never readable by others,
not even for a moment), is flushed to disk, and is then renamed over the old file; the directory entry is synced
too, so the rename survives a power cut. A refresh token is single-use: a torn write would lock the user out.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

PRIVATE_MODE = 0o600


def write_json(path: Path, data: Any, *, indent: int | None = None) -> None:
    """Replace `path` atomically with `data` as JSON, mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()  # left by a crash of this very pid number: never ours to keep
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=indent)
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())
        temporary.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    _sync_directory(path.parent)


def read_json(path: Path) -> Any:
    """The JSON content of `path`; FileNotFoundError, other OSErrors and ValueError are the caller's to explain."""
    return json.loads(path.read_text(encoding="utf-8"))


def read_json_if_present(path: Path) -> Any | None:
    """As `read_json`, but None when the file does not exist (nothing stored yet)."""
    try:
        return read_json(path)
    except FileNotFoundError:
        return None


def _sync_directory(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk; not every platform allows this.
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
