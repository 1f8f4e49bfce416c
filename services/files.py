"""Atomic file writes: the one way ComfyPod replaces a small file on the volume.

The data goes to a uniquely named temp file in the same folder (so the rename is atomic and two
writers never share a temp file), is flushed to disk, gets its mode, and replaces the target. On
any failure (a full disk, a read-only volume) the temp file is removed, the old file is left as it
was, and the ``OSError`` goes to the caller, which turns it into its own one-line error.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: str | os.PathLike[str], data: str | bytes, *, mode: int = 0o644) -> Path:
    """Replace ``path`` with ``data`` (text is written as UTF-8) in one rename; return the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return target
