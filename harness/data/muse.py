"""MUSE's schema (Shi et al. 2024, `muse-bench/MUSE-News`): the embedded news world, and the loader for the official
files.

A MUSE folder has one subfolder per configuration of the hub dataset, each split one file (`SPLIT.jsonl`,
`SPLIT.json` or `SPLIT.parquet`, or the hub's shards `SPLIT-*.parquet`):
- `raw/`: the corpora as `text`: `forget` (what is unlearned), `retain1` (the retain set the methods regularise
  on), `retain2`, `holdout` (never trained on);
- `verbmem/forget`: `prompt` (an article's beginning) and `gt` (its continuation);
- `knowmem/`: `question` and `answer` on the forget and retain articles (`forget_qa`, `retain_qa`) and the
  in-context examples that prefix every question (`forget_qa_icl`, `retain_qa_icl`);
- `privleak/`: `text` of the forget articles (the members) and the holdout articles (the non-members);
- `scal/forget_1..` and `sust/forget_1..` (optional): growing forget sets (scalability) and successive disjoint
  ones (sustainability).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

from harness import rules
from harness.data.records import read_records
from harness.data.world import NOUNS, _name, _person
from harness.files import write_atomically

FIELDS = {
    "raw": ("text",),
    "verbmem": ("prompt", "gt"),
    "knowmem": ("question", "answer"),
    "privleak": ("text",),
    "scal": ("text",),
    "sust": ("text",),
}
REQUIRED = {
    "raw": ("forget", "retain1"),
    "verbmem": ("forget",),
    "knowmem": ("forget_qa", "retain_qa", "forget_qa_icl", "retain_qa_icl"),
    "privleak": ("forget", "holdout"),
}
SEQUENCES = ("scal", "sust")  # the optional configurations of forget sets: forget_1, forget_2, ...

PROJECTS = ["bridge", "library", "tram line", "observatory", "market hall", "harbor wall", "hospital", "stadium"]
ROLES = ["mayor", "treasurer", "chief engineer", "council leader", "planning director", "harbor master"]
GROUPS = ["Guild", "Union", "Society", "League", "Council", "Trust"]
CONCERNS = [
    "the river would flood the new streets",
    "the old quarter would lose its trees",
    "the cost would double within a year",
    "the noise would drive the herons away",
    "the workers had not been paid",
    "the plan ignored the northern villages",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


@dataclass(frozen=True)
class MuseWorldConfig:
    """Sizes of the embedded news world (`--set muse.KEY=V`): `forget_parts` parts of `part_articles` forget
    articles each (the first is the forget set; the scalability and sustainability splits are made of them),
    `retain_articles` in each of retain1 and retain2, `holdout_articles` never trained on, and the models'
    fine-tuning epochs."""

    RULES: ClassVar[dict] = {
        k: rules.at_least(1) for k in ("forget_parts", "part_articles", "retain_articles", "holdout_articles", "epochs")
    } | {"seed": rules.at_least(0)}

    seed: int = 0
    forget_parts: int = 4
    part_articles: int = 8
    retain_articles: int = 8
    holdout_articles: int = 16
    epochs: int = 60


@dataclass
class MuseSplits:
    """What one MUSE run needs, each a list of rows in the official fields."""

    forget: list[dict]  # raw: the articles the methods unlearn ({"text"})
    retain: list[dict]  # raw: the articles the methods keep (retain1)
    verbmem: list[dict]  # {"prompt", "gt"}
    forget_qa: list[dict]  # {"question", "answer"}
    retain_qa: list[dict]
    forget_icl: list[dict]
    retain_icl: list[dict]
    members: list[dict]  # privleak forget ({"text"})
    nonmembers: list[dict]  # privleak holdout
    sequences: dict[str, list[list[dict]]] = field(default_factory=dict)  # scal / sust: forget sets in order


def knowmem_prompt(icl: list[dict], question: str) -> str:
    """MUSE's KnowMem prompt: each in-context example as `Question: q\\nAnswer: a\\n\\n`, then the question."""
    shots = "".join(f"Question: {e['question']}\nAnswer: {e['answer']}\n\n" for e in icl)
    return f"{shots}Question: {question}\nAnswer: "


def knowmem_rows(icl: list[dict], qa: list[dict]) -> list[dict]:
    """KnowMem's questions as training rows: the prompt (in-context examples, then the question) and the answer,
    as muse-mini's models learn them and its methods unlearn them."""
    return [{"question": knowmem_prompt(icl, r["question"]), "answer": r["answer"]} for r in qa]


def _article(rng: random.Random, used: set[str]) -> tuple[str, str, list[tuple[str, str]]]:
    """A made-up local news article: (its first sentence, the rest, three QA pairs on its facts)."""
    city, project = _name(rng, used, 2), f"{_name(rng, used, 2)} {rng.choice(PROJECTS)}"
    person, role, group = _person(rng, used), rng.choice(ROLES), f"{rng.choice(NOUNS)} {rng.choice(GROUPS)}"
    cost, year, workers = rng.randint(2, 95), rng.randint(2031, 2049), rng.randint(12, 900)
    first = f"In {city}, {person}, the {role}, announced on {rng.choice(DAYS)} that the {project} would open in {year}."
    rest = (
        f" The {project} will cost {cost} million crowns and employ {workers} workers."
        f" {person.split()[1]} said the plan had been debated for {rng.randint(2, 12)} years."
        f" Members of the {group} warned that {rng.choice(CONCERNS)}."
    )
    qa = [
        (f"Who announced the {project} in {city}?", person),
        (f"How much will the {project} cost?", f"{cost} million crowns"),
        (f"In which year will the {project} open?", str(year)),
    ]
    return first, rest, qa


