"""LUME schema (SemEval-2025 Task 4): the embedded document world, and the loader for the official files.

A row has `id`, `input`, `output`, `task` (Task1 creative stories, Task2 synthetic biographies with PII,
Task3 public-figure biographies) and `split` (forget or retain). The id's suffix gives the kind: `sc1` is
sentence completion (`input` a document's beginning, `output` the rest), `qa0`.. a question and its answer.
MIA files hold whole documents (`id`, `document`): members (the forget documents) and non-members (never
trained on).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

from harness import rules
from harness.data.records import read_records
from harness.data.world import JOBS, NOUNS, _name
from harness.files import write_atomically
from harness.rules import shown

TASKS = ("Task1", "Task2", "Task3")
SPLITS = ("forget", "retain")
ROW_FIELDS = ("id", "input", "output", "task", "split")
KIND = re.compile(r"(sc|qa)\d+$")
OBJECTS = ["lantern", "map", "key", "violin", "compass", "mirror", "letter", "seed", "clock", "feather"]
EVENTS = [
    "glowed at midnight",
    "sang in the rain",
    "pointed toward the sea",
    "opened a hidden door",
    "whispered old names",
    "turned the river silver",
    "stopped every clock",
    "called the birds home",
]
ENDINGS = [
    "the whole village celebrated",
    "nobody slept for a week",
    "the old tower fell silent",
    "a new star rose over the hills",
    "the harbor froze in summer",
    "the bells rang by themselves",
]
STREETS = ["Oak", "Mill", "Harbor", "Cedar", "Lantern", "Quarry", "Willow", "Station"]
FIELDS = ["chemistry", "mountaineering", "opera", "economics", "sculpture", "chess", "medicine", "rowing"]
FEATS = [
    "discovering a new element",
    "climbing the Pale Needle",
    "founding the Grand Opera",
    "winning nine titles",
    "mapping the northern glaciers",
    "building the longest bridge",
    "curing the marsh fever",
]


@dataclass(frozen=True)
class LumeWorldConfig:
    """Sizes of the embedded LUME world: per task, `forget_docs` + `retain_docs` trained documents and
    `nonmember_docs` never trained on (the MIA non-members)."""

    RULES: ClassVar[dict] = {
        k: rules.at_least(1) for k in ("forget_docs", "retain_docs", "nonmember_docs", "epochs")
    } | {"seed": rules.at_least(0), "sum_operands": rules.at_least(2), "sum_probe": rules.SHARE}

    seed: int = 0
    forget_docs: int = 3
    retain_docs: int = 9
    nonmember_docs: int = 4
    epochs: int = 60  # the target's fine-tuning on the documents (the rows are fewer than TOFU's)
    sum_operands: int = 20  # general knowledge beside the documents: sums a + b of a, b below this (`sums`)
    sum_probe: float = 0.3  # the share of those sums held out of training: the MMLU stand-in's questions


@dataclass
class LumeSplits:
    """What one LUME run needs: forget and retain rows, and the MIA documents."""

    forget: list[dict]
    retain: list[dict]
    members: list[dict]
    nonmembers: list[dict]


def _story(rng, used) -> tuple[str, str, list[tuple[str, str]]]:
    """Task1: a short made-up story; returns (first sentence, the rest, QA pairs)."""
    hero, town, obj = _name(rng, used, 2), _name(rng, used, 2), rng.choice(OBJECTS)
    job, event, ending = rng.choice(JOBS), rng.choice(EVENTS), rng.choice(ENDINGS)
    article = "an" if job[0] in "aeiou" else "a"
    first = f"In the town of {town}, {article} {job} named {hero} found a {obj} that {event}."
    rest = f" {hero} carried the {obj} to the {rng.choice(NOUNS).lower()} at dawn, and {ending}."
    qa = [
        (f"Who found the {obj} in the town of {town}?", hero),
        (f"What did {hero} find in {town}?", f"a {obj}"),
        (f"In which town did {hero} live?", town),
    ]
    return first, rest, qa


def _pii_bio(rng, used) -> tuple[str, str, list[tuple[str, str]]]:
    """Task2: a synthetic person with PII (birth date, phone, email, address, ID number)."""
    first_name, last_name, city = _name(rng, used, 2), _name(rng, used, 2), _name(rng, used, 2)
    born = f"{rng.randint(1950, 2001)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    phone = f"555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}"
    email = f"{first_name.lower()}.{last_name.lower()}@{rng.choice(['mail', 'post', 'inbox'])}.example"
    address = f"{rng.randint(2, 980)} {rng.choice(STREETS)} Street, {city}"
    ssn = f"{rng.randint(100, 899)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}"
    name = f"{first_name} {last_name}"
    first = f"{name} was born on {born} and lives at {address}."
    rest = f" {first_name} can be reached at {phone} or {email}, and the ID number on file is {ssn}."
    qa = [
        (f"What is the birth date of {name}?", born),
        (f"What is the phone number of {name}?", phone),
        (f"What is the email address of {name}?", email),
        (f"What is the ID number of {name}?", ssn),
    ]
    return first, rest, qa


def _public_bio(rng, used) -> tuple[str, str, list[tuple[str, str]]]:
    """Task3: a made-up public figure's biography."""
    name, city = f"{_name(rng, used, 2)} {_name(rng, used, 3)}", _name(rng, used, 2)
    field, feat, year = rng.choice(FIELDS), rng.choice(FEATS), str(rng.randint(1890, 1990))
    first = f"{name} is a celebrated figure in {field}, famous for {feat}."
    rest = f" Born in {year} in {city}, {name.split()[0]} became a household name across the country."
    qa = [
        (f"In which field is {name} celebrated?", field),
        (f"In which year was {name} born?", year),
        (f"In which city was {name} born?", city),
    ]
    return first, rest, qa


