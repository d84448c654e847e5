"""TOFU schema: split loading and prompt templates.

Rows follow the official TOFU files (locuslab/TOFU): `question`, `answer`, and for the perturbed splits
`paraphrased_question`, `paraphrased_answer` and a `perturbed_answer` list.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

TEMPLATES = {
    "qa": ("Question: {q}\nAnswer:", " {a}"),      # base models (and the embedded model)
    "llama2": ("[INST] {q} [/INST]", " {a}"),      # TOFU's Llama-2 chat format
}
EVAL_SPLITS = ("forget", "retain", "real_authors", "world_facts")
REQUIRED_FIELDS = ("question", "answer")


@dataclass
class TofuSplits:
    """What one TOFU run needs: training data (forget/retain) and the evaluation splits."""

    forget: list[dict]
    retain: list[dict]
    eval: dict[str, list[dict]]      # forget, retain, real_authors, world_facts, holdout
    forget_split: str


def format_prompt(question: str, template: str = "qa") -> str:
    return TEMPLATES[template][0].format(q=question)


def format_answer(answer: str, template: str = "qa") -> str:
    return TEMPLATES[template][1].format(a=answer)


def read_split(path: Path) -> list[dict]:
    """Read one TOFU split (JSON lines or a JSON list) and check its required fields."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such split file")
    text = Path(path).read_text(encoding="utf-8")
    rows = json.loads(text) if text.lstrip().startswith("[") else [
        json.loads(line) for line in text.splitlines() if line.strip()]
    for i, row in enumerate(rows):
        for field in REQUIRED_FIELDS:
            if not isinstance(row.get(field), str):
                raise ValueError(f"{path}: row {i}: field '{field}' is missing or not a string")
    return rows


def retain_split_for(forget_split: str) -> str:
    """forget10 -> retain90, as TOFU names them."""
    if forget_split not in ("forget01", "forget05", "forget10"):
        raise ValueError(f"forget split '{forget_split}': expected forget01, forget05 or forget10")
    return f"retain{100 - int(forget_split[6:]):02d}"


def load_splits(folder: Path, forget_split: str = "forget10") -> TofuSplits:
    """Load a TOFU-schema folder: train on forget/retain splits, evaluate on the perturbed ones."""
    folder = Path(folder)
    retain_split, pct = retain_split_for(forget_split), forget_split[6:]
    read = lambda name: read_split(folder / f"{name}.json")  # noqa: E731
    forget = read(forget_split)
    return TofuSplits(
        forget=forget,
        retain=read(retain_split),
        eval={"forget": forget, "retain": read("retain_perturbed"), "real_authors": read("real_authors"),
              "world_facts": read("world_facts"), "holdout": read(f"holdout{pct}")},
        forget_split=forget_split,
    )
