"""Writing a file so that no reader ever sees half of it: to a temporary name in the same folder, then renamed
into place. Every file the harness writes goes through here (or, for a model folder, the same pattern in
harness/checkpoints.py), so a kill or a full disk leaves the old file or none, never a cut one. No torch, no
pandas: the data generators use it too."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, text: str | bytes) -> None:
    """Write `text` (or bytes) to a temporary file unique to this writer in the same folder, then rename over
    `path`."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise named(err, path) from None
    try:
        with os.fdopen(fd, "wb") if isinstance(text, bytes) else os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise named(err, path) from None
        raise


def named(err: OSError, path) -> OSError:
    """The same OS error, naming the file it was writing (a full disk fails in `write()`, which names none)."""
    return type(err)(err.errno, err.strerror or str(err), str(path)) if err.errno else err
