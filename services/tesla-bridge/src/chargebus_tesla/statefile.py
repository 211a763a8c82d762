"""Small private JSON files (tokens, rate-limit deadline) written so that a crash never leaves half a file.

A refresh token is single-use: losing the new one to a torn write locks the user out until they log in again.
So every write goes to a temporary file in the same directory (created 0600, never readable by others even for
a moment), is flushed to disk, and then atomically renamed over the old file.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

PRIVATE_MODE = 0o600


def write_private_json(path: Path, data: Any) -> None:
    """Replace `path` atomically with `data` as JSON, mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            json.dump(data, stream)
            stream.flush()
            os.fsync(stream.fileno())
        temporary.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    _sync_directory(path.parent)


def read_json(path: Path) -> Any:
    """The JSON content of `path`; OSError / ValueError are the caller's to explain."""
    return json.loads(path.read_text(encoding="utf-8"))


def _sync_directory(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk; not every platform allows this.
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
