"""MUSE metrics (Shi et al. 2024), as open-unlearning computes them (`configs/eval/muse_metrics/`, commit d3d7cf9).

- VerbMem: greedy continuation (128 new tokens) of each verbmem `prompt`, ROUGE-L F1 against its `gt`.
- KnowMem: each question after the in-context examples (`harness.data.muse.knowmem_prompt`), greedy (32 new
  tokens), cut before the first of MUSE's stop words, ROUGE-L F1 against the answer; on forget and retain QA.
- PrivLeak: Min-K% (k = 0.4) of each privleak document, forget (members) against holdout (non-members), the
  AUC relative to the retain model's (`evaluators.mia.privleak`): 0 leaks as much as a model never trained on
  the forget set, -100 is a model that separates them perfectly.

Where MUSE's own `eval.py` differs: its ROUGE has no stemmer (open-unlearning's has one) and it does not strip
the output; it reports x100. Its AUC labels forget 0 and holdout 1, so its AUC is 1 - ours and the PrivLeak
is the same number (mia.py says why).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from evaluators import mia
from evaluators.text import rouge_l
from harness.files import write_atomically
from harness.hashing import config_hash
from harness.metrics import Metric

VERBMEM_TOKENS = 128
KNOWMEM_TOKENS = 32
STOP_WORDS = ("\n\n", "\nQuestion", "Question:")  # MUSE's `get_prefix_before_words_occur`
MIN_K = 0.4

METRICS = [
    Metric(
        "muse_forget_verbmem",
        "lower",
        "VerbMem on the forget set (ROUGE-L F1)",
        default=True,
        items=("verbmem",),
        item_field="rougeL_f1",
    ),
    Metric(
        "muse_forget_knowmem",
        "lower",
        "KnowMem on the forget set (ROUGE-L F1)",
        default=True,
        role="forget",  # the knowledge, as TOFU's and LUME's forget roles are (VerbMem: `harness compare --forget`)
        items=("forget_qa",),
        item_field="rougeL_f1",
    ),
    Metric(
        "muse_retain_knowmem",
        "higher",
        "KnowMem on the retain set (ROUGE-L F1)",
        default=True,
        role="retain",
        items=("retain_qa",),
        item_field="rougeL_f1",
    ),
    Metric("muse_privleak", "zero", "PrivLeak (Min-40% AUC against the retain model's)", default=True, tolerance=10.0),
    Metric("muse_mia_min_k_auc", "half", "MIA AUC (Min-40%), forget against holdout", default=True, role="privacy"),
    Metric(
        "muse_utility",
        "higher",
        "general knowledge (MMLU, or the world facts)",
        default=True,
        role="utility",
    ),
]


def cut_at_stop_words(text: str) -> str:
    """The text before the first of MUSE's stop words (each split off in turn, as MUSE does)."""
    for word in STOP_WORDS:
        text = text.split(word)[0]
    return text


def verbmem_record(row: dict, generation: str, index: int) -> dict:
    return {
        "split": "verbmem",
        "id": index,
        "prompt": row["prompt"],
        "gold": row["gt"],
        "generation": generation,
        "rougeL_f1": rouge_l(row["gt"], generation),
    }


def knowmem_record(split: str, row: dict, prompt: str, generation: str, index: int) -> dict:
    answer = cut_at_stop_words(generation).strip()
    return {
        "split": split,
        "id": index,
        "prompt": prompt,
        "gold": row["answer"],
        "generation": answer,
        "rougeL_f1": rouge_l(row["answer"], answer),
    }


def document_record(split: str, index: int, token_logprobs: list[float]) -> dict:
    """One privleak document's Min-40% score (higher: more likely a member)."""
    return {"split": split, "id": index, "min_k": mia.min_k_score(token_logprobs, MIN_K)}


def muse_metrics(items: list[dict]) -> dict[str, float]:
    """VerbMem, KnowMem forget and retain, and the Min-K% AUC, from the per-item records."""

    def mean(split):
        values = [i["rougeL_f1"] for i in items if i["split"] == split]
        return statistics.mean(values) if values else float("nan")

    def scores(split):
        return [i["min_k"] for i in items if i["split"] == split]

    return {
        "muse_forget_verbmem": mean("verbmem"),
        "muse_forget_knowmem": mean("forget_qa"),
        "muse_retain_knowmem": mean("retain_qa"),
        "muse_mia_min_k_auc": mia.auc(scores("member"), scores("nonmember")),
    }


@dataclass
class MuseReference:
    """The retain model's Min-40% AUC, which PrivLeak is relative to; saved by every run as
    `OUT/reference/retain.json` (resume reads it), or given as `--retain-eval FILE` (ours, or a number:
    `{"muse_mia_min_k_auc": 0.52}`, e.g. MUSE's retrained News model's 1 - 0.4772 in our orientation)."""

    mia_auc: float
    source: str

    def fingerprint(self) -> str:
        return config_hash(self.mia_auc)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps({"muse_mia_min_k_auc": self.mia_auc, "source": self.source}) + "\n")

    @classmethod
    def load(cls, path, what: str = "--retain-eval") -> MuseReference:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{what} {path}: no such file")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            value = float(data["muse_mia_min_k_auc"])
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
            raise ValueError(f"{what} {path}: expected JSON with a number 'muse_mia_min_k_auc' in [0, 1]") from None
        if not 0 <= value <= 1:
            raise ValueError(f"{what} {path}: 'muse_mia_min_k_auc' is {value}; expected a number in [0, 1]")
        return cls(value, str(data.get("source", path)))


def reference_metrics(metrics: dict[str, float], reference: MuseReference) -> dict[str, float]:
    """PrivLeak against the retain model's AUC (the retain model's own row: 0)."""
    return {"muse_privleak": mia.privleak(metrics["muse_mia_min_k_auc"], reference.mia_auc)}