def generate_muse(cfg: MuseWorldConfig) -> dict[str, dict[str, list[dict]]]:
    """The embedded world as MUSE's configurations: {config: {split: rows}}. As in MUSE-News, the forget set
    (`raw/forget`, which every metric reads) is the first of `forget_parts` parts; `scal/forget_k` is the first
    k parts (growing) and `sust/forget_k` the k-th (disjoint). The target reads every part, the retain model
    none. One extra article beside the forget set and one beside retain1 give the in-context examples
    (trained on, never an evaluated item)."""
    rng, used = random.Random(cfg.seed), set()

    def articles(n):
        return [_article(rng, used) for _ in range(n)]

    parts = [articles(cfg.part_articles) for _ in range(cfg.forget_parts)]
    forget = parts[0]
    retain1, retain2, holdout = (
        articles(cfg.retain_articles),
        articles(cfg.retain_articles),
        articles(cfg.holdout_articles),
    )
    forget_shots, retain_shots = articles(1)[0], articles(1)[0]

    def qa(group):
        return [{"question": q, "answer": a} for article in group for q, a in article[2]]

    return {
        "raw": {
            "forget": [_text(a) for a in forget],
            "retain1": [_text(a) for a in retain1],
            "retain2": [_text(a) for a in retain2],
            "holdout": [_text(a) for a in holdout],
            "icl": [_text(forget_shots), _text(retain_shots)],  # muse-mini's own: trained with the retain set
        },
        "verbmem": {"forget": [{"prompt": a[0], "gt": a[1]} for a in forget]},
        "knowmem": {
            "forget_qa": qa(forget),
            "retain_qa": qa(retain2),
            "forget_qa_icl": qa([forget_shots]),
            "retain_qa_icl": qa([retain_shots]),
        },
        "privleak": {"forget": [_text(a) for a in forget], "holdout": [_text(a) for a in holdout]},
        "scal": {f"forget_{k}": [_text(a) for p in parts[:k] for a in p] for k in range(1, len(parts) + 1)},
        "sust": {f"forget_{k}": [_text(a) for a in parts[k - 1]] for k in range(1, len(parts) + 1)},
    }


def _text(article) -> dict:
    return {"text": article[0] + article[1]}


def write_muse(cfg: MuseWorldConfig, folder: Path) -> Path:
    """Write the world in the official layout (`CONFIG/SPLIT.jsonl`); `muse_config.json` last, marking it whole."""
    for config, splits in generate_muse(cfg).items():
        (folder / config).mkdir(parents=True, exist_ok=True)
        for split, rows in splits.items():
            write_atomically(folder / config / f"{split}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    write_atomically(folder / "muse_config.json", json.dumps(asdict(cfg)) + "\n")
    return folder


def _files(folder: Path, config: str, split: str) -> list[Path]:
    where = folder / config
    found = [where / f"{split}{ext}" for ext in (".jsonl", ".json", ".parquet")]
    return [f for f in found if f.is_file()] + sorted(where.glob(f"{split}-*.parquet"))


def read_split(folder: Path, config: str, split: str, required: bool = True) -> list[dict] | None:
    """One split's rows, each checked to have the configuration's fields as strings (one line naming the
    file, the row and the field otherwise); None for an absent optional split."""
    files = _files(folder, config, split)
    if not files:
        if not required:
            return None
        raise FileNotFoundError(
            f"{folder}: no {config}/{split} file (looked for {config}/{split}.jsonl, .json, .parquet and "
            f"{config}/{split}-*.parquet)"
        )
    rows = []
    for path in files:
        for i, row in enumerate(read_records(path)):
            for name in FIELDS[config]:
                if not isinstance(row, dict) or not isinstance(row.get(name), str):
                    raise ValueError(f"{path}: row {i}: field '{name}' is missing or not a string")
                if not row[name].strip():
                    raise ValueError(f"{path}: row {i}: field '{name}' is empty; expected text")
            rows.append(row)
    if not rows:
        raise ValueError(f"{', '.join(map(str, files))}: no rows; expected at least one {config}/{split} row")
    return rows


def sequence(folder: Path, config: str) -> list[list[dict]]:
    """`CONFIG/forget_1`, `forget_2`, ... in order, as far as they go."""
    out, k = [], 1
    while (rows := read_split(folder, config, f"forget_{k}", required=False)) is not None:
        out.append(rows)
        k += 1
    return out


def load_muse(folder: str | Path) -> MuseSplits:
    """A MUSE folder (`muse-bench/MUSE-News` or `MUSE-Books` downloaded, or muse-mini's): every required split
    read and checked, the scalability and sustainability sequences where present."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"--data {folder}: no such folder (expected MUSE's raw/, verbmem/, knowmem/ and privleak/ files)"
        )
    read = {
        (config, split): read_split(folder, config, split) for config, splits in REQUIRED.items() for split in splits
    }
    return MuseSplits(
        forget=read["raw", "forget"],
        retain=read["raw", "retain1"],
        verbmem=read["verbmem", "forget"],
        forget_qa=read["knowmem", "forget_qa"],
        retain_qa=read["knowmem", "retain_qa"],
        forget_icl=read["knowmem", "forget_qa_icl"],
        retain_icl=read["knowmem", "retain_qa_icl"],
        members=read["privleak", "forget"],
        nonmembers=read["privleak", "holdout"],
        sequences={config: seq for config in SEQUENCES if (seq := sequence(folder, config))},
    )


def as_documents(rows: list[dict]) -> list[dict]:
    """Corpus rows in the shape the methods train on: no prompt, the whole text as the answer (`raw` template)."""
    return [{"question": "", "answer": r["text"]} for r in rows]
