"""Progress that reads well in both places it is seen: a tqdm bar on a terminal, and in a log (CI, a file,
a pipe) no bar at all, so no cursor-control lines, only the plain lines `note` prints."""

from __future__ import annotations

import functools
import sys

from tqdm.auto import tqdm

progress = functools.partial(tqdm, disable=None)  # tqdm's own switch: None turns the bar off when not a TTY


def note(line: str) -> None:
    """One line on stderr, printed above any bars (a bar's last state stays below it)."""
    tqdm.write(line, file=sys.stderr)


WARNINGS: list[str] = []  # this process's warnings, repeated in the run's summary (they scroll away under bars)


def warn(message: str) -> None:
    """`warning: message` above any bars, kept for the summary at the end of the run."""
    WARNINGS.append(message)
    note(f"warning: {message}")


def quiet_libraries_in_logs() -> None:
    """In a log, transformers' own loading and saving bars go too."""
    if not sys.stderr.isatty():
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