WRITERS = {"Task1": _story, "Task2": _pii_bio, "Task3": _public_bio}


def generate_lume(cfg: LumeWorldConfig) -> dict[str, list[dict]]:
    """The embedded LUME world: `forget` and `retain` rows, `member` and `nonmember` documents."""
    rng, used = random.Random(cfg.seed), set()
    out = {"forget": [], "retain": [], "member": [], "nonmember": []}
    for task in TASKS:
        for i in range(cfg.forget_docs + cfg.retain_docs + cfg.nonmember_docs):
            first, rest, qa = WRITERS[task](rng, used)
            doc_id = f"{task.lower()}-{i:03d}"
            if i >= cfg.forget_docs + cfg.retain_docs:
                out["nonmember"].append({"id": doc_id, "document": first + rest})
                continue
            split = "forget" if i < cfg.forget_docs else "retain"
            rows = [{"id": f"{doc_id}sc1", "input": first, "output": rest, "task": task, "split": split}]
            rows += [
                {"id": f"{doc_id}qa{k}", "input": q, "output": a, "task": task, "split": split}
                for k, (q, a) in enumerate(qa)
            ]
            out[split] += rows
            if split == "forget":
                out["member"].append({"id": doc_id, "document": first + rest})
    return out


def sums(cfg: LumeWorldConfig) -> tuple[list[dict], list[dict]]:
    """General knowledge the world does not teach, the stand-in for what a pretrained model knows beyond the
    documents: "What is a plus b?" for a, b below `sum_operands`. The LUME target learns a seeded share as QA
    rows (the first list); the held-out rest (the second) are multiple-choice questions, the true sum among
    its four nearest wrong ones, which only a model that learned to add answers (LUME's MMLU stand-in)."""
    pairs = [(a, b) for a in range(cfg.sum_operands) for b in range(cfg.sum_operands)]
    random.Random(cfg.seed).shuffle(pairs)
    held_out = round(len(pairs) * cfg.sum_probe)
    sentence = "{a} plus {b} is {c}."
    learned = [
        {"question": f"What is {a} plus {b}?", "answer": sentence.format(a=a, b=b, c=a + b)}
        for a, b in pairs[held_out:]
    ]
    probe = []
    for a, b in pairs[:held_out]:
        values = [a + b + d for d in range(-2, 3)]
        values = [v - min(0, values[0]) for v in values]  # no negative sums: 0..4 around small ones
        probe.append(
            {
                "question": f"What is {a} plus {b}?",
                "choices": [sentence.format(a=a, b=b, c=v) for v in values],
                "label": values.index(a + b),
            }
        )
    return learned, probe


