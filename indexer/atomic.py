"""Files written whole or not at all: the one helper every writer of the data directory uses."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def write_atomic(path: Path, text: str, sync: bool = False) -> None:
    """Write `text` to `path` through a temporary file renamed over it: a reader sees the old
    file or the new one, never part of one. sync: on disk (fsync) before the rename. A
    directory in the way (a damaged data directory) is removed."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        if sync:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(tmp, path)
