"""TOFU schema: split loading (a local folder of official files, or a hub name).

Rows follow the official TOFU files (locuslab/TOFU): `question`, `answer`, and for the perturbed splits
`paraphrased_question`, `paraphrased_answer` and a `perturbed_answer` list. A local folder holds one file per
split, `NAME.json` (JSON lines or a JSON list), `NAME.jsonl`, `NAME.parquet` or `NAME/*.parquet`; a hub
name is read with `datasets.load_dataset(name, NAME, split="train")`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from harness.data.records import read_records

QA_FIELDS = ("question", "answer")
# What each evaluation split needs beyond QA_FIELDS: the truth ratio compares the paraphrased answer (forget,
# retain) or the answer itself (real authors, world facts) against the perturbed answers.
PERTURBED_FIELDS = {
    "forget": ("paraphrased_answer", "perturbed_answer"),
    "retain": ("paraphrased_answer", "perturbed_answer"),
    "real_authors": ("perturbed_answer",),
    "world_facts": ("perturbed_answer",),
    "holdout": (),
}
FORGET_SPLITS = ("forget01", "forget05", "forget10")


@dataclass
class TofuSplits:
    """What one TOFU run needs: training data (forget/retain) and the evaluation splits."""

    forget: list[dict]
    retain: list[dict]
    eval: dict[str, list[dict]]  # forget, retain, real_authors, world_facts, holdout
    forget_split: str


def _check_rows(rows: list[dict], where: str, fields: tuple[str, ...]) -> list[dict]:
    """At least one row; every row has the QA fields as strings and the perturbed fields as a string or list
    of strings."""
    if not rows:
        raise ValueError(f"{where}: no rows; expected at least one")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"{where}: row {i}: expected an object with fields {', '.join(QA_FIELDS + fields)}")
        for name in QA_FIELDS + fields:
            value = row.get(name)
            if name == "perturbed_answer":
                if not (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
                    raise ValueError(f"{where}: row {i}: field '{name}' is missing or not a list of strings")
            elif not isinstance(value, str):
                raise ValueError(f"{where}: row {i}: field '{name}' is missing or not a string")
    return rows


def read_split(path: Path, fields: tuple[str, ...] = ()) -> list[dict]:
    """Read one TOFU split file (JSON lines, a JSON list, or parquet) and check its fields."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such split file")
    return _check_rows(read_records(path), str(path), fields)


def split_files(folder: Path, name: str) -> list[Path]:
    """The files holding split `name` in a local folder (empty if there are none)."""
    for candidate in (folder / f"{name}.json", folder / f"{name}.jsonl", folder / f"{name}.parquet"):
        if candidate.is_file():
            return [candidate]
    return sorted((folder / name).glob("*.parquet")) if (folder / name).is_dir() else []


def load_split(source: str | Path, names: tuple[str, ...], fields: tuple[str, ...] = ()) -> list[dict]:
    """The first of `names` that `source` has (a local folder or a hub dataset name), checked."""
    folder = Path(source)
    if folder.is_dir():
        for name in names:
            files = split_files(folder, name)
            if files:
                return [row for f in files for row in read_split(f, fields)]
        raise FileNotFoundError(
            f"{folder / (names[0] + '.json')}: no such split file (looked for "
            f"{' or '.join(names)} as .json, .jsonl, .parquet or a folder of parquet files)"
        )
    if str(source).startswith((".", "/", "~")) or Path(source).suffix:
        raise FileNotFoundError(f"--data {source}: no such folder")
    return _load_hub(str(source), names, fields)


def _load_hub(repo: str, names: tuple[str, ...], fields: tuple[str, ...]) -> list[dict]:
    """A split from the hub (e.g. locuslab/TOFU, config forget10_perturbed); needs a network or a local cache."""
    import datasets

    errors = []
    for name in names:
        try:
            rows = datasets.load_dataset(repo, name, split="train").to_list()
        except Exception as err:
            errors.append(f"{name}: {type(err).__name__}")
            continue
        return _check_rows(rows, f"{repo}:{name}", fields)
    raise FileNotFoundError(f"--data {repo}: could not load {' or '.join(names)} from the hub ({'; '.join(errors)})")


def retain_split_for(forget_split: str) -> str:
    """forget10 -> retain90, as TOFU names them."""
    if forget_split not in FORGET_SPLITS:
        raise ValueError(f"forget split '{forget_split}': expected forget01, forget05 or forget10")
    return f"retain{100 - int(forget_split[6:]):02d}"


def load_splits(source: str | Path, forget_split: str = "forget10") -> TofuSplits:
    """Train on forgetNN/retainMM; evaluate on the perturbed splits (official `<name>_perturbed`, or `<name>`
    itself when it carries the perturbed fields, as the embedded world's files do) and holdoutNN."""
    retain_split, pct = retain_split_for(forget_split), forget_split[6:]
    evaluation = {
        "forget": (f"{forget_split}_perturbed", forget_split),
        "retain": ("retain_perturbed",),
        "real_authors": ("real_authors_perturbed", "real_authors"),
        "world_facts": ("world_facts_perturbed", "world_facts"),
        "holdout": (f"holdout{pct}",),
    }
    return TofuSplits(
        forget=load_split(source, (forget_split,)),
        retain=load_split(source, (retain_split,)),
        eval={split: load_split(source, names, PERTURBED_FIELDS[split]) for split, names in evaluation.items()},
        forget_split=forget_split,
    )


def write_official(world: dict[str, list[dict]], folder: Path, forget_split: str = "forget10") -> Path:
    """A generated world in the official TOFU files' names and schemas (for tests and `perf/`): plain splits
    carry question/answer only (forget as JSON lines, retain as a JSON list); the *_perturbed splits carry
    the perturbed fields (real authors as parquet, world facts as a folder of parquet)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    plain = lambda rows: [{k: r[k] for k in ("question", "answer")} for r in rows]  # noqa: E731
    jsonl = lambda name, rows: (folder / f"{name}.json").write_text("".join(json.dumps(r) + "\n" for r in rows))  # noqa
    pct = forget_split.removeprefix("forget")
    jsonl(forget_split, plain(world[forget_split]))
    jsonl(f"{forget_split}_perturbed", world[forget_split])
    retain = retain_split_for(forget_split)
    (folder / f"{retain}.json").write_text(json.dumps(plain(world[retain])))
    jsonl("retain_perturbed", world["retain_perturbed"])
    pq.write_table(pa.Table.from_pylist(world["real_authors"]), folder / "real_authors_perturbed.parquet")
    (folder / "world_facts_perturbed").mkdir(exist_ok=True)
    pq.write_table(pa.Table.from_pylist(world["world_facts"]), folder / "world_facts_perturbed" / "train.parquet")
    jsonl(f"holdout{pct}", plain(world[f"holdout{pct}"]))
    return folder