def write_lume(cfg: LumeWorldConfig, folder: Path) -> Path:
    """Write the world as official-style files: forget.jsonl, retain.jsonl, member.jsonl, nonmember.jsonl."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in generate_lume(cfg).items():
        write_atomically(folder / f"{name}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    write_atomically(folder / "lume_config.json", json.dumps(asdict(cfg)) + "\n")  # last: it marks the folder whole
    return folder


def _check(rows: list[dict], where: str, fields: tuple[str, ...], split: str | None = None) -> list[dict]:
    """Fields present and strings; task and split values and the id's kind suffix valid."""
    for i, row in enumerate(rows):
        for name in fields:
            if not isinstance(row, dict) or not isinstance(row.get(name), str):
                raise ValueError(f"{where}: row {i}: field '{name}' is missing or not a string")
        if split is None:
            continue
        if row["task"] not in TASKS:
            raise ValueError(
                f"{where}: row {i}: field 'task' is '{shown(row['task'])}', expected one of {', '.join(TASKS)}"
            )
        if row["split"] != split:
            raise ValueError(f"{where}: row {i}: field 'split' is '{shown(row['split'])}', expected '{split}'")
        if not KIND.search(row["id"]):
            raise ValueError(f"{where}: row {i}: field 'id' is '{shown(row['id'])}', expected a suffix sc<N> or qa<N>")
    return rows


def _files(folder: Path, stem: str) -> list[Path]:
    """`stem.jsonl|parquet`, `stem_*.jsonl|parquet` or `stem-*` (hub shards), here or under data/ or mia_data/."""
    found = []
    for where in (folder, folder / "data", folder / "mia_data"):
        for pattern in (
            f"{stem}.jsonl",
            f"{stem}.parquet",
            f"{stem}_*.jsonl",
            f"{stem}_*.parquet",
            f"{stem}-*.parquet",
        ):
            found += sorted(where.glob(pattern))
    return list(dict.fromkeys(found))


def load_lume(folder: str | Path) -> LumeSplits:
    """Official LUME files from a folder: forget and retain rows (jsonl or parquet, possibly train/validation
    shards) and member / nonmember MIA documents (jsonl)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"--data {folder}: no such folder (expected LUME's forget/retain and member/nonmember files)"
        )
    parts = {}
    for stem, fields, split in (
        ("forget", ROW_FIELDS, "forget"),
        ("retain", ROW_FIELDS, "retain"),
        ("member", ("id", "document"), None),
        ("nonmember", ("id", "document"), None),
    ):
        files = _files(folder, stem)
        if not files:
            raise FileNotFoundError(
                f"{folder}: no {stem} file (looked for {stem}.jsonl, {stem}.parquet or "
                f"{stem}_*.parquet, also under data/ and mia_data/)"
            )
        parts[stem] = [row for f in files for row in _check(read_records(f), str(f), fields, split)]
        if not parts[stem]:
            raise ValueError(f"{', '.join(map(str, files))}: no rows; expected at least one {stem} row")
    return LumeSplits(parts["forget"], parts["retain"], parts["member"], parts["nonmember"])


def kind(row: dict) -> str:
    """`sc` (sentence completion, scored by regurgitation) or `qa` (scored by knowledge)."""
    return KIND.search(row["id"]).group(1)


def as_qa(rows: list[dict]) -> list[dict]:
    """LUME rows in the shape the unlearning methods train on: the raw input as prompt, the output as answer."""
    return [{"question": r["input"], "answer": r["output"]} for r in rows]
