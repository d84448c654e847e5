"""Reading a data file's rows, whichever benchmark's it is: JSON lines, a JSON list, or parquet. A file that
cannot be read as its kind is one error line naming it."""

from __future__ import annotations

import json
from pathlib import Path

from harness.rules import shown


def read_records(path: Path) -> list:
    """A data file's rows, unchecked (each benchmark's loader checks its own fields)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except (ValueError, OSError) as err:  # pyarrow's ArrowInvalid and ArrowIOError are these
            raise ValueError(f"{path}: not a readable parquet file ({shown(str(err).splitlines()[0])})") from None
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path}: not UTF-8 text (byte {err.start}: {err.reason}); expected JSON or JSON lines in UTF-8"
        ) from None
    try:
        return (
            json.loads(text)
            if text.lstrip().startswith("[")
            else [json.loads(line) for line in text.splitlines() if line.strip()]
        )
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON or JSON lines ({shown(err)})") from None
