"""Writing files safely, in one place: atomically (to a temporary name in the same folder, then renamed into
place), uninterrupted (Ctrl-C waits for the file being written), and one writer per run folder (a lock). Every
file the harness writes goes through here (a model folder: the same pattern in harness/checkpoints.py), so a
kill or a full disk leaves the old file or none, never a cut one. No torch, no pandas: the data generators
use it too."""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import socket
import tempfile
import threading
import time
from contextlib import contextmanager
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


@contextmanager
def uninterrupted():
    """Hold Ctrl-C and SIGTERM until the block is done, then raise KeyboardInterrupt: a cell's files are written
    whole before the run stops (main thread only; elsewhere the atomic renames still leave no partial file)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = {
        s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if caught:
            raise KeyboardInterrupt


def check_writable(folder: Path) -> None:
    """Fail before any work when the run folder cannot be written (tried with a temporary file in it or in
    its nearest existing parent); nothing is left behind."""
    existing = next(p for p in [folder, *folder.parents] if p.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"{existing} is a file")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise OSError(f"--out {folder}: cannot write there ({err.strerror or err})") from None


@contextmanager
def locked(out_dir: Path, wait: bool = False):
    """Hold an advisory lock on the run folder (`OUT/.lock`, naming its holder), so two processes never run
    the same cells; a second one says who holds it and stops, or waits with `wait`. A folder this created
    and left with nothing but the lock is removed again."""
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ".lock"
    try:
        with open(path, "a+", encoding="utf-8") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise RuntimeError(
                    f"--out {out_dir}: in use by {holder}; wait for it to finish, or pass --wait"
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
            handle.flush()
            try:
                yield
            finally:
                handle.seek(0)
                handle.truncate()
                fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        if created and [p.name for p in out_dir.iterdir()] == [".lock"]:
            path.unlink()
            out_dir.rmdir()


EXIT_ENVIRONMENT = 74  # sysexits.h's EX_IOERR: the machine failed the run (a full disk, access lost), not its input
FULL = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS)  # never the input's fault
DENIED = (errno.EACCES, errno.EPERM)  # the input's when a given path is unreadable; the machine's once checked


def environment_fault(err: OSError, checked: bool) -> bool:
    """Whether an OS error is the machine's: a full or failing disk at any time, access refused after every
    input was checked (bad input is exit 2, this is EXIT_ENVIRONMENT)."""
    return err.errno in FULL or (checked and err.errno in DENIED)
